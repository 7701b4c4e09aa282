"""Run a policy on many seeded episodes at once: B envs in lockstep, one batched policy call
per step. Evaluation, risk-critic labels and reference observations all come from here, so
they see exactly the same episodes for the same seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

FAILURE_REASONS = ("collision", "offroad", "off_road")
ARRIVED_MIN_SPEED = 5.0
"""m/s. Until the world reports ``info["outcome"] == "arrived"``, an episode counts as
arrived-like when it did not fail, still drives faster than this at its end (stopping is
not arriving) and covered ``ARRIVED_MIN_DISTANCE``."""
ARRIVED_MIN_DISTANCE = 300.0
"""m: 30 s at an average 10 m/s (the novice cruises at 20-30 m/s in plain traffic)."""


@dataclass(frozen=True)
class Episode:
    """One finished episode.

    Attributes:
        env_id: the env it ran on; seed: its reset seed.
        reason: v0's name of the outcome (``info["reason"]``, kept one version).
        steps: decisions taken; ret: undiscounted return.
        mean_speed: mean ego speed over the episode, m/s.
        hazard: the scenario's hazard name.
        obs: ``(steps, *obs_shape)`` observations the policy acted on (if kept).
        final_speed: ego speed at the last step, m/s.
        distance: m driven (``info["route_progress"]`` where the world reports it, else the
            ego's ``x`` displacement).
        outcome: ``info["outcome"]`` of the last step (``takeover.envs.OUTCOMES``), ``""`` if
            the world has none.
        hazard_fired: the hazard was triggered during the episode.
    """

    env_id: str
    seed: int
    reason: str
    steps: int
    ret: float
    mean_speed: float
    hazard: str
    obs: np.ndarray | None = None
    final_speed: float = float("nan")
    distance: float = float("nan")
    outcome: str = ""
    hazard_fired: bool = False

    @property
    def failed(self) -> bool:
        return (self.outcome or self.reason) in FAILURE_REASONS

    @property
    def arrived(self) -> bool:
        """The world's ``arrived`` outcome; before the world reports outcomes, arrived-like:
        no failure, final speed above ``ARRIVED_MIN_SPEED`` and at least
        ``ARRIVED_MIN_DISTANCE`` driven."""
        if self.outcome:
            return self.outcome == "arrived"
        return (not self.failed and self.final_speed > ARRIVED_MIN_SPEED
                and self.distance >= ARRIVED_MIN_DISTANCE)


def run_episodes(predict: Callable[[np.ndarray], np.ndarray], env_id: str, seeds: list[int],
                 *, batch: int = 64, keep_obs: bool = False, **env_kwargs) -> list[Episode]:
    """One episode per seed of ``env_id`` (made with ``env_kwargs``), acting with
    ``predict`` (``(B, *obs_shape) -> (B,)`` or ``(B, A)`` actions).

    ``takeover/*`` ids run ``batch`` worlds in one ``HighwayVectorEnv`` (world ``i`` reset
    with seed ``s`` follows the single env's seed-``s`` episode exactly, so the episodes are
    the same as one env per seed, at a fraction of the Python cost); other ids (adapters)
    step one Gymnasium env per seed."""
    if _is_takeover(env_id):
        return _run_vector(predict, env_id, seeds, batch, keep_obs, env_kwargs)
    episodes: list[Episode] = []
    for start in range(0, len(seeds), batch):
        chunk = [int(s) for s in seeds[start:start + batch]]
        envs = [gym.make(env_id, **env_kwargs) for _ in chunk]
        first = [e.reset(seed=s) for e, s in zip(envs, chunk, strict=True)]
        obs = [o for o, _ in first]
        hazards = [i["hazard"] for _, i in first]
        traj: list[list[np.ndarray]] = [[o] for o in obs] if keep_obs else [[] for _ in chunk]
        speeds: list[list[float]] = [[i["speed"]] for _, i in first]
        x0 = [_position(i) for _, i in first]
        dist = [0.0] * len(chunk)
        rets = [0.0] * len(chunk)
        reasons = [""] * len(chunk)
        outcomes = [""] * len(chunk)
        fired = [False] * len(chunk)
        alive = list(range(len(chunk)))
        while alive:
            actions = predict(np.stack([obs[i] for i in alive]))
            still = []
            for i, a in zip(alive, actions, strict=True):
                o, r, term, trunc, info = envs[i].step(a)
                rets[i] += float(r)
                speeds[i].append(info["speed"])
                if term or trunc:
                    reasons[i] = info["reason"]
                    dist[i] = _position(info) - x0[i]
                    outcomes[i] = str(info.get("outcome", ""))
                    fired[i] = bool(info.get("hazard_fired", False))
                    continue
                obs[i] = o
                if keep_obs:
                    traj[i].append(o)
                still.append(i)
            alive = still
        for i, e in enumerate(envs):
            e.close()
            episodes.append(Episode(
                env_id, chunk[i], reasons[i], len(speeds[i]) - 1, rets[i],
                float(np.mean(speeds[i])), hazards[i],
                np.stack(traj[i]).astype(np.float32) if keep_obs else None,
                float(speeds[i][-1]), float(dist[i]), outcomes[i], fired[i],
            ))
    return episodes


def _position(info: dict) -> float:
    """m along the road: the route progress where the world reports it, else ``x``."""
    return float(info.get("route_progress", info["x"]))


def _is_takeover(env_id: str) -> bool:
    spec = gym.spec(env_id)
    return spec.entry_point == "takeover.envs.highway:HighwayEnv"


def _run_vector(predict, env_id: str, seeds: list[int], batch: int, keep_obs: bool,
                env_kwargs: dict) -> list[Episode]:
    """``run_episodes`` on the batched world: each world's first episode, then it idles."""
    from takeover.envs.vector import make_vector_env

    episodes: list[Episode] = []
    for start in range(0, len(seeds), batch):
        chunk = [int(s) for s in seeds[start:start + batch]]
        n = len(chunk)
        venv = make_vector_env(env_id, n, **env_kwargs)
        obs, info = venv.reset(seed=chunk)
        hazards = list(info["hazard"])
        x0 = np.asarray(info["route_progress"], dtype=np.float64).copy()
        ret, speed_sum, steps = np.zeros(n), np.asarray(info["speed"], np.float64).copy(), \
            np.zeros(n, dtype=np.int64)
        alive = np.ones(n, dtype=bool)
        traj: list[list[np.ndarray]] = [[o] for o in obs] if keep_obs else []
        end: dict[int, tuple] = {}
        while alive.any():
            actions = np.asarray(predict(obs))
            obs, r, term, trunc, info = venv.step(actions)
            done = (term | trunc) & alive
            final = info.get("final_info", info)
            ret[alive] += r[alive]
            steps[alive] += 1
            sp = np.where(done, final["speed"], info["speed"]) if done.any() else info["speed"]
            speed_sum[alive] += sp[alive]
            for k in np.flatnonzero(done):
                end[int(k)] = (str(final["reason"][k]), float(final["speed"][k]),
                               float(final["route_progress"][k]) - x0[k],
                               str(final["outcome"][k]), bool(final["hazard_fired"][k]))
            if keep_obs:
                for k in np.flatnonzero(alive & ~done):
                    traj[k].append(obs[k])
            alive &= ~done
        venv.close()
        for i in range(n):
            reason_, final_speed, dist, outcome, fired = end[i]
            episodes.append(Episode(
                env_id, chunk[i], reason_, int(steps[i]), float(ret[i]),
                float(speed_sum[i] / (steps[i] + 1)), hazards[i],
                np.stack(traj[i]).astype(np.float32) if keep_obs else None,
                final_speed, dist, outcome, fired))
    return episodes
