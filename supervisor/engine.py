"""The supervision engine: N worlds supervised in lockstep, one decision path over arrays.

One step, for every world at once::

    out    = agent(obs)                            # AgentOutputs, one batched forward
    scores = {name: est.score_batch(obs, out, info)}
    dec    = gate.decide(scores[gate_score], ctx)  # (N,) request / threshold / release
    views  = handover.on_gate(dec, t)              # requests, withdrawals, handbacks
    hin    = humans.act(obs, info, world, views)   # takeover.types.Humans, N at a time
    ctrl   = handover.on_human(hin, t)             # responses, releases, timeouts
    env.step(agent / human / minimal-risk actions) # one batched env step
    columns[t] = the step's values                 # written in place: (T, N, ...) arrays

When an episode ends, its world's rows of :class:`StepColumns` become one columnar
:class:`~takeover.logio.Chunk` (``Episode.chunk``): what ``LogWriter.write_episodes``
writes as is (the log's column path: no ``StepRecord`` per step); ``Episode.records`` are
built from the chunk on first use, so a log read back and the engine's records are the same
by construction.

A single Gymnasium env is N = 1 (:class:`GymWorld`); a ``takeover`` batched env is
:class:`VectorWorlds`. There is no per-world Python in the step; per-event Python (an episode
ending, a counterfactual snapshot) runs only for the worlds it concerns.

Each world plays a queue of episodes (``run(seeds)``); an episode's records depend only on
its seed (env, humans, the ``random`` gate, the counterfactual sampler are seeded per
episode), so the same seeds give the same records whatever the batch size. Gates that
recalibrate online from every world (``budget``, ``thrifty``) are the exception: they match
only at the same batch size.

Fail-safe at this boundary: a non-finite observation or score counts as maximal risk (the
gate sees ``+inf``, the record's ``score_nonfinite`` is set, ``counts`` tallies it); a
non-finite agent action is never executed (that world runs the minimal-risk action this
step); a non-finite human action is treated as no input (never executed nor logged); a
human action of the wrong kind (strings, complex, bool, non-integers for Discrete) raises.

:class:`Supervisor` is the one-env convenience (live drive, tests): ``reset`` / ``step`` ->
one :class:`~takeover.records.StepRecord` / ``run_episode``, implemented by the engine.
"""

from __future__ import annotations

import functools
import math
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from gymnasium import spaces

from takeover.logio import chunks as ck
from takeover.records import StepRecord
from takeover.registry import closest
from takeover.types import (
    PHASES,
    AgentOutputs,
    Estimator,
    Gate,
    GateContext,
    GateDecision,
    Human,
    HumanInput,
    HumanInputs,
    HumanView,
    HumanViews,
)

from .handover import (
    CONTROLLERS,
    CTRL_AGENT,
    CTRL_FALLBACK,
    CTRL_HUMAN,
    TRANSITION_TEXT,
    Handover,
    HandoverConfig,
    highway_stop,
    minimal_risk_action,
)


def default_episode_name(seed: int | None, index: int) -> str:
    """``s0007-e0003``: the seed of the reset and the episode's index in this run."""
    return f"s{seed:04d}-e{index:04d}" if seed is not None else f"s----e{index:04d}"


def control_period(env: Any) -> float:
    """Seconds per step: the env's ``config.dt``, ``dt`` or (highway-env)
    ``1 / config["policy_frequency"]``, else ``1 / render_fps``, else 1."""
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    for get in (lambda: base.config.dt, lambda: base.dt,
                lambda: 1.0 / float(base.config["policy_frequency"]),
                lambda: 1.0 / float(env.metadata["render_fps"])):
        try:
            dt = float(get())
        except (AttributeError, KeyError, TypeError, ZeroDivisionError):
            continue
        if dt > 0 and math.isfinite(dt):
            return dt
    return 1.0


_scalar = ck.plain_scalar


def plain_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The info's scalars and strings (what the log stores)."""
    out = {}
    for k, v in info.items():
        s = _scalar(v)
        if s is not None:
            out[k] = s
    return out


def row(info: Mapping[str, Any], i: int) -> dict[str, Any]:
    """World ``i``'s info from batched info arrays (``final_*`` and ``_*`` keys dropped)."""
    return {k: v[i] for k, v in info.items()
            if not k.startswith(("_", "final_")) and isinstance(v, np.ndarray)}


class InfoRow(Mapping):
    """World ``i``'s info as a read-only mapping over the batched arrays (no copy: what a
    per-world human reads, built N times per step)."""

    __slots__ = ("_info", "_i")

    def __init__(self, info: Mapping[str, Any], i: int) -> None:
        self._info, self._i = info, i

    def __getitem__(self, key: str) -> Any:
        if key.startswith(("_", "final_")):
            raise KeyError(key)
        return self._info[key][self._i]

    def get(self, key: str, default: Any = None) -> Any:
        v = self._info.get(key)
        return default if v is None or key.startswith(("_", "final_")) else v[self._i]

    def __contains__(self, key: object) -> bool:
        return key in self._info and not str(key).startswith(("_", "final_"))

    def __iter__(self):
        return (k for k in self._info if not k.startswith(("_", "final_")))

    def __len__(self) -> int:
        return sum(1 for _ in self)


# --- worlds: what the engine steps ------------------------------------------------------
class WorldView:
    """World ``i`` of a ``HighwayVectorEnv`` seen like an unwrapped ``HighwayEnv``
    (``vehicles``, ``world``, ``config``, ``hazard``), so per-world humans and drivers that
    read the true state work unchanged in batched runs."""

    def __init__(self, venv: Any, i: int) -> None:
        self.venv, self.i = venv, i
        self.config = venv.config

    @property
    def unwrapped(self) -> WorldView:
        return self

    @property
    def vehicles(self) -> np.ndarray:
        return self.venv.vehicles[self.i]

    @property
    def world(self) -> np.ndarray:
        return self.venv.world[self.i]

    @property
    def hazard(self) -> str:
        return str(self.venv._hazard[self.i])

    @property
    def action_space(self) -> Any:
        return self.venv.single_action_space

    def get_wrapper_attr(self, name: str) -> Any:
        raise AttributeError(name)


def default_failure(terminated: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
    """``(M,)``: collision or off-road when the env reports them, else any termination."""
    if "collision" in info or "offroad" in info:
        m = len(terminated)
        col = np.asarray(info.get("collision", np.zeros(m)), dtype=bool)
        off = np.asarray(info.get("offroad", np.zeros(m)), dtype=bool)
        return col | off
    return np.asarray(terminated, dtype=bool)


class VectorWorlds:
    """A ``takeover.envs.vector.HighwayVectorEnv`` as the engine's worlds. Ended worlds are
    re-seeded with their next episode's seed (the env's same-step autoreset is overridden),
    so an episode does not depend on which world plays it."""

    defers_rollouts = True

    def __init__(self, venv: Any) -> None:
        self.venv = venv
        self.n = venv.num_envs
        self.space = venv.single_action_space
        self.discrete = isinstance(self.space, spaces.Discrete)
        self.dt = float(venv.config.dt)
        self.views = [WorldView(venv, i) for i in range(self.n)]
        self._scratch: Any = None
        self.has_mrm = callable(getattr(venv, "set_mrm", None))
        self._queues = callable(getattr(venv, "set_next_seeds", None))

    @property
    def world(self) -> Any:
        return self.venv

    def next_seeds(self, seeds: Sequence[int | None]) -> None:
        """The seeds of the next queued episodes: the env's same-step autoreset starts them,
        so ``reset_worlds`` does not reset those worlds a second time."""
        if self._queues:
            self.venv.set_next_seeds(seeds)

    def view(self, i: int) -> Any:
        return self.views[i]

    def reset(self, seeds: Sequence[int | None]) -> None:
        self.obs, self.info = self.venv.reset(seed=list(seeds))

    def reset_worlds(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        """Start the next episodes of ``worlds`` (after they ended) from ``seeds``."""
        chosen = [(int(i), s) for i, s in zip(worlds, seeds) if s is not None]
        if not chosen:
            return  # unseeded: the env's own autoreset already started the next episode
        self.obs, self.info = self.venv.reset_worlds([i for i, _ in chosen],
                                                     [s for _, s in chosen])

    def step(self, actions: np.ndarray):
        obs, rew, term, trunc, infos = self.venv.step(actions)
        end = infos.get("final_info", infos)
        final_obs = infos.get("final_obs")
        self.obs, self.info = obs, infos
        return rew, term, trunc, end, final_obs

    def fallback(self, mask: np.ndarray, config: HandoverConfig) -> np.ndarray | None:
        """Engage the world's MRM where ``mask`` (``None`` returned: it ignores the action),
        else the supervisor's stop-in-lane actions for the masked worlds."""
        if self.has_mrm:
            self.venv.set_mrm(mask)
            return None
        return highway_stop(self.venv.vehicles[mask, 0], self.venv.config, config)

    def snapshot(self, i: int) -> Any:
        return self.venv.get_state(i)

    def snapshot_rows(self, rows: np.ndarray) -> Any:
        """Snapshots of worlds ``rows`` as one batch (for :meth:`rollout_rows`)."""
        return self.venv.get_rows(rows)

    def _scratch_env(self, m: int) -> Any:
        from takeover.envs.vector import HighwayVectorEnv

        if self._scratch is None or self._scratch.num_envs < m:
            self._scratch = HighwayVectorEnv(max(m, self.n), self.venv.config)
        return self._scratch

    def rollout_rows(self, batches: list, obs: np.ndarray, act: Callable, steps: int,
                     failure: Callable) -> np.ndarray:
        """:meth:`rollout_alone` from :meth:`snapshot_rows` batches (their rows in order)."""
        m = len(obs)
        sc = self._scratch_env(m)
        at = 0
        for b in batches:
            sc.set_rows(b, at)
            at += len(b[1])
        if at < sc.num_envs:  # idle rows: copies of the last world (stepped, not read)
            last = batches[-1]
            pad = sc.num_envs - at
            sc.set_rows((last[0], *(np.repeat(a[-1:], pad, axis=0) for a in last[1:])), at)
        return self._rollout(sc, m, obs, act, steps, failure)

    def rollout_alone(self, states: list, obs: np.ndarray, act: Callable, steps: int,
                      failure: Callable) -> np.ndarray:
        """Steps until failure (or -1) of the agent alone from each snapshot, all at once on
        a scratch copy of the batched env (the real worlds are untouched)."""
        m = len(states)
        sc = self._scratch_env(m)
        for j in range(sc.num_envs):
            sc.set_state(j, states[min(j, m - 1)])
        return self._rollout(sc, m, obs, act, steps, failure)

    @staticmethod
    def _rollout(sc: Any, m: int, obs: np.ndarray, act: Callable, steps: int,
                 failure: Callable) -> np.ndarray:
        rows = sc.num_envs
        o = np.empty((rows, *obs.shape[1:]), dtype=np.float32)
        if callable(getattr(sc, "set_mrm", None)):
            sc.set_mrm(np.zeros(rows, dtype=bool))  # the agent alone, not the MRM
        o[:m], o[m:] = obs, obs[m - 1]
        alive = np.ones(rows, dtype=bool)
        alive[m:] = False
        k_fail = np.full(rows, -1, dtype=np.int64)
        for k in range(steps):
            a = act(o).action
            o, _, term, trunc, infos = sc.step(a)
            end = infos.get("final_info", infos)
            failed = alive & failure(term, end)
            k_fail[failed] = k + 1
            alive &= ~(term | trunc)
            if not alive.any():
                break
        return k_fail[:m]


class GymWorld:
    """One Gymnasium env as N = 1 worlds (Box or Discrete actions; no autoreset)."""

    defers_rollouts = False

    def __init__(self, env: Any) -> None:
        self.env = env
        self.n = 1
        self.space = env.action_space
        if not isinstance(self.space, (spaces.Box, spaces.Discrete)):
            raise TypeError(f"the supervisor supports Box and Discrete action spaces, got "
                            f"{self.space}")
        self.discrete = isinstance(self.space, spaces.Discrete)
        self.dt = control_period(env)
        base = env.unwrapped
        self.has_mrm = callable(getattr(base, "set_mrm", None))
        self.raw_info: dict[str, Any] = {}

    @property
    def world(self) -> Any:
        return self

    def view(self, i: int) -> Any:
        return self.env.unwrapped

    def info_row(self, i: int) -> dict[str, Any]:
        return self.raw_info

    def _set(self, obs: Any, info: Mapping[str, Any]) -> None:
        self.raw_info = dict(info)
        self.obs = np.asarray(obs)[None]
        self.info = {}
        for k, v in info.items():
            s = _scalar(v)
            if s is not None:
                self.info[k] = np.array([s], dtype=object if isinstance(s, str) else None)

    def reset(self, seeds: Sequence[int | None]) -> None:
        self._set(*self.env.reset(seed=seeds[0]))

    def reset_worlds(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        self.reset(seeds)

    def step(self, actions: np.ndarray):
        a = actions[0]
        a = int(a) if self.discrete else a
        obs, rew, term, trunc, info = self.env.step(a)
        self._set(obs, info)
        return (np.array([float(rew)]), np.array([bool(term)]), np.array([bool(trunc)]),
                self.info, None)

    def fallback(self, mask: np.ndarray, config: HandoverConfig) -> np.ndarray | None:
        if self.has_mrm:
            self.env.unwrapped.set_mrm(bool(mask[0]))
            return None
        a = minimal_risk_action(self.env, self.raw_info, config)
        if self.discrete:
            return np.array([int(a)], dtype=np.int64)
        return np.asarray(a, dtype=np.float32).reshape(1, -1)

    def snapshot(self, i: int) -> Any:
        base = self.env.unwrapped
        if not hasattr(base, "get_state") or not hasattr(base, "set_state"):
            raise TypeError(f"counterfactual scoring needs env.unwrapped.get_state()/"
                            f"set_state(); {type(base).__name__} has none (takeover/* envs do)")
        return base.get_state()

    def snapshot_rows(self, rows: np.ndarray) -> list:
        return [self.snapshot(int(i)) for i in rows]

    def rollout_rows(self, batches: list, obs: np.ndarray, act: Callable, steps: int,
                     failure: Callable) -> np.ndarray:
        return self.rollout_alone([s for b in batches for s in b], obs, act, steps, failure)

    def rollout_alone(self, states: list, obs: np.ndarray, act: Callable, steps: int,
                      failure: Callable) -> np.ndarray:
        """The agent alone from each snapshot on the unwrapped env (no wrapper sees it,
        rendering suspended), restoring the current world exactly afterwards."""
        base = self.env.unwrapped
        now = base.get_state()
        render_mode = getattr(base, "render_mode", None)
        base.render_mode = None
        out = np.full(len(states), -1, dtype=np.int64)
        try:
            for j, s in enumerate(states):
                base.set_state(s)
                o = obs[j]
                for k in range(steps):
                    a = act(np.asarray(o)[None]).action[0]
                    o, _, term, trunc, info = base.step(int(a) if self.discrete else a)
                    rows = {key: np.array([v]) for key, v in info.items() if np.isscalar(v)}
                    if failure(np.array([term]), rows)[0]:
                        out[j] = k + 1
                        break
                    if term or trunc:
                        break
        finally:
            base.set_state(now)
            base.render_mode = render_mode
        return out


def as_worlds(env: Any) -> VectorWorlds | GymWorld:
    """The engine's view of ``env``: a takeover batched env as is, anything else as N = 1."""
    if isinstance(env, (VectorWorlds, GymWorld)):
        return env
    if hasattr(env, "num_envs") and hasattr(env, "get_state") and hasattr(env, "vehicles"):
        return VectorWorlds(env)
    if hasattr(env, "num_envs"):
        raise TypeError(f"{type(env).__name__} is a vector env the engine cannot snapshot; "
                        f"use a takeover.envs.vector.HighwayVectorEnv or one gymnasium env")
    return GymWorld(env)


# --- humans ---------------------------------------------------------------------------
def _check_kind(a: Any, discrete: bool) -> None:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
        raise TypeError(f"human action {a!r} has dtype {arr.dtype}: give numbers "
                        f"({'a meta-action index' if discrete else 'a float array'})")
    if discrete and (arr.size != 1 or (arr.dtype.kind == "f" and float(arr.reshape(-1)[0])
                                       != math.floor(float(arr.reshape(-1)[0])))):
        raise TypeError(f"human action {a!r}: a Discrete env needs one integer index")


class PerWorldHumans:
    """Any per-world :class:`~takeover.types.Human` (keyboard, gamepad, replay, scripted)
    as the batched :class:`~takeover.types.Humans`: one human per world, each called with
    its world's observation, info row, world view and :class:`HumanView`."""

    def __init__(self, humans: Sequence[Human], *, discrete: bool | None = None,
                 action_dim: int | None = None) -> None:
        self.humans = list(humans)
        self.discrete, self.action_dim = discrete, action_dim

    def __len__(self) -> int:
        return len(self.humans)

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        for i, s in zip(worlds, seeds):
            self.humans[int(i)].reset(s)

    def act(self, obs: np.ndarray, info: Mapping[str, Any], world: Any,
            views: HumanViews) -> HumanInputs:
        n = len(self.humans)
        discrete = bool(self.discrete)
        dim = 1 if discrete else int(self.action_dim or 1)
        action = np.zeros((n, dim), dtype=np.float64)
        has = np.zeros(n, dtype=bool)
        wants = np.zeros(n, dtype=bool)
        rel = np.zeros(n, dtype=bool)
        intent: np.ndarray | None = None  # only once some human gives one (keyboards don't)
        info_row = getattr(world, "info_row", None)
        get_view = getattr(world, "view", None)
        phase = views.phase.tolist()
        for i, h in enumerate(self.humans):
            view = HumanView(phase=PHASES[phase[i]], tor_active=bool(views.tor_active[i]),
                             tor_elapsed=float(views.tor_elapsed[i]),
                             urgency=float(views.urgency[i]), time=float(views.time[i]))
            inf = info_row(i) if info_row is not None else InfoRow(info, i)
            wv = get_view(i) if get_view is not None else WorldView(world, i)
            hin = h.act(obs[i], inf, wv, view)
            if not isinstance(hin, HumanInput):
                raise TypeError(f"human.act must return a takeover.types.HumanInput, got "
                                f"{type(hin).__name__}")
            if hin.action is not None:
                _check_kind(hin.action, discrete)
                a = np.asarray(hin.action, dtype=np.float64).reshape(-1)
                if a.size != dim:
                    raise ValueError(f"human action {hin.action!r} has {a.size} values; the "
                                     f"env's actions have {dim}")
                action[i] = a
                has[i] = True
                if hin.intent is not None:
                    if intent is None:
                        intent = np.full((n, 2), np.nan, dtype=np.float32)
                    intent[i] = np.asarray(hin.intent, dtype=np.float32).reshape(2)
            wants[i], rel[i] = hin.wants_control, hin.releases
        act = action[:, 0].astype(np.int64) if discrete else action.astype(np.float32)
        return HumanInputs(action=act, has_action=has, wants_control=wants, releases=rel,
                           intent=intent)


def _intent_rows(hin: HumanInputs, has: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` float32 intent and its ``(N,)`` mask: a row only where the human gave a
    (finite) action with a finite intent, so a label never outlives its action; NaN rows and
    an all-False mask for humans without intent (keyboard, gamepad)."""
    raw = getattr(hin, "intent", None)
    if raw is None:
        return np.full((n, 2), np.nan, np.float32), np.zeros(n, np.bool_)
    rows = np.asarray(raw, dtype=np.float32).reshape(n, 2)
    ok = has & np.isfinite(rows).all(axis=1)
    return np.where(ok[:, None], rows, np.float32(np.nan)), ok


class NoHumans:
    """Nobody in the driver's seat: never answers (requests time out to the fallback)."""

    def __init__(self, n: int, discrete: bool, action_dim: int) -> None:
        self.n, self.discrete, self.dim = n, discrete, action_dim

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        pass

    def act(self, obs, info, world, views) -> HumanInputs:
        z = np.zeros(self.n, dtype=bool)
        a = (np.zeros(self.n, dtype=np.int64) if self.discrete
             else np.zeros((self.n, self.dim), dtype=np.float32))
        return HumanInputs(action=a, has_action=z, wants_control=z, releases=z)


# --- the agent's batched forward ----------------------------------------------------------
def agent_outputs(agent: Any, obs: np.ndarray) -> AgentOutputs:
    """The agent's answers for ``(N, *obs_shape)``: ``act_arrays`` if it has one (for any
    N), else ``act_batch`` (N ``AgentOutput`` stacked), else ``act`` per row."""
    single = len(obs) == 1 and hasattr(agent, "act")  # one row: act's fast path
    fn = getattr(agent, "act_arrays", None)
    if fn is not None:  # always, so a row's bits never depend on the batch size
        return fn(obs)
    fn = getattr(agent, "act_batch", None)
    if fn is not None and not single:
        return AgentOutputs.stack(fn(obs))
    return AgentOutputs.stack([agent.act(o) for o in obs])


def rollout_actor(agent: Any) -> Callable[[np.ndarray], AgentOutputs]:
    """The forward for agent-alone rollouts, which only execute the actions: the agent's
    ``act_actions`` (the same actions without, e.g., its risk critic) if it has one."""
    fn = getattr(agent, "act_actions", None)
    return fn if fn is not None else functools.partial(agent_outputs, agent)


def default_urgency(score: np.ndarray, decision: GateDecision) -> np.ndarray:
    """``(N,)``: 0.5 at the gate's threshold, 1 at twice it; 0.5 when it has no threshold."""
    thr = decision.threshold
    ok = np.isfinite(thr) & (thr > 0) & np.isfinite(score)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.clip(0.5 * score / thr, 0.0, 1.0)
    return np.where(ok, u, 0.5)


# --- records --------------------------------------------------------------------------
_TEXT = {"controller": CONTROLLERS, "phase": [p.value for p in PHASES],
         "transition": TRANSITION_TEXT}


class StepColumns:
    """Every world's steps since the oldest running episode began, as ``(T, N, ...)`` arrays
    written in place, one row per engine step (no per-step allocation, no per-world Python).
    An episode's records are rows ``[start, stop)`` of its world's column, cut into a
    :class:`~takeover.logio.Chunk` when it ends (:func:`episode_chunk`).

    Row ``r`` is global step ``base + r``. When the rows run out, those before the oldest
    running episode's start are dropped (shifted out) or, if that frees less than half, the
    arrays double: amortised O(1) per step, memory about twice the longest episode."""

    def __init__(self, n: int, capacity: int = 64) -> None:
        self.n, self.cap = n, capacity
        self.base = 0
        self.rows = 0
        self.cols: dict[str, np.ndarray] = {}
        self.present: dict[str, np.ndarray] = {}  # info key -> (T,) bool: in that step's info
        self._shapes: dict[str, tuple] = {}  # column -> the shape of one row

    def next_row(self, keep_from: int) -> int:
        """A free row for the next step; rows before global step ``keep_from`` may go."""
        if self.rows == self.cap:
            drop = max(0, keep_from - self.base)
            if drop * 2 >= self.cap:
                for a in (*self.cols.values(), *self.present.values()):
                    a[: self.rows - drop] = a[drop: self.rows]
                self.rows -= drop
                self.base += drop
            else:
                self.cap *= 2
                for d in (self.cols, self.present):
                    for k, a in d.items():
                        d[k] = b = np.zeros((self.cap, *a.shape[1:]), a.dtype)
                        b[: self.rows] = a[: self.rows]
        r = self.rows
        self.rows += 1
        for p in self.present.values():
            p[r] = False
        return r

    def clear(self, step: int) -> None:
        """Keep nothing: the next row is global step ``step``."""
        self.base, self.rows = step, 0

    def put(self, name: str, r: int, value: Any) -> None:
        """Row ``r`` of column ``name`` (created, or widened for longer strings, as needed)."""
        a = self.cols.get(name)
        if type(value) is np.ndarray and a is not None and value.dtype is a.dtype and \
                value.shape == self._shapes[name]:
            a[r] = value  # the steady state: one copy into the row
            return
        v = np.asarray(value)
        if a is None or a.dtype != v.dtype or a.shape[1:] != v.shape:
            if a is not None and a.shape[1:] != v.shape:
                raise ValueError(f"step column {name!r} changed shape from {a.shape[1:]} to "
                                 f"{v.shape} within a run; the log needs one shape per field")
            dt = v.dtype if a is None else np.result_type(a.dtype, v.dtype)
            b = np.zeros((self.cap, *v.shape), dt)
            if a is not None:
                b[: self.rows] = a[: self.rows]
            self.cols[name] = a = b
            self._shapes[name] = v.shape
        a[r] = v

    def put_info(self, r: int, info: Mapping[str, Any]) -> None:
        for k, v in info.items():
            if k.startswith(("_", "final_")) or not isinstance(v, np.ndarray):
                continue
            p = self.present.get(k)
            if p is None:
                self.present[k] = p = np.zeros(self.cap, np.bool_)
            p[r] = True
            self.put("info." + k, r, v)

    def rows_of(self, name: str, i: int, lo: int, hi: int) -> np.ndarray:
        """World ``i``'s values of column ``name`` for global steps ``lo:hi`` (a copy)."""
        return self.cols[name][lo - self.base: hi - self.base, i].copy()


def episode_chunk(st: StepColumns, i: int, lo: int, hi: int, step0: int = 0,
                  terminal_obs: np.ndarray | None = None) -> ck.Chunk:
    """World ``i``'s steps ``lo:hi`` (global step indices) as the log's columnar chunk: the
    one place the engine's state becomes records, so a schema change is made here."""
    n = hi - lo
    a, b = lo - st.base, hi - st.base
    col = st.cols

    def take(name: str) -> np.ndarray:
        return col[name][a:b, i].copy()

    term, trunc = take("terminated"), take("truncated")
    info, present = {}, {}
    for k, p in st.present.items():
        pk = p[a:b]
        if pk.any():
            info[k] = (take("info." + k), None if pk.all() else pk.copy())
            present[k] = pk

    def from_info(k: str, default: Any, dtype: Any) -> np.ndarray:
        if k not in info:
            return np.full(n, default, dtype)
        v, pk = info[k]
        if v.dtype.kind not in "fbiuU":  # anything else value by value
            v = np.array([default if x is None else x for x in map(ck.plain_scalar, v.tolist())],
                         dtype)
        v = v.astype(dtype)
        return v if pk is None else np.where(pk, v, np.asarray(default, dtype))

    def text_info(k: str, keep: np.ndarray | None = None) -> Any:
        """A str field from info key ``k`` ("" where absent or not ``keep``), as codes."""
        v, pk = info.get(k, (None, None))
        got = ck.object_text(v) if v is not None else None
        if got is None:
            return from_info(k, "", str) if keep is None else np.where(
                keep, from_info(k, "", str), "")
        codes, vocab = got
        off = pk if keep is None else (keep if pk is None else keep & pk)
        if off is not None and not off.all():
            codes = np.where(off, codes, len(vocab))
            vocab = [*vocab, ""]
        return codes, vocab

    done = term | trunc
    has_h, has_i = take("has_human"), take("has_intent")
    cols: dict[str, Any] = {
        "step": np.arange(step0, step0 + n, dtype=np.int64),
        "time": take("time"), "wall_time": st.cols["wall"][a:b].copy(),
        "threshold": take("threshold"), "tor_time": take("tor_time"),
        "takeover_time": take("takeover_time"), "reward": take("reward"),
        "hazard_onset": from_info("hazard_onset", math.nan, np.float64),
        "gate_request": take("request"), "terminated": term, "truncated": trunc,
        "hazard_fired": from_info("hazard_fired", False, np.bool_),
        "mrm": from_info("mrm", False, np.bool_), "score_nonfinite": take("nonfinite"),
        "controller": (take("controller"), _TEXT["controller"]),
        "phase": (take("phase"), _TEXT["phase"]),
        "transition": (take("bits"), _TEXT["transition"]),
        "reason": text_info("reason", done), "outcome": text_info("outcome"),
        "obs": take("obs"), "agent_action": take("agent_action"), "action": take("action"),
        "human_action?": has_h, "human_action": take("human_action")[has_h],
        "human_intent?": has_i,
        "human_intent": take("human_intent")[has_i],
        "member_actions?": np.full(n, "member_actions" in col),
        "terminal_obs?": np.arange(n) == (n - 1 if terminal_obs is not None else -1),
    }
    if "member_actions" in col:
        cols["member_actions"] = take("member_actions")
    if terminal_obs is not None:
        cols["terminal_obs"] = np.asarray(terminal_obs, np.float32)[None]
    scores = {k[6:]: take(k) for k in col if k.startswith("score.")}
    return ck.chunk_from_columns(cols, scores, info)


@dataclass
class Episode:
    """A finished (or cut-off) episode: its steps as the log's columnar chunk, its
    counterfactual labels and last observation. ``records`` are built from the chunk on
    first use (a log writer takes the chunk as is: ``LogWriter.write_chunk``)."""

    index: int
    name: str
    seed: int | None
    chunk: ck.Chunk | None
    final_obs: np.ndarray | None = None
    labels: list[Any] = field(default_factory=list)

    @functools.cached_property
    def records(self) -> list[StepRecord]:
        return [] if self.chunk is None else ck.chunk_records(self.chunk, self.name)


# --- the engine -------------------------------------------------------------------------
class Engine:
    """Supervises the N worlds of ``env`` in lockstep (see the module docstring).

    Args:
        env: a ``takeover`` batched env (``HighwayVectorEnv``), or any Gymnasium env (N = 1).
        agent: ``act_arrays(obs) -> AgentOutputs``, ``act_batch`` or ``act(obs)``.
        estimators: ``{name: estimator}``; every score is logged under its name.
        gate: decides takeover requests from the ``gate_score`` estimator's scores.
        humans: a batched :class:`~takeover.types.Humans`, a list of per-world ``Human`` (one
            per world, wrapped in :class:`PerWorldHumans`), one ``Human`` (N = 1), or
            ``None`` for nobody (requests time out). Optional hooks, called when the humans
            define them: ``observe_scores(scores)`` with the step's fail-safe estimator
            scores before ``act``, and ``end_episodes(worlds, info)`` with the worlds whose
            episodes ended and the step's final info arrays (fleet supervision uses both).
        gate_score: which estimator feeds the gate (needed unless the gate ignores scores).
        handover: the protocol's settings (:class:`HandoverConfig`).
        run_id: prefix of episode names (``"<run_id>/<name>"``); ``""`` for none.
        counterfactual: labels steps by agent-alone rollouts (``counterfactual``).
        shadow_gates: more gates deciding on the same scores without acting (labels only).
        urgency: ``(score, decision) -> (N,) 0..1`` shown to the humans with a request.
        keep_records: cut each ended episode's chunk (``False``: only the last step is
            kept, see :meth:`last_record`; ``Episode.chunk`` is ``None``).
    """

    def __init__(self, env: Any, agent: Any, estimators: Mapping[str, Estimator], gate: Gate,
                 humans: Any = None, *, gate_score: str | None = None,
                 handover: HandoverConfig | None = None, run_id: str = "",
                 counterfactual: Any = None, shadow_gates: Mapping[str, Gate] | None = None,
                 urgency: Callable[[np.ndarray, GateDecision], np.ndarray] | None = None,
                 keep_records: bool = True) -> None:
        self.worlds = w = as_worlds(env)
        n = self.n = w.n
        self.agent, self.gate = agent, gate
        self.estimators = dict(estimators)
        if gate_score is not None and gate_score not in self.estimators:
            raise ValueError(f"gate_score={gate_score!r} is not one of the estimators."
                             f"{closest(gate_score, list(self.estimators))} Estimators: "
                             f"{', '.join(self.estimators) or '(none)'}")
        self.gate_score = gate_score
        self.dt = w.dt
        self.discrete = w.discrete
        self.action_dim = 1 if w.discrete else int(np.prod(w.space.shape))
        self.humans = self._humans(humans)
        self._observe_scores = getattr(self.humans, "observe_scores", None)
        self._end_episodes = getattr(self.humans, "end_episodes", None)
        self.handover = Handover(n, handover, human_initiative=getattr(
            gate, "accepts_human_initiative", False))
        self.config = self.handover.config
        self.run_id = run_id
        self.counterfactual = counterfactual
        self.shadow_gates = dict(shadow_gates or {})
        self.urgency = urgency or default_urgency
        self.keep_records = keep_records
        self.counts = {"score_nonfinite": 0, "obs_nonfinite": 0, "agent_nonfinite": 0,
                       "human_nonfinite": 0}
        """World-steps caught by the fail-safe, by kind (the report counts them)."""
        for g in (gate, *self.shadow_gates.values()):
            g.bind(n)
        if counterfactual is not None:
            if isinstance(w, GymWorld):
                w.snapshot(0)  # refuses an env without get_state/set_state now
            counterfactual.bind(n)
        self.columns = StepColumns(n)
        self.episodes: list[Episode] = []
        self._stepped = False
        self._last_info: Mapping[str, Any] = {}
        self._queue: list[tuple[int, str, int | None]] = []
        self._next = 0
        self.active = np.zeros(n, dtype=bool)
        self.step_index = np.zeros(n, dtype=np.int64)
        self._started = False

    def _humans(self, humans: Any) -> Any:
        if humans is None:
            return NoHumans(self.n, self.discrete, self.action_dim)
        if isinstance(humans, (list, tuple)):
            if len(humans) != self.n:
                raise ValueError(f"got {len(humans)} humans for {self.n} worlds; pass one per "
                                 f"world or a batched takeover.types.Humans")
            return PerWorldHumans(humans, discrete=self.discrete, action_dim=self.action_dim)
        if isinstance(humans, PerWorldHumans):
            humans.discrete, humans.action_dim = self.discrete, self.action_dim
            return humans
        reset = getattr(humans, "reset", None)
        if self.n == 1 and reset is not None and _takes_seed_only(reset):
            return PerWorldHumans([humans], discrete=self.discrete, action_dim=self.action_dim)
        return humans

    # --- episodes -----------------------------------------------------------------------
    def start(self, seeds: Sequence[int | None],
              names: Sequence[str] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Queue one episode per seed (named ``names[k]`` or :func:`default_episode_name`)
        and start the first N; returns the worlds' observations and infos."""
        if names is not None and len(names) != len(seeds):
            raise ValueError(f"got {len(names)} names for {len(seeds)} seeds")
        base = len(self.episodes) + len(self._queue)
        for k, s in enumerate(seeds):
            idx = base + k
            name = names[k] if names is not None else default_episode_name(s, idx)
            self._queue.append((idx, f"{self.run_id}/{name}" if self.run_id else name, s))
        self.episodes = []
        self.columns = StepColumns(self.n)
        self._t = 0  # global step index of the next step (rows of self.columns)
        self._stepped = False
        n = self.n
        self.current: list[tuple[int, str, int | None] | None] = [None] * n
        self.start_frame = np.zeros(n, dtype=np.int64)
        self.last_human = np.full((n, self.action_dim), math.nan)
        self.prev_requests = {g: np.zeros(n, dtype=bool) for g in ("gate", *self.shadow_gates)}
        first = [self._take(i) for i in range(n)]
        self.worlds.reset([None if e is None else e[2] for e in first])
        self._queue_next_seeds()
        self._begin(np.arange(n), first)
        return self.worlds.obs, self.worlds.info

    def _queue_next_seeds(self) -> None:
        """Tell the worlds the seeds of the next episodes (as many as usually end in one
        step), so that an env with a same-step autoreset starts each of them once."""
        queue = getattr(self.worlds, "next_seeds", None)
        if queue is not None:
            k = max(8, self.n // 32)
            queue([e[2] for e in self._queue[self._next:self._next + k]])

    def _take(self, i: int) -> tuple[int, str, int | None] | None:
        if self._next < len(self._queue):
            ep = self._queue[self._next]
            self._next += 1
            self.current[i] = ep
            return ep
        self.current[i] = None
        return None

    def _begin(self, worlds: np.ndarray, eps: list) -> None:
        """Per-event: clear every part's state for the new episodes of ``worlds``."""
        live = [(int(i), e) for i, e in zip(worlds, eps) if e is not None]
        dead = [int(i) for i, e in zip(worlds, eps) if e is None]
        self.active[dead] = False
        if not live:
            return
        idx = np.array([i for i, _ in live], dtype=np.int64)
        seeds = [e[2] for _, e in live]
        self.active[idx] = True
        self.step_index[idx] = 0
        self.start_frame[idx] = self._t
        self.last_human[idx] = math.nan
        for g in self.prev_requests.values():
            g[idx] = False
        if self.n == 1:  # stateful single-env agents / estimators start afresh
            for part in (self.agent, *self.estimators.values()):
                reset = getattr(part, "reset", None)
                if callable(reset) and _takes_no_args(reset):
                    reset()
        for gt in (self.gate, *self.shadow_gates.values()):
            gt.reset(idx, seeds)
        self.handover.reset(idx)
        self.humans.reset(idx, seeds)
        if self.counterfactual is not None:
            self.counterfactual.reset(idx, seeds)

    @property
    def done(self) -> bool:
        """Every queued episode has ended."""
        return not self.active.any()

    @property
    def phase(self) -> np.ndarray:
        return self.handover.phase

    def time_left(self) -> np.ndarray:
        """``(N,)`` s until a pending request falls back to the MRM (NaN when none)."""
        return self.handover.time_left(self._time())

    def handback_left(self) -> np.ndarray:
        """``(N,)`` s until a calm hand-back to the agent (NaN when none is counting down)."""
        return self.handover.handback_left(self._time())

    def _time(self) -> np.ndarray:
        t = self.worlds.info.get("time")
        if t is None:
            return self.step_index * self.dt
        return np.asarray(t, dtype=np.float64)

    # --- one step -----------------------------------------------------------------------
    def step(self) -> list[Episode]:
        """One control step of every world; returns the episodes that ended in it."""
        if not self.active.any():
            raise RuntimeError("no running episode: call start(seeds) (or reset) first; "
                               "the queued episodes have all ended")
        w, n = self.worlds, self.n
        obs, info, t = w.obs, w.info, self._time()
        obs_bad = ~np.isfinite(obs.reshape(n, -1)).all(axis=1)
        out = agent_outputs(self.agent, obs)
        act = np.asarray(out.action)
        agent_bad = ~np.isfinite(act.reshape(n, -1).astype(np.float64)).all(axis=1)
        scores = {k: np.asarray(e.score_batch(obs, out, info), dtype=np.float64).reshape(n)
                  for k, e in self.estimators.items()}
        self._scores = scores
        bad = obs_bad | agent_bad
        for s in scores.values():
            bad = bad | ~np.isfinite(s)
        # unknown risk is maximal risk; idle worlds (no episode left) feed the gate NaN, which
        # requests nothing and is not learnt from
        idle = ~self.active
        safe = {k: np.where(idle, math.nan, np.where(bad | ~np.isfinite(s), np.inf, s))
                for k, s in scores.items()}
        score = (safe[self.gate_score] if self.gate_score is not None
                 else np.where(bad & ~idle, np.inf, math.nan))
        ho = self.handover
        ctx = GateContext(time=t, phase=ho.phase.copy(), info=info, out=out,
                          human_action=self.last_human, scores=safe, dt=self.dt)
        dec = _checked(self.gate, self.gate.decide(score, ctx), n)
        requests = {"gate": dec.request}
        for name, g in self.shadow_gates.items():
            requests[name] = _checked(g, g.decide(score, ctx), n).request
        views = ho.on_gate(dec.request, dec.release, t, self.urgency(score, dec))
        if self._observe_scores is not None:  # humans that rank worlds by risk (fleet)
            self._observe_scores(safe)
        hin = self.humans.act(obs, info, w.world, views)
        h_act = np.asarray(hin.action)
        h_rows = h_act.reshape(n, -1).astype(np.float64)
        h_bad = hin.has_action & ~np.isfinite(h_rows).all(axis=1)
        has = hin.has_action & ~h_bad
        intent, has_intent = _intent_rows(hin, has, n)
        ctrl = ho.on_human(hin.wants_control, has, hin.releases, t)
        # the executed actions
        if self.discrete:  # standing command: keep lane and speed (hold_action)
            action = act.astype(np.int64).copy()
            human_now = np.where(has, h_rows[:, 0], self.config.hold_action).astype(np.int64)
        else:
            action = act.reshape(n, -1).astype(np.float32).copy()
            standing = np.where(np.isnan(self.last_human), 0.0, self.last_human)
            human_now = np.where(has[:, None], h_rows, standing).astype(np.float32)
        is_h = ctrl == CTRL_HUMAN
        action[is_h] = human_now[is_h]
        ctrl = np.where(agent_bad & (ctrl == CTRL_AGENT), CTRL_FALLBACK, ctrl).astype(np.int8)
        fb = ctrl == CTRL_FALLBACK
        if fb.any() or w.has_mrm:
            stop = w.fallback(fb, self.config)  # None: the world runs its own MRM
            if stop is not None and fb.any():
                action[fb] = stop
        if agent_bad.any() and not self.discrete:  # never send a non-finite action
            action[~np.isfinite(action).all(axis=1)] = 0.0
        self.last_human = np.where(has[:, None], h_rows, self.last_human)
        if self.counterfactual is not None:
            onsets = {g: r & ~self.prev_requests[g] for g, r in requests.items()}
            names = [e[1] if e is not None else "" for e in self.current]
            self.counterfactual.observe(
                w, rollout_actor(self.agent), obs, active=self.active,
                episodes=names, steps=self.step_index, time=t, dt=self.dt, scores=scores,
                requests=requests, onsets=onsets)
        self.prev_requests = requests
        reward, term, trunc, end, final_obs = w.step(action)
        t_end = np.asarray(end["time"], dtype=np.float64) if "time" in end else t + self.dt
        act_mask = self.active
        term, trunc = np.asarray(term, dtype=bool), np.asarray(trunc, dtype=bool)
        self._record(t_end, obs, act, out, h_rows, has, intent, has_intent, action, ctrl, dec,
                     reward, term, trunc, end, bad)
        self.counts["score_nonfinite"] += int((bad & act_mask).sum())
        self.counts["obs_nonfinite"] += int((obs_bad & act_mask).sum())
        self.counts["agent_nonfinite"] += int((agent_bad & act_mask).sum())
        self.counts["human_nonfinite"] += int((h_bad & act_mask).sum())
        self._last_info = end
        self._last_current = list(self.current)
        self._last_step = self.step_index.copy()
        self.step_index += 1
        ended = np.flatnonzero(act_mask & (term | trunc))
        if not len(ended):
            return []
        return self._end(ended, final_obs)

    def _record(self, t_end, obs, act, out, h_rows, has, intent, has_intent, action, ctrl, dec,
                reward, term, trunc, end, bad) -> None:
        """Write this step's columns into row ``self._t`` of :attr:`columns` (in place)."""
        st, n, ho = self.columns, self.n, self.handover
        if self.keep_records:
            live = self.start_frame[self.active]
            r = st.next_row(int(live.min()) if len(live) else self._t)
        else:  # only the last step is kept (last_record)
            st.clear(self._t)
            r = st.next_row(self._t)
        self._t += 1
        self._stepped = True
        put = st.put
        f32 = np.float32
        put("time", r, t_end)
        put("wall", r, _time.time())  # one wall time per step, all worlds: a (T,) column
        put("obs", r, obs if obs.dtype == f32 else obs.astype(f32))
        put("agent_action", r, act.reshape(n, -1).astype(f32, copy=False))
        if out.member_actions is not None:
            put("member_actions", r, np.asarray(out.member_actions, dtype=f32))
        put("human_action", r, h_rows.astype(f32))
        put("has_human", r, has)
        put("human_intent", r, intent)
        put("has_intent", r, has_intent)
        put("action", r, action.reshape(n, -1).astype(f32, copy=False))
        put("controller", r, ctrl)
        put("phase", r, ho.phase)
        put("bits", r, ho.bits)
        for k, v in self._scores.items():
            put("score." + k, r, v)
        put("threshold", r, np.asarray(dec.threshold, dtype=np.float64))
        put("request", r, np.asarray(dec.request, dtype=bool))
        put("tor_time", r, ho.tor_time)
        put("takeover_time", r, ho.takeover_time)
        put("reward", r, np.asarray(reward, dtype=np.float64))
        put("terminated", r, term)
        put("truncated", r, trunc)
        put("nonfinite", r, bad)
        st.put_info(r, end)

    def _end(self, ended: np.ndarray, final_obs: Any) -> list[Episode]:
        """Per-event: cut the ended episodes' chunks, start the worlds' next episodes."""
        if self._end_episodes is not None:  # humans that account for outcomes (fleet)
            self._end_episodes(ended, self._last_info)
        self.gate.end_episode(ended)
        for g in self.shadow_gates.values():
            g.end_episode(ended)
        done = []
        for i in ended.tolist():
            idx, name, seed = self.current[i]
            fo = None
            if final_obs is not None and final_obs[i] is not None:
                fo = np.asarray(final_obs[i])
            elif isinstance(self.worlds, GymWorld):
                fo = self.worlds.obs[0].copy()
            chunk = None
            if self.keep_records:  # the log keeps the terminal obs: learners bootstrap from it
                chunk = episode_chunk(self.columns, i, int(self.start_frame[i]), self._t,
                                      terminal_obs=fo)
            done.append(Episode(idx, name, seed, chunk, fo))
        nxt = [self._take(i) for i in ended.tolist()]
        go = [k for k, e in enumerate(nxt) if e is not None]
        if go:  # a world with no episode left stays as it ended (a live end screen draws it)
            self.worlds.reset_worlds(ended[go], [cast(tuple, nxt[k])[2] for k in go])
        self._queue_next_seeds()
        self._begin(ended, nxt)
        self.episodes.extend(done)
        return done

    def running_records(self, i: int) -> list[StepRecord]:
        """World ``i``'s records of its running episode so far (``keep_records`` on)."""
        cur = self.current[i]
        if cur is None or not self.keep_records or self.start_frame[i] >= self._t:
            return []
        return ck.chunk_records(episode_chunk(self.columns, i, int(self.start_frame[i]),
                                              self._t), cur[1])

    @property
    def stepped(self) -> bool:
        """Whether a step has been taken since the last start (``last_record`` exists)."""
        return self._stepped

    def last_record(self, i: int = 0) -> StepRecord:
        """World ``i``'s record of the last step."""
        if not self._stepped:
            raise RuntimeError("no step taken yet")
        cur = self._last_current[i]
        name = cur[1] if cur is not None else ""
        c = episode_chunk(self.columns, i, self._t - 1, self._t, int(self._last_step[i]))
        return ck.chunk_records(c, name)[0]

    def run(self, seeds: Sequence[int | None],
            names: Sequence[str] | None = None) -> list[Episode]:
        """Play one episode per seed across the N worlds; returns them in seed order, with
        their counterfactual labels attached."""
        self.start(seeds, names)
        while self.active.any():
            self.step()
        eps = sorted(self.episodes, key=lambda e: e.index)
        if self.counterfactual is not None:
            self.counterfactual.flush(self.worlds, rollout_actor(self.agent))
            by_name: dict[str, list] = {}
            for lb in self.counterfactual.labels:
                by_name.setdefault(lb.episode, []).append(lb)
            for e in eps:
                e.labels = sorted(by_name.get(e.name, []), key=lambda lb: lb.step)
        return eps


def _checked(gate: Gate, dec: Any, n: int) -> GateDecision:
    """``dec`` if it is a :class:`GateDecision` of ``(N,)`` arrays; a gate written for one
    world (scalars) is refused here, naming the gate, not by an IndexError when its records
    are cut."""
    shapes = [np.shape(cast(Any, getattr(dec, k, None)))
              for k in ("request", "threshold", "release")]
    if not isinstance(dec, GateDecision) or any(sh != (n,) for sh in shapes):
        raise TypeError(
            f"gate {getattr(gate, 'name', type(gate).__name__)!r} returned "
            f"{type(dec).__name__} with shapes {shapes}; a gate decides for the N={n} worlds "
            f"at once: return GateDecision of (N,) arrays (request, threshold, release), with "
            f"per-world state sized in bind(n) and cleared in reset(worlds, seeds) (subclass "
            f"takeover.supervisor.gates.BaseGate)")
    return dec


def _takes_seed_only(fn: Callable) -> bool:
    """``reset(seed=None)`` (a per-world Human) rather than ``reset(worlds, seeds)``."""
    import inspect

    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True
    return len(params) <= 1


def _takes_no_args(fn: Callable) -> bool:
    import inspect

    try:
        return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                   for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


# --- one env ----------------------------------------------------------------------------
class Supervisor:
    """Supervised episodes on one env, one step at a time (the live drive and tests): the
    :class:`Engine` with N = 1. ``step()`` never waits for anyone: a live keyboard human
    returns whatever is pressed now.

    Same arguments as :class:`Engine` (``human`` is one per-world ``Human``), plus
    ``episode_name``: ``(seed, index) -> str``.
    """

    def __init__(self, env: Any, agent: Any, estimators: Mapping[str, Estimator], gate: Gate,
                 human: Human | None = None, *, gate_score: str | None = None,
                 handover: HandoverConfig | None = None, run_id: str = "",
                 episode_name: Callable[[int | None, int], str] = default_episode_name,
                 counterfactual: Any = None, shadow_gates: Mapping[str, Gate] | None = None,
                 urgency: Callable | None = None) -> None:
        self.env = env
        self.engine = Engine(env, agent, estimators, gate,
                             None if human is None else PerWorldHumans([human]),
                             gate_score=gate_score, handover=handover, run_id=run_id,
                             counterfactual=counterfactual, shadow_gates=shadow_gates,
                             urgency=urgency, keep_records=False)
        if self.engine.n != 1:
            raise ValueError("Supervisor runs one env; use Engine for batched envs")
        self.episode_name = episode_name
        self.episode_index = -1
        self.dt = self.engine.dt
        self.counterfactual = counterfactual

    @property
    def handover(self) -> Handover:
        return self.engine.handover

    @property
    def gate(self) -> Gate:
        return self.engine.gate

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.episode_index += 1
        name = self.episode_name(seed, self.episode_index)
        eng = self.engine
        eng._queue, eng._next = [], 0
        eng.start([seed], [name])
        self.episode = cast(tuple, eng.current[0])[1]  # start() just filled it
        w = eng.worlds
        return w.obs[0], (w.info_row(0) if isinstance(w, GymWorld) else row(w.info, 0))

    @property
    def done(self) -> bool:
        return self.engine.done

    @property
    def phase(self):
        return PHASES[int(self.engine.phase[0])]

    @property
    def time_left(self) -> float:
        """s until the pending request falls back to the minimal-risk manoeuvre, NaN when
        none (the HUD's countdown)."""
        return float(self.engine.time_left()[0])

    @property
    def handback_left(self) -> float:
        """s until a ``release="calm"`` hand-back to the agent, NaN when none is counting
        down (the HUD's other countdown)."""
        return float(self.engine.handback_left()[0])

    def step(self) -> StepRecord:
        if self.engine.done:
            raise RuntimeError("no running episode: call reset(seed) first (the last one ended)")
        self.engine.step()
        return self.engine.last_record(0)

    def run_episode(self, seed: int | None = None) -> list[StepRecord]:
        """Reset with ``seed`` and step until the episode ends."""
        self.reset(seed)
        records = []
        while not self.done:
            records.append(self.step())
        return records
