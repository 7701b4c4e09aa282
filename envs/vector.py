"""N independent worlds stepped by one kernel call: a ``gymnasium.vector.VectorEnv`` with no
subprocesses, and a thin adapter to stable-baselines3's ``VecEnv``.

World ``i`` reset with ``seed=s`` follows exactly the trajectory of a single
``HighwayEnv`` reset with ``seed=s + i`` under the same actions (episodes that end are reset
in the same step from the world's own RNG, as the single env's next ``reset()`` would be).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig
from takeover.envs.dynamics import observe_worlds, observe_worlds_at, step_worlds
from takeover.envs.hazards import hazard_name
from takeover.envs.highway import (
    WorldState,
    check_snapshot,
    config_dict,
    make_config,
    mrm_switch,
)
from takeover.envs.outcomes import STATUS_NAMES, TIMEOUT_STATUS, reason
from takeover.envs.scenarios import reset_world

_OUTCOME_NAMES = np.array(STATUS_NAMES, dtype=object)  # by status code
_REASON_NAMES = np.array([reason(o) for o in STATUS_NAMES], dtype=object)
_BOOL_COLS = [L.INFO_KEYS.index(k) for k in L.BOOL_INFO]


class HighwayVectorEnv(VectorEnv):
    """``num_envs`` highway worlds in ``(N, ...)`` arrays; same-step autoreset.

    ``infos`` holds one ``(N,)`` array per ground-truth key of ``HighwayEnv`` plus
    ``hazard``, ``outcome`` and ``reason`` (object arrays). ``set_mrm(mask)`` engages
    (``True``) or releases the minimal-risk manoeuvre per world. When world ``i`` ends, ``obs[i]`` is already
    the first observation of its next episode; the last observation and info of the ended
    episode are in ``infos["final_obs"][i]`` and ``infos["final_info"]`` (masked by
    ``infos["_final_obs"]``), as Gymnasium's same-step autoreset mode specifies.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int, config: HighwayConfig | dict | None = None,
                 **kwargs: Any) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.config = cfg = make_config(config, **kwargs)
        self.num_envs = n = int(num_envs)
        self._params = cfg.params()
        self._veh = np.zeros((n, cfg.slots, L.VEH_COLS))
        self._wld = np.zeros((n, L.WLD_COLS))
        self._obs = np.zeros((n, cfg.observe + 1, len(L.OBS_FEATURES)), dtype=np.float32)
        self._info = np.zeros((n, L.INFO_COLS))
        self._rew = np.zeros(n)
        self._status = np.zeros(n, dtype=np.int64)
        self._hazard = np.full(n, "none", dtype=object)
        # each world's slots sorted by x at its last step: a cache the kernel re-sorts
        # incrementally (any permutation is valid, so snapshots need not hold it)
        self._order = np.tile(np.arange(cfg.slots, dtype=np.int64), (n, 1))
        self._rank = self._order.copy()
        self._rngs: list[np.random.Generator] = [seeding.np_random()[0] for _ in range(n)]
        self.single_observation_space = spaces.Box(-1.0, 1.0, self._obs.shape[1:], np.float32)
        if cfg.action_type == "discrete":
            self.single_action_space: spaces.Space = spaces.Discrete(len(L.META_ACTIONS))
            self._act = np.zeros((n, 1))
        else:
            self.single_action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
            self._act = np.zeros((n, 2))
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
        if seeds is None:
            seeds = [None] * self.num_envs
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} worlds")
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(s)
            self._reset_world(i)
        observe_worlds(self._veh, self._wld, self._params, self._obs, self._info)
        return self._obs.copy(), self._infos(np.zeros(self.num_envs, dtype=np.int64))

    def _reset_world(self, i: int) -> None:
        self._hazard[i] = hazard_name(reset_world(self._veh[i], self._wld[i], self.config,
                                                  self._rngs[i]))

    def step(self, actions):
        self._load_actions(actions)
        step_worlds(self._veh, self._wld, self._act, self._params, self._obs, self._info,
                    self._rew, self._status, self._order, self._rank)
        return self._after_step()

    def _load_actions(self, actions) -> None:
        """Check ``actions`` and write them into the kernel's action rows."""
        try:
            a = np.asarray(actions)
        except ValueError:  # ragged nesting
            raise ValueError(f"actions must be one action per world ({self.num_envs}), got a "
                             f"ragged {type(actions).__name__}") from None
        if isinstance(self.single_action_space, spaces.Discrete):
            if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer) or (
                a.min() < 0 or a.max() >= self.single_action_space.n
            ):
                raise ValueError(
                    f"actions must be {self.num_envs} meta-action indices in 0..4, got {a!r}"
                )
            self._act[:, 0] = a
        else:
            if a.shape != (self.num_envs, 2):
                raise ValueError(f"actions have shape {a.shape}, expected ({self.num_envs}, 2)")
            if a.dtype.kind not in "fiu":  # bool, complex, str, object: not [steer, accel]
                raise ValueError(f"actions must be real numbers [steer, accel], got dtype {a.dtype}")
            if not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1.0):
                raise ValueError("actions contain NaN/inf or values outside [-1, 1]")
            self._act[:] = a

    def _after_step(self):
        """Done flags, ``infos`` and the same-step autoreset of ended worlds."""
        terminated = self._status != 0
        truncated = ~terminated & (self._wld[:, L.STEP] >= self.config.max_steps)
        done = terminated | truncated
        reasons = np.where(truncated, TIMEOUT_STATUS, self._status)
        rewards = self._rew.copy()
        if not done.any():
            return self._obs.copy(), rewards, terminated, truncated, self._infos(reasons)
        ended = np.flatnonzero(done)
        final_obs = np.empty(self.num_envs, dtype=object)
        for i in ended:
            final_obs[i] = self._obs[i].copy()
        final_info = self._infos(reasons)
        self._autoreset(ended)
        infos = self._infos(np.zeros(self.num_envs, dtype=np.int64))
        infos["final_obs"] = final_obs
        infos["_final_obs"] = done
        infos["final_info"] = final_info
        infos["_final_info"] = done
        return self._obs.copy(), rewards, terminated, truncated, infos

    def _autoreset(self, ended: np.ndarray) -> None:
        for i in ended:
            self._reset_world(int(i))
        observe_worlds_at(self._veh, self._wld, self._params, self._obs, self._info, ended)

    def _infos(self, reasons: np.ndarray) -> dict[str, Any]:
        # one copy of the ground truth, key-major, whose rows become the values: a few
        # array operations per step whatever the number of worlds
        cols = self._info.T.copy()
        infos: dict[str, Any] = dict(zip(L.INFO_KEYS, cols))
        infos["lane"] = cols[L.I_LANE].astype(np.int64)
        flags = cols[_BOOL_COLS] > 0.5
        for key, row in zip(L.BOOL_INFO, flags):
            infos[key] = row
        infos["hazard"] = self._hazard.copy()
        infos["outcome"] = _OUTCOME_NAMES[reasons]
        infos["reason"] = _REASON_NAMES[reasons]
        return infos

    def set_mrm(self, mask) -> None:
        """Engage the minimal-risk manoeuvre in the worlds where ``mask`` (``(N,)`` bool) is
        true and release it elsewhere; engaged worlds ignore their actions."""
        m = np.asarray(mask)
        if m.shape != (self.num_envs,) or m.dtype != np.bool_:
            raise ValueError(f"set_mrm wants a ({self.num_envs},) bool mask, got "
                             f"{m.dtype} {m.shape}")
        changed = np.flatnonzero(m != (self._wld[:, L.MRM] > 0.5))
        for i in changed:  # only worlds that switch: no per-world work in a steady state
            mrm_switch(self._veh[i], self._wld[i], self.config, bool(m[i]))

    @property
    def mrm(self) -> np.ndarray:
        """``(N,)`` bool: worlds whose minimal-risk manoeuvre is engaged."""
        return self._wld[:, L.MRM] > 0.5

    def get_state(self, i: int) -> WorldState:
        """Snapshot of world ``i`` (same type as ``HighwayEnv.get_state``)."""
        return WorldState(self._veh[i].copy(), self._wld[i].copy(),
                          self._rngs[i].bit_generator.state, False, config_dict(self.config))

    def set_state(self, i: int, state: WorldState | bytes) -> None:
        if isinstance(state, (bytes, bytearray, memoryview)):
            state = WorldState.from_bytes(bytes(state))
        check_snapshot(state, self.config, self._veh.shape[1])
        self._veh[i] = state.veh
        self._wld[i] = state.wld
        self._rngs[i].bit_generator.state = state.rng_state
        self._hazard[i] = hazard_name(state.wld[L.HZ_KIND])
        observe_worlds(self._veh[i : i + 1], self._wld[i : i + 1], self._params,
                       self._obs[i : i + 1], self._info[i : i + 1])

    @property
    def vehicles(self) -> np.ndarray:
        """``(N, M, VEH_COLS)`` view of every world's vehicles."""
        return self._veh

    @property
    def world(self) -> np.ndarray:
        return self._wld


def make_vector_env(env_id: str, num_envs: int, **kwargs: Any) -> HighwayVectorEnv:
    """The batched form of a registered ``takeover/*`` id (its scenario + ``kwargs``)."""
    spec = gym.spec(env_id)
    if spec.entry_point != "takeover.envs.highway:HighwayEnv":
        raise ValueError(f"{env_id!r} is not a takeover highway env; use gymnasium.make_vec")
    return HighwayVectorEnv(num_envs, **{**spec.kwargs, **kwargs})
