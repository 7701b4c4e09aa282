"""The single-world Gymnasium environment, and the world's snapshot format."""

from __future__ import annotations

import functools
import io
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces

from takeover.config import ConfigError, from_dict
from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig
from takeover.envs.dynamics import Batch, observe_worlds, reset_batch, step_batch
from takeover.envs.hazards import hazard_name
from takeover.envs.outcomes import STATUS_NAMES, TIMEOUT_STATUS, reason
from takeover.envs.scenarios import reset_params
from takeover.envs.streams import EPISODE, KEY, entropy_keys, seed_key

if TYPE_CHECKING:
    from takeover.envs.render import Renderer

SNAPSHOT_FORMAT = "takeover.WorldState/2"


@dataclass(frozen=True)
class WorldState:
    """A snapshot of one world: restoring it and replaying the same actions reproduces the
    trajectory bit for bit.

    ``to_bytes()`` / ``WorldState.from_bytes(data)`` give a safe file format: an ``.npz``
    (``numpy.savez``, read with ``allow_pickle=False``) holding the arrays ``veh``
    ``(M, VEH_COLS)`` and ``wld`` ``(WLD_COLS,)`` (float64, see ``layout``) and ``header``,
    UTF-8 JSON ``{"format": "takeover.WorldState/2", "config": {field: value},
    "rng_state": {"key": int, "episode": int}, "ended": bool}``. Nothing in it is executed.
    ``config`` is the env's ``HighwayConfig`` as a dict; ``set_state`` refuses a snapshot
    whose config differs, naming the fields. ``rng_state`` is the world's counter-based
    RNG (``takeover.envs.streams``): its key (from the seed) and the episode its next
    ``reset()`` starts. (``/1`` held numpy's bit-generator state.)
    """

    veh: np.ndarray
    wld: np.ndarray
    rng_state: dict
    ended: bool
    config: dict

    def to_bytes(self) -> bytes:
        header = {"format": SNAPSHOT_FORMAT, "config": self.config,
                  "rng_state": self.rng_state, "ended": bool(self.ended)}
        buf = io.BytesIO()
        np.savez(buf, veh=self.veh, wld=self.wld,
                 header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> WorldState:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                header = json.loads(z["header"].tobytes().decode())
                veh, wld = z["veh"], z["wld"]
        except (ValueError, KeyError, OSError, UnicodeDecodeError) as err:
            raise ValueError(f"not a world snapshot (expected {SNAPSHOT_FORMAT} npz bytes "
                             f"from WorldState.to_bytes): {err}") from None
        if header.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot format {header.get('format')!r} is not "
                             f"{SNAPSHOT_FORMAT!r}; re-take it with this version")
        return cls(veh, wld, header["rng_state"], bool(header["ended"]), header["config"])


@functools.lru_cache(maxsize=64)
def config_dict(cfg: HighwayConfig) -> dict:
    """``cfg`` as JSON-ready values (tuples become lists). Cached per (frozen) config because
    every snapshot carries it and counterfactual labelling snapshots twice per step; the
    dict is shared: read it, never mutate it."""
    return json.loads(json.dumps(asdict(cfg)))


def check_snapshot(state: WorldState, cfg: HighwayConfig, slots: int) -> None:
    """Refuse a snapshot taken under another configuration, naming the differing fields."""
    mine = config_dict(cfg)
    theirs = state.config
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        pairs = ", ".join(f"{k}={theirs.get(k)!r} (this env: {mine.get(k)!r})" for k in diff)
        raise ValueError(f"the snapshot was taken from an env with another config: {pairs}; "
                         "restore it into an env made with the same config")
    if state.veh.shape != (slots, L.VEH_COLS) or state.wld.shape != (L.WLD_COLS,):
        raise ValueError(f"snapshot arrays {state.veh.shape}, {state.wld.shape} do not fit "
                         f"this env ({slots}, {L.VEH_COLS}), ({L.WLD_COLS},)")
    rng_row(state)


def rng_row(state: WorldState) -> np.ndarray:
    """The snapshot's RNG row (``streams``: key, episode) as ``uint64``, refusing a
    malformed one."""
    r = state.rng_state
    ok = isinstance(r, dict) and set(r) == {"key", "episode"} and all(
        isinstance(r[k], int) and not isinstance(r[k], bool) and 0 <= r[k] < 2**64
        for k in ("key", "episode"))
    if not ok:
        raise ValueError(f"snapshot rng_state {r!r} is not {{'key': int, 'episode': int}} "
                         "(uint64 each); re-take the snapshot with this version")
    return np.array([r["key"], r["episode"]], dtype=np.uint64)


def rng_state(row: np.ndarray) -> dict:
    """A world's RNG row as the snapshot's JSON-ready ``rng_state``."""
    return {"key": int(row[KEY]), "episode": int(row[EPISODE])}


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


_REAL = (int, float, np.integer, np.floating)
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)  # (numpy keeps one of each)
_BOOL = (bool, np.bool_)


def check_action(action: Any, space: spaces.Space, out: Any) -> None:
    """Write ``action`` into ``out`` (the kernel's float64 row, or a memoryview of it),
    refusing NaN and out-of-space actions instead of silently clipping them."""
    if isinstance(space, spaces.Discrete):
        if isinstance(action, np.ndarray) and action.shape == (1,):
            action = action[0]
        if (not isinstance(action, (int, np.integer)) or isinstance(action, bool)
                or not 0 <= action < space.n):
            raise ValueError(
                f"action {action!r} is not a meta-action index in 0..{space.n - 1} "
                f"({', '.join(L.META_ACTIONS)})"
            )
        out[0] = float(action)
        return
    try:
        if type(action) is np.ndarray and action.shape == (2,) and action.dtype.kind in "fiu":
            steer, accel = action.tolist()  # the common case, fast
        else:
            steer, accel = action
            if not all(isinstance(v, _REAL) and not isinstance(v, _BOOL) for v in (steer, accel)):
                raise TypeError  # strings, bools, complex: not an action, whatever float() says
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


class NotYet(float):
    """``info["hazard_onset"]`` before the hazard fires: a NaN (``math.isnan`` is true, it
    is stored and logged as NaN) that compares equal to itself, because Gymnasium's
    determinism check compares two runs' infos with ``==``."""

    def __new__(cls) -> NotYet:
        return super().__new__(cls, math.nan)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and math.isnan(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = float.__hash__

    def __reduce__(self):
        return NotYet, ()

    def __repr__(self) -> str:
        return "nan"


NOT_YET = NotYet()
_ZERO = np.zeros(1, dtype=np.int64)  # the single env's world index


def bound_kernel(kernel: Any, *args: Any) -> Any:
    """``kernel`` (a numba dispatcher) compiled for ``args`` and bound to them, called
    through its compiled entry point: that skips the dispatcher's resolution of the
    arguments' types on every call (0.11 us of the single env's ~6 us step). Only for
    arguments whose types never change, such as a ``Batch``'s own buffers."""
    sig = tuple(numba.typeof(a) for a in args)
    kernel.compile(sig)  # (loaded from numba's disk cache when it is there)
    return functools.partial(kernel.overloads[sig].entry_point, *args)


_REASONS = {o: reason(o) for o in STATUS_NAMES}


def info_dict(row: np.ndarray, hazard: str, outcome: str) -> dict[str, Any]:
    """One world's ``info`` from its ground-truth row (plain Python values).

    On the single env's step path: the row unpacked from one ``tolist`` into a dict display
    (``dict(zip(INFO_KEYS, ...))`` took 1 us of a 8.5 us step); the keys are
    ``INFO_KEYS``' (``tests/test_envs.py`` checks them) and then ``hazard``, ``outcome``, ``reason``."""
    (time, x, y, heading, speed, lane, accel, steer, jerk, ttc, headway, min_distance,
     hz_active, hz_onset, hz_severity, collision, offroad, hz_fired, progress, route_length,
     mrm) = row.tolist()
    return {
        "time": time, "x": x, "y": y, "heading": heading, "speed": speed, "lane": int(lane),
        "accel": accel, "steer": steer, "jerk": jerk, "ttc": ttc, "headway": headway,
        "min_distance": min_distance, "hazard_active": hz_active > 0.5,
        "hazard_onset": NOT_YET if hz_onset != hz_onset else hz_onset,  # NaN: not fired yet
        "hazard_severity": hz_severity, "collision": collision > 0.5,
        "offroad": offroad > 0.5, "hazard_fired": hz_fired > 0.5, "route_progress": progress,
        "route_length": route_length, "mrm": mrm > 0.5,
        "hazard": hazard, "outcome": outcome, "reason": _REASONS[outcome],
    }


def mrm_switch(veh: np.ndarray, wld: np.ndarray, cfg: HighwayConfig, on: bool) -> None:
    """Engage (``on``) or release one world's minimal-risk manoeuvre. Engaging aims it at
    the ego's current lane; releasing hands the discrete controller the ego's current speed
    and lane, so control resumes without a jump."""
    lane = float(min(max(round(veh[0, L.Y] / cfg.lane_width), 0), cfg.lanes))
    if on and wld[L.MRM] < 0.5:
        wld[L.MRM_LANE] = lane
        wld[L.MRM_T] = 0.0
    elif not on and wld[L.MRM] > 0.5:
        wld[L.TGT_SPEED] = veh[0, L.V]
        wld[L.TGT_LANE] = lane
    wld[L.MRM] = 1.0 if on else 0.0


class HighwayEnv(gym.Env):
    """A multi-lane highway with IDM/MOBIL traffic, a route to drive, and one hazard.

    ## Description
    The ego car must drive ``route_length`` m of a straight highway of ``lanes``
    travel lanes plus a hard shoulder on the right, within ``duration`` s (30), among
    ``vehicles`` cars that follow the Intelligent Driver Model and change lanes with MOBIL
    (each driver with its own desired speed, headway, acceleration and politeness; traffic
    never uses the shoulder). Each hazard episode carries one hazard from
    ``takeover.envs.hazards``, placed relative to the ego and fired at a seeded time after a
    warm-up (``onset``, 5-14 s), so an ego that keeps driving always meets it.
    The route's default is the distance the careful reference driver
    (``takeover.envs.drivers.IDMDriver``) covers in plain traffic in 70% of the limit:
    ``0.7 x 20.8 m/s x duration`` = 436.8 m for 30 s (20.8 m/s is its measured mean speed
    among the default traffic, ``config.CAREFUL_TRAVEL_SPEED``; ``tests/test_outcomes.py``
    re-measures it), which leaves it 9 s for a hazard:

    HAZARD_TABLE

    The ego follows a kinematic bicycle model. Agents decide at ``control_hz`` (10 Hz);
    physics runs ``substeps`` sub-steps per decision.

    ## Action Space
    ``action_type="continuous"`` (default): ``Box(-1, 1, (2,), float32)``

    | Num | Action | Unit at +-1                                   |
    |-----|--------|-----------------------------------------------|
    | 0   | steer  | +-``steer_max`` rad (0.07), positive = right    |
    | 1   | accel  | +``accel_max`` (4 m/s^2) / -``brake_max`` (8)   |

    ``action_type="discrete"``: ``Discrete(5)`` meta-actions ``0 idle``, ``1 faster``
    (+5 m/s target), ``2 slower`` (-5 m/s), ``3 lane left``, ``4 lane right`` (travel
    lanes only), executed by a speed controller (braking at most 6 m/s^2) and the lane
    keeper of ``takeover.envs.controllers``.
    Actions with NaN or outside the space raise ``ValueError``.

    ## Observation Space
    ``Box(-1, 1, (observe + 1, 7), float32)``: row 0 is the ego, rows 1..K the K nearest
    other objects (cars, stalled cars, cones), nearest first; absent rows are zero.

    | Col | Feature  | Ego row                              | Other rows                     |
    |-----|----------|--------------------------------------|--------------------------------|
    | 0   | presence | 1                                    | 1 if present                   |
    | 1   | x        | (target speed - v) / 20 m/s [*]      | (x - x_ego) / 100 m            |
    | 2   | y        | across lanes + shoulder, -1..1       | (y - y_ego) / paved width      |
    | 3   | vx       | v_x / 20 m/s                         | (v_x - v_x,ego) / 20 m/s       |
    | 4   | vy       | v_y / 20 m/s                         | (v_y - v_y,ego) / 20 m/s       |
    | 5   | cos_h    | cos(heading)                         | cos(heading)                   |
    | 6   | sin_h    | sin(heading)                         | sin(heading)                   |

    [*] With discrete actions the speed controller's setpoint, which ``faster`` /
    ``slower`` move, so a policy sees a braking it has already commanded; 0 with
    continuous actions (there is no setpoint).

    ``observe_lanes=True`` appends three lane rows (``Box(-1, 1, (observe + 4, 7))``): the
    leader and follower of the lane left of the ego's, its own and the one right of it
    (gaps, relative speeds, a cut-in's anticipated gap; ``takeover.envs.lane_view``).

    ## Rewards
    Each step: ``reward_progress * dx / route_length`` (20 in total for the whole route,
    paid per metre driven) ``+ reward_speed * clip((v - 20) / (30 - 20), 0, 1)`` (progress
    at a safe speed) ``- reward_headway * clip(1 - headway_s, 0, 1)`` (tailgating)
    ``- reward_jerk * clip(|jerk| / 10 - 1, 0, 1)`` (harsh jerk) ``- reward_shoulder`` (1)
    per step on the shoulder outside a minimal-risk manoeuvre. At the end:
    ``+ reward_arrival`` (20) on ``arrived``; ``reward_collision`` / ``reward_offroad``
    (-50) on ``collision`` / ``off_road``; ``reward_stopped`` (-50) on ``stopped``;
    ``reward_timeout`` (0) on ``timeout``.
    Stopping never pays: a standstill earns no progress or speed reward and ends in -50,
    while arriving earns the 40 of progress and arrival on top of the speed reward (the
    tests check a braking-to-standstill policy's return is below the careful driver's on
    every seed). -50 against up to 300 steps of speed reward makes PPO learn to survive
    rather than race (with -5 it learns to crash at speed).

    ## Starting State
    The ego starts at x = 0 in a random lane (the right lane for ``merge``) at 22-28 m/s;
    traffic is scattered 100 m behind to 200 m ahead, keeping the ego's lane clear for 45 m.
    An episode is a function of the seed: ``reset(seed=s)`` starts episode 0 of seed ``s``,
    each ``reset()`` without a seed the next episode of the same seed (a counter-based RNG,
    ``takeover.envs.streams``, drawn inside the compiled reset; ``env.np_random`` is
    Gymnasium's and the world does not draw from it).

    ## Episode End
    ``info["outcome"]`` names how it ended (``takeover.envs.outcomes``; ``""`` before):

    OUTCOME_TABLE

    ## Minimal-risk manoeuvre
    ``set_mrm(True)`` engages the manoeuvre production systems run when nobody takes over:
    the env ignores the action, the ego turns on its hazard lights, slows at 1.5 m/s^2 to
    12 m/s, moves one lane right whenever the gap allows (5 m ahead + 1.5 s x closing
    speed, 8 m behind + 1.5 s x closing speed) down to the hard shoulder and stops there
    at 3 m/s^2 (``pulled_over``); if it has not reached the shoulder 12 s after engaging,
    it stops in its lane at 1.5 m/s^2 (``stopped_in_lane``); it follows its leader with
    the IDM throughout. ``set_mrm(False)`` hands control back.
    ``takeover.envs.vector.HighwayVectorEnv.set_mrm(mask)`` does the same per world.

    ## Info (ground truth, every step, always the same keys)
    ``time`` s, ``x`` m travelled, ``y`` m, ``heading`` rad, ``speed`` m/s, ``lane`` int
    (``lanes`` = the shoulder), ``accel`` m/s^2 and ``steer`` rad applied, ``jerk`` m/s^3,
    ``ttc`` s until the first conflict ahead: a vehicle closing in the ego's corridor, or
    one drifting into it (a cut-in or merge: the later of its longitudinal and lateral
    closing times); 99 when none; ``headway`` s to the leader in the corridor (99 when
    none), ``min_distance`` m box distance to the nearest object (<= 100), ``hazard``
    scenario name, ``hazard_fired`` bool (the hazard has been triggered),
    ``hazard_onset`` s when it fired (NaN before), ``hazard_active`` bool (fired and not
    yet over: passed, or ``hazard_window`` s for a moving one), ``hazard_severity`` 0..1,
    ``route_progress`` m driven along the route, ``route_length`` m, ``mrm`` bool,
    ``collision`` and ``offroad`` bools, ``outcome`` str, ``reason`` (v0's name for the
    outcome, kept for one version: ``offroad``, ``time_limit`` for ``off_road``,
    ``timeout``).

    ## Arguments
    ``gymnasium.make("takeover/Highway-v2", render_mode=None, **config)`` where ``config``
    keys are the fields of :class:`~takeover.envs.config.HighwayConfig` (unknown keys and
    out-of-range values raise ``ConfigError`` naming the key).

    ``env.unwrapped.get_state()`` / ``set_state(state)`` snapshot and restore the world
    exactly (used for counterfactual rollouts); ``state.to_bytes()`` is a safe file format
    (see :class:`WorldState`).

    ## Version History
    * v2: the ego row's column 1 (``x``, always 0 before) holds the speed controller's
      setpoint with discrete actions, ``(target speed - speed) / 20 m/s``: the state the
      meta-actions move was hidden, so a policy could not tell "braking toward a lower
      target" from "cruising" (a clone of a human who presses ``slower`` once and then
      holds ``idle`` learned ``idle``); 0 with continuous actions.
    * v1 (episode sampling since issue 18): episodes drawn by a counter-based RNG in the
      kernel (the same distributions, other episodes per seed than before); snapshots
      ``WorldState/2``.
    * v1: a route whose end is the only success (``arrived``); named outcomes (``stopped``,
      ``timeout`` ... instead of success = "no crash before the time limit", under which
      stopping won); a hard shoulder and the minimal-risk manoeuvre (``set_mrm``); hazards
      as plugins that fire at a seeded time (the merge no longer waits for the ego to reach
      a fixed x); reward for progress, against standstill; ``hazard_onset`` NaN (was -1)
      before the hazard; snapshots as npz + JSON (no pickle).
    * v0: initial release.

    ## Example
    >>> import gymnasium as gym, takeover
    >>> env = gym.make("takeover/SuddenBrake-v2")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["hazard"], info["outcome"]
    ((9, 7), 'sudden_brake', '')
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
        act_cols = 1 if cfg.action_type == "discrete" else 2
        # one world as a batch of 1 (see HighwayVectorEnv): views into three flat buffers
        self._batch = b = Batch(1, cfg.slots, cfg.obs_rows, act_cols, cfg.params(),
                                reset_params(cfg))
        self._veh, self._wld, self._obs, self._info, self._act = b.veh, b.wld, b.obs, b.info, b.act
        self._rew, self._status, self._order, self._rank = b.rew, b.status, b.order, b.rank
        self._params, self._rng, self._codes = b.p, b.rng, b.codes
        # world 0's rows, and the step limit (a property), looked up once, not every step
        # (memoryviews: an item of one is a Python int or float, 4x faster than numpy's)
        view = cast(Any, memoryview)  # (numpy's stubs do not declare the buffer protocol)
        self._act0, self._obs0, self._info0 = view(b.act[0]), b.obs[0], b.info[0]
        self._status0, self._rew0, self._wld0 = view(b.status), view(b.rew), view(b.wld[0])
        self._max_steps = cfg.max_steps
        self._step_kernel = bound_kernel(step_batch, b.f64, b.f32, b.i64, False)
        self._rng[0, KEY] = entropy_keys(1)[0]  # until reset(seed=...)
        self.observation_space = spaces.Box(-1.0, 1.0, self._obs.shape[1:], dtype=np.float32)
        if cfg.action_type == "discrete":
            self.action_space: spaces.Space = spaces.Discrete(len(L.META_ACTIONS))
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._box = cfg.action_type != "discrete"
        self._hazard = "none"
        self._ended = True
        self._renderer: Renderer | None = None
        self.overlays: list = []  # callables drawing a HUD on each frame, see render.py

    # --- Gymnasium API ----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:  # the episode is a function of the seed; reset() goes on
            self._rng[0] = (seed_key(seed), 0)
        super().reset(seed=seed)  # Gymnasium's np_random, for users who draw from it
        reset_batch(self._batch.f64, self._batch.f32, self._batch.i64, _ZERO)
        self._hazard = hazard_name(self._codes[0])
        self._ended = False
        if self.render_mode == "human":
            self.render()
        return self._obs[0].copy(), info_dict(self._info[0], self._hazard, "")

    def step(self, action):
        if self._ended:
            raise RuntimeError("no episode is running (the env was never reset, or its episode "
                               "ended): call reset() before step()")
        act = self._act0
        if (self._box and type(action) is np.ndarray and action.shape == (2,)
                and (action.dtype is _F32 or action.dtype is _F64)):
            # a policy's [steer, accel], checked here (3% of the step as a call)
            steer, accel = action.tolist()
            if not (-1.0 <= steer <= 1.0 and -1.0 <= accel <= 1.0):  # NaN fails too
                check_action(action, self.action_space, act)  # raises, naming the fix
            act[0] = steer
            act[1] = accel
        else:
            check_action(action, self.action_space, act)
        self._step_kernel()
        status = self._status0[0]
        terminated = status != 0
        truncated = not terminated and self._wld0[L.STEP] >= self._max_steps
        outcome = STATUS_NAMES[TIMEOUT_STATUS if truncated else status]
        self._ended = terminated or truncated
        if self.render_mode == "human":
            self.render()
        reward = self._rew0[0] + (self.config.reward_timeout if truncated else 0.0)
        return (self._obs0.copy(), reward, terminated, truncated,
                info_dict(self._info0, self._hazard, outcome))

    def set_mrm(self, on: bool) -> None:
        """Engage (``True``) or release (``False``) the minimal-risk manoeuvre: while
        engaged, ``step`` ignores its action (it must still be a valid one)."""
        mrm_switch(self._veh[0], self._wld[0], self.config, bool(on))

    @property
    def mrm(self) -> bool:
        """Whether the minimal-risk manoeuvre is engaged."""
        return bool(self._wld[0, L.MRM] > 0.5)

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
        return WorldState(self._veh[0].copy(), self._wld[0].copy(), rng_state(self._rng[0]),
                          self._ended, config_dict(self.config))

    def set_state(self, state: WorldState | bytes) -> None:
        """Restore a snapshot (a ``WorldState`` or its ``to_bytes()``); refuses one taken
        under another config, naming the differing fields."""
        if isinstance(state, (bytes, bytearray, memoryview)):
            state = WorldState.from_bytes(bytes(state))
        check_snapshot(state, self.config, self._veh.shape[1])
        self._veh[0] = state.veh
        self._wld[0] = state.wld
        self._rng[0] = rng_row(state)
        self._ended = state.ended
        self._hazard = hazard_name(state.wld[L.HZ_KIND])
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


def _tables() -> None:
    """Fill the docstring's hazard and outcome tables from the registry and outcomes."""
    from takeover.envs import outcomes
    from takeover.envs.hazards import HAZARDS

    rows = [f"``{h.name}``: {h.summary}" for h in HAZARDS.values()]
    hz = "\n\n    ".join(rows)
    oc = outcomes.__doc__.split("\n\n")[1].replace("\n", "\n    ")
    HighwayEnv.__doc__ = cast(str, HighwayEnv.__doc__).replace("HAZARD_TABLE", hz).replace(
        "OUTCOME_TABLE", oc)


_tables()
