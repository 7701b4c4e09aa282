"""The single-world Gymnasium environment."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from takeover.config import ConfigError, from_dict
from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig
from takeover.envs.dynamics import observe_worlds, step_worlds
from takeover.envs.scenarios import reset_world


@dataclass(frozen=True)
class WorldState:
    """A snapshot of a world: restoring it and replaying the same actions reproduces the
    trajectory bit for bit. Small (a few kB) and picklable."""

    veh: np.ndarray
    wld: np.ndarray
    rng_state: dict
    ended: bool


def make_config(config: HighwayConfig | dict | None, **overrides: Any) -> HighwayConfig:
    """Build a config from a ``HighwayConfig``, a dict and/or keyword overrides, refusing
    unknown keys (naming the closest one)."""
    if isinstance(config, HighwayConfig):
        data = {f.name: getattr(config, f.name) for f in fields(config)}
    elif config is None:
        data = {}
    elif isinstance(config, dict):
        data = dict(config)
    else:
        raise ConfigError(f"config must be a HighwayConfig or a dict, got {type(config).__name__}")
    data.update(overrides)
    return from_dict(HighwayConfig, data)


def check_action(action: Any, space: spaces.Space, out: np.ndarray) -> None:
    """Write ``action`` into ``out`` (the kernel's float64 row), refusing NaN and
    out-of-space actions instead of silently clipping them."""
    if isinstance(space, spaces.Discrete):
        if isinstance(action, np.ndarray) and action.shape == (1,):
            action = action[0]
        if not isinstance(action, (int, np.integer)) or not 0 <= action < space.n:
            raise ValueError(
                f"action {action!r} is not a meta-action index in 0..{space.n - 1} "
                f"({', '.join(L.META_ACTIONS)})"
            )
        out[0] = action
        return
    try:
        steer, accel = action
        steer, accel = float(steer), float(accel)
    except (TypeError, ValueError):
        raise ValueError(
            f"action {action!r} must be two numbers [steer, accel] in [-1, 1]"
        ) from None
    if not (-1.0 <= steer <= 1.0 and -1.0 <= accel <= 1.0):  # NaN fails every comparison
        raise ValueError(
            f"action [{steer}, {accel}] is NaN or outside [-1, 1]; clip it before stepping"
        )
    out[0] = steer
    out[1] = accel


def info_dict(row: np.ndarray, hazard: str, reason: str) -> dict[str, Any]:
    info: dict[str, Any] = dict(zip(L.INFO_KEYS, row.tolist()))
    info["lane"] = int(row[L.I_LANE])
    info["hazard_active"] = bool(row[L.I_HZ_ACTIVE])
    info["collision"] = bool(row[L.I_COLLISION])
    info["offroad"] = bool(row[L.I_OFFROAD])
    info["hazard"] = hazard
    info["reason"] = reason
    return info


REASONS = ("", "collision", "offroad")


class HighwayEnv(gym.Env):
    """A multi-lane highway with IDM/MOBIL traffic and one hazard per episode.

    ## Description
    The ego car drives on a straight highway of ``lanes`` lanes among ``vehicles`` cars that
    follow the Intelligent Driver Model and change lanes with MOBIL, each driver with its own
    desired speed, time headway, acceleration and politeness. Each episode may carry one
    hazard (see ``takeover.envs.scenarios``): a lead car braking hard, a cut-in, a stalled
    car, an on-ramp merge or a work zone. The ego follows a kinematic bicycle model. Agents
    decide at ``control_hz`` (10 Hz); physics runs ``substeps`` sub-steps per decision.

    ## Action Space
    ``action_type="continuous"`` (default): ``Box(-1, 1, (2,), float32)``

    | Num | Action | Unit at +-1                                   |
    |-----|--------|-----------------------------------------------|
    | 0   | steer  | +-``steer_max`` rad (0.07), positive = right    |
    | 1   | accel  | +``accel_max`` (4 m/s^2) / -``brake_max`` (8)   |

    ``action_type="discrete"``: ``Discrete(5)`` meta-actions ``0 idle``, ``1 faster``
    (+5 m/s target), ``2 slower`` (-5 m/s), ``3 lane left``, ``4 lane right``, executed by a
    speed and lane-keeping controller (braking at most 6 m/s^2).
    Actions with NaN or outside the space raise ``ValueError``.

    ## Observation Space
    ``Box(-1, 1, (observe + 1, 7), float32)``: row 0 is the ego, rows 1..K the K nearest
    other objects (cars, stalled cars, cones), nearest first; absent rows are zero.

    | Col | Feature  | Ego row                              | Other rows                     |
    |-----|----------|--------------------------------------|--------------------------------|
    | 0   | presence | 1                                    | 1 if present                   |
    | 1   | x        | 0                                    | (x - x_ego) / 100 m            |
    | 2   | y        | position across the road, -1..1     | (y - y_ego) / road width       |
    | 3   | vx       | v_x / 20 m/s                         | (v_x - v_x,ego) / 20 m/s       |
    | 4   | vy       | v_y / 20 m/s                         | (v_y - v_y,ego) / 20 m/s       |
    | 5   | cos_h    | cos(heading)                         | cos(heading)                   |
    | 6   | sin_h    | sin(heading)                         | sin(heading)                   |

    ## Rewards
    Each step: ``reward_speed * clip((v - 20) / (30 - 20), 0, 1)`` (progress at a safe
    speed) ``- reward_headway * clip(1 - headway_s, 0, 1)`` (tailgating) ``- reward_jerk *
    clip(|jerk| / 10 - 1, 0, 1)`` (harsh jerk); plus ``reward_collision`` (-50) on a
    collision or ``reward_offroad`` (-50) on leaving the road: large enough against up to
    300 steps of speed reward that PPO learns to survive rather than race (with -5 it
    learns to crash at speed).

    ## Starting State
    The ego starts at x = 0 in a random lane (the right lane for ``merge``) at 22-28 m/s;
    traffic is scattered 100 m behind to 200 m ahead, keeping the ego's lane clear for 45 m.

    ## Episode End
    Terminated on a collision or when the ego's centre leaves the road (``info["reason"]``
    is ``"collision"`` / ``"offroad"``); truncated after ``duration`` s (30 s, 300 steps;
    reason ``"time_limit"``).

    ## Info (ground truth, every step, always the same keys)
    ``time`` s, ``x`` m travelled, ``y`` m, ``heading`` rad, ``speed`` m/s, ``lane`` int,
    ``accel`` m/s^2 and ``steer`` rad applied, ``jerk`` m/s^3, ``ttc`` s until the first
    conflict ahead: a vehicle closing in the ego's corridor, or one drifting into it (a cut-in
    or merge: the later of its longitudinal and lateral closing times); 99 when none;
    ``headway`` s to the leader in the
    corridor (99 when none), ``min_distance`` m box distance to the nearest object (<= 100),
    ``hazard`` scenario name, ``hazard_active`` bool, ``hazard_onset`` s when the hazard
    became active (-1 before), ``hazard_severity`` 0..1, ``collision`` and ``offroad``
    bools, ``reason`` str.

    ## Arguments
    ``gymnasium.make("takeover/Highway-v0", render_mode=None, **config)`` where ``config``
    keys are the fields of :class:`~takeover.envs.config.HighwayConfig` (unknown keys and
    out-of-range values raise ``ConfigError`` naming the key).

    ``env.unwrapped.get_state()`` / ``set_state(state)`` snapshot and restore the world
    exactly (used for counterfactual rollouts).

    ## Version History
    * v0: initial release.

    ## Example
    >>> import gymnasium as gym, takeover
    >>> env = gym.make("takeover/SuddenBrake-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["hazard"]
    ((9, 7), 'sudden_brake')
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, config: HighwayConfig | dict | None = None,
                 **kwargs: Any) -> None:
        self.config = make_config(config, **kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported; use one of "
                f"{self.metadata['render_modes']} or None"
            )
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": int(round(self.config.control_hz))}
        cfg = self.config
        self._params = cfg.params()
        self._veh = np.zeros((1, cfg.slots, L.VEH_COLS))
        self._wld = np.zeros((1, L.WLD_COLS))
        self._obs = np.zeros((1, cfg.observe + 1, len(L.OBS_FEATURES)), dtype=np.float32)
        self._info = np.zeros((1, L.INFO_COLS))
        self._rew = np.zeros(1)
        self._status = np.zeros(1, dtype=np.int64)
        self.observation_space = spaces.Box(-1.0, 1.0, self._obs.shape[1:], dtype=np.float32)
        if cfg.action_type == "discrete":
            self.action_space: spaces.Space = spaces.Discrete(len(L.META_ACTIONS))
            self._act = np.zeros((1, 1))
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
            self._act = np.zeros((1, 2))
        self._hazard = "none"
        self._ended = True
        self._renderer = None
        self.overlays: list = []  # callables drawing a HUD on each frame, see render.py

    # --- Gymnasium API ----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        kind = reset_world(self._veh[0], self._wld[0], self.config, self.np_random)
        self._hazard = L.HAZARD_NAMES[kind]
        observe_worlds(self._veh, self._wld, self._params, self._obs, self._info)
        self._ended = False
        if self.render_mode == "human":
            self.render()
        return self._obs[0].copy(), info_dict(self._info[0], self._hazard, "")

    def step(self, action):
        if self._ended:
            raise RuntimeError("the episode has ended: call reset() before step()")
        check_action(action, self.action_space, self._act[0])
        step_worlds(self._veh, self._wld, self._act, self._params, self._obs, self._info,
                    self._rew, self._status)
        status = int(self._status[0])
        terminated = status != 0
        truncated = not terminated and bool(self._wld[0, L.STEP] >= self.config.max_steps)
        reason = REASONS[status] if terminated else ("time_limit" if truncated else "")
        self._ended = terminated or truncated
        if self.render_mode == "human":
            self.render()
        return (self._obs[0].copy(), float(self._rew[0]), terminated, truncated,
                info_dict(self._info[0], self._hazard, reason))

    def render(self):
        if self.render_mode is None:
            gym.logger.warn(
                "render() called without a render_mode; pass render_mode='rgb_array' or "
                "'human' to gymnasium.make"
            )
            return None
        if self._renderer is None:
            from takeover.envs.render import Renderer

            self._renderer = Renderer(self.config, self.render_mode)
        return self._renderer.draw(self._veh[0], self._wld[0], self._hazard, self.overlays)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- snapshots --------------------------------------------------------------------
    def get_state(self) -> WorldState:
        return WorldState(self._veh[0].copy(), self._wld[0].copy(),
                          self.np_random.bit_generator.state, self._ended)

    def set_state(self, state: WorldState | bytes) -> None:
        if isinstance(state, bytes):
            state = pickle.loads(state)
        if state.veh.shape != self._veh.shape[1:]:
            raise ValueError(
                f"snapshot has {state.veh.shape[0]} vehicle slots but this env has "
                f"{self._veh.shape[1]}: it was taken from an env with another config"
            )
        self._veh[0] = state.veh
        self._wld[0] = state.wld
        self.np_random.bit_generator.state = state.rng_state
        self._ended = state.ended
        self._hazard = L.HAZARD_NAMES[int(state.wld[L.HZ_KIND])]
        observe_worlds(self._veh, self._wld, self._params, self._obs, self._info)

    # --- read-only views for drivers, renderers and supervisors -----------------------
    @property
    def vehicles(self) -> np.ndarray:
        """``(M, VEH_COLS)`` view of the world's vehicles (slot 0 = ego); see ``layout``."""
        return self._veh[0]

    @property
    def world(self) -> np.ndarray:
        return self._wld[0]

    @property
    def hazard(self) -> str:
        return self._hazard
