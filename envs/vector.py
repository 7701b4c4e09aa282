"""N independent worlds stepped by one kernel call: a ``gymnasium.vector.VectorEnv`` with no
subprocesses, and a thin adapter to stable-baselines3's ``VecEnv``.

World ``i`` reset with ``seed=s`` follows exactly the trajectory of a single
``HighwayEnv`` reset with ``seed=s + i`` under the same actions (episodes that end are reset
in the same step, inside the kernel, from the world's own counter-based RNG, as the single
env's next ``reset()`` would be).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig
from takeover.envs.dynamics import (
    Batch,
    in_unit_box,
    observe_worlds,
    reset_batch,
    step_batch,
    step_batch_threads,
)
from takeover.envs.hazards import hazard_name
from takeover.envs.highway import (
    WorldState,
    check_snapshot,
    config_dict,
    make_config,
    mrm_switch,
    rng_row,
    rng_state,
)
from takeover.envs.outcomes import STATUS_NAMES, TIMEOUT_STATUS, reason
from takeover.envs.scenarios import reset_params
from takeover.envs.streams import KEY, entropy_keys, seed_key

_OUTCOME_NAMES = np.array(STATUS_NAMES, dtype=object)  # by status code
_REASON_NAMES = np.array([reason(o) for o in STATUS_NAMES], dtype=object)
# ``_infos`` copies the ground truth key-major with the flags' rows last (``_INFO_ORDER``, an
# array: a list index is converted to one on every call), so that the flags are one slice;
# the keys keep ``INFO_KEYS``' order (``_INFO_TEMPLATE``, updated in place)
_PLAIN_COLS = [i for i, k in enumerate(L.INFO_KEYS) if k not in L.BOOL_INFO]
_INFO_ORDER = np.array(_PLAIN_COLS + [L.INFO_KEYS.index(k) for k in L.BOOL_INFO])
_PLAIN_KEYS = tuple(L.INFO_KEYS[i] for i in _PLAIN_COLS)
_LANE_ROW = _PLAIN_COLS.index(L.I_LANE)
_N_FLAGS = len(L.BOOL_INFO)
_INFO_TEMPLATE = dict.fromkeys((*L.INFO_KEYS, "hazard", "outcome", "reason"))


class HighwayVectorEnv(VectorEnv):
    """``num_envs`` highway worlds in ``(N, ...)`` arrays; same-step autoreset.

    ``infos`` holds one ``(N,)`` array per ground-truth key of ``HighwayEnv`` plus
    ``hazard``, ``outcome`` and ``reason`` (object arrays). ``set_mrm(mask)`` engages
    (``True``) or releases the minimal-risk manoeuvre per world; ``set_next_seeds(seeds)``
    queues the seeds the next worlds to end start from. When world ``i`` ends, ``obs[i]`` is already
    the first observation of its next episode; the last observation and info of the ended
    episode are in ``infos["final_obs"][i]`` and ``infos["final_info"]`` (masked by
    ``infos["_final_obs"]``), as Gymnasium's same-step autoreset mode specifies.

    ``threads`` (default 1) steps the worlds in that many blocks on numba's threads, with the
    same bits (``dynamics.step_batch_threads``). Leave it at 1 in a process that forks
    workers afterwards (GNU OpenMP's threads are not fork-safe), or when other processes
    keep the cores busy.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int, config: HighwayConfig | dict | None = None, *,
                 threads: int = 1, **kwargs: Any) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.config = cfg = make_config(config, **kwargs)
        self.num_envs = n = int(num_envs)
        act_cols = 1 if cfg.action_type == "discrete" else 2
        # every array of the batch (views into three flat buffers: one kernel call steps,
        # autoresets and observes them all); ``_order`` holds each world's slots sorted by
        # x at its last step, a cache the kernel re-sorts incrementally (any permutation is
        # valid, so snapshots need not hold it); ``_rng`` each world's counter-based RNG
        # (streams.KEY, EPISODE), keyed from entropy until reset(seed=...)
        self._batch = b = Batch(n, cfg.slots, cfg.obs_rows, act_cols, cfg.params(),
                                reset_params(cfg), threads=threads)  # (Batch checks it)
        # threads > 1: the worlds in that many blocks stepped in parallel, the same bits
        self._step = step_batch if threads == 1 else step_batch_threads
        self._veh, self._wld, self._obs, self._info, self._act = b.veh, b.wld, b.obs, b.info, b.act
        self._final_obs, self._final_info = b.final_obs, b.final_info
        self._ended = b.ended  # 0 running, 1 terminated, 2 truncated
        self._codes = b.codes  # hazard code per world
        self._rew, self._status, self._order, self._rank = b.rew, b.status, b.order, b.rank
        self._params, self._reset_params, self._rng = b.p, b.rp, b.rng
        self._rng[:, KEY] = entropy_keys(n)
        self._hazard = np.full(n, "none", dtype=object)
        self._running = np.full(n, _OUTCOME_NAMES[0], dtype=object)  # outcome and reason
        # set_next_seeds: the seeds of the kernel's queue (``_batch.queue``), in order; and
        # the worlds the last step's autoreset started from a queued seed (world -> seed),
        # which ``reset_worlds`` need not reset again
        self._queued: list[int | None] = []
        self._started: dict[int, int] = {}
        self.single_observation_space = spaces.Box(-1.0, 1.0, self._obs.shape[1:], np.float32)
        if cfg.action_type == "discrete":
            self.single_action_space: spaces.Space = spaces.Discrete(len(L.META_ACTIONS))
        else:
            self.single_action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
        if seeds is None:
            seeds = [None] * self.num_envs
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} worlds")
        self._started.clear()
        return self.reset_worlds(np.arange(self.num_envs), seeds)

    def reset_worlds(self, worlds, seeds: Sequence[int | None]):
        """Start a new episode in each of ``worlds`` (indices): from ``seeds[k]`` (as
        ``reset(seed=...)``), or for ``None`` the world's next episode; return ``(obs,
        infos)`` of every world, as ``reset``."""
        idx = np.asarray(worlds, dtype=np.int64).reshape(-1)
        if len(seeds) != idx.size:
            raise ValueError(f"got {len(seeds)} seeds for {idx.size} worlds")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_envs):
            raise ValueError(f"world indices must be in 0..{self.num_envs - 1}, got {idx}")
        keep = np.ones(idx.size, dtype=bool)
        for k, (i, s) in enumerate(zip(idx.tolist(), seeds)):
            if s is not None and self._started.pop(i, None) == s:
                keep[k] = False  # the last step's autoreset already started this episode
            elif s is not None:
                self._rng[i] = (seed_key(s), 0)
        if not keep.all():
            idx = idx[keep]
        if idx.size:
            self._reset(idx)
        return self._obs.copy(), self._infos(None)

    def set_next_seeds(self, seeds: Sequence[int | None]) -> None:
        """Queue the seeds the next episodes start from: the worlds that end on the coming
        steps, in the order they end (by world within a step), start from ``seeds[0]``,
        ``seeds[1]``, ... in the same-step autoreset (``None``: the world's own next
        episode), each seed once; past the queue they start their own next episodes, as
        without it. Replaces the previous queue; at most ``num_envs`` seeds are kept.

        A caller that re-seeds the worlds that ended (``reset_worlds(ended, seeds)`` after
        the step, as the supervision engine does) and queues its next seeds here has every
        episode started once: ``reset_worlds`` skips a world the step just started from
        the same seed (its state is bit for bit what that reset gives), so a wrong guess
        costs only the second reset it would have cost anyway."""
        seeds = list(seeds)[: self.num_envs]
        rows = [(0, 0) if s is None else (1, seed_key(s)) for s in seeds]
        if rows:
            self._batch.queue[: len(rows)] = np.array(rows, dtype=np.uint64)
        self._batch.queued[0] = len(rows)
        self._queued = seeds

    def _reset(self, idx: np.ndarray) -> None:
        reset_batch(self._batch.f64, self._batch.f32, self._batch.i64, idx)
        for i in idx:
            self._hazard[i] = hazard_name(self._codes[i])

    def step(self, actions):
        self._load_actions(actions)
        b = self._batch
        self._started.clear()
        self._step(b.f64, b.f32, b.i64, True)
        if self._queued and self._ended.any():
            self._take_queued()
        return self._after_step()

    def _take_queued(self) -> None:
        """Note which worlds the step's autoreset started from queued seeds; drop those
        seeds from ``_queued`` (the kernel dropped them from its queue)."""
        took = self._batch.took
        worlds = np.flatnonzero(took >= 0).tolist()
        for i in worlds:
            s = self._queued[took[i]]
            if s is not None:
                self._started[i] = s
        del self._queued[: len(worlds)]

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
            self._act[:] = a  # checked as float64 (|INT64_MIN| is then no negative number)
            if not in_unit_box(self._act):  # NaN fails too; the kernel has not read them
                raise ValueError("actions contain NaN/inf or values outside [-1, 1]")

    def _after_step(self):
        """Done flags and ``infos``; the kernel has already reset the ended worlds."""
        rewards = self._rew.copy()
        if not np.count_nonzero(self._ended):  # (``any()`` costs 4x as much for few worlds)
            done = np.zeros(self.num_envs, dtype=np.bool_)
            return (self._obs.copy(), rewards, done, done.copy(),
                    self._infos(None, self._info, self._hazard))
        terminated = self._ended == 1
        truncated = self._ended == 2
        if self.config.reward_timeout:
            rewards[truncated] += self.config.reward_timeout
        done = terminated | truncated
        reasons = np.where(truncated, TIMEOUT_STATUS, self._status)
        # the ended worlds' last ground truth; the others' current one (as before autoreset)
        final_info = self._infos(reasons, np.where(done[:, None], self._final_info, self._info),
                                 self._hazard)
        final_obs = np.empty(self.num_envs, dtype=object)
        for i in done.nonzero()[0].tolist():
            final_obs[i] = self._final_obs[i].copy()
            self._hazard[i] = hazard_name(self._wld[i, L.HZ_KIND])
        infos = self._infos(None, self._info, self._hazard)
        infos["final_obs"] = final_obs
        infos["_final_obs"] = done
        infos["final_info"] = final_info
        infos["_final_info"] = done
        return self._obs.copy(), rewards, terminated, truncated, infos

    def _infos(self, reasons: np.ndarray | None, info: np.ndarray | None = None,
               hazard: np.ndarray | None = None) -> dict[str, Any]:
        """``infos`` of every world from ground-truth rows ``info`` (default: the current
        ones); ``reasons`` the status codes naming the outcomes (``None``: all running)."""
        # one copy of the ground truth, key-major, whose rows become the values: a few
        # array operations per step whatever the number of worlds (4 us for one world,
        # most of it the 26 arrays themselves)
        cols = (self._info if info is None else info).T.take(_INFO_ORDER, axis=0)
        infos: dict[str, Any] = _INFO_TEMPLATE.copy()
        infos.update(zip(_PLAIN_KEYS, cols))
        infos["lane"] = cols[_LANE_ROW].astype(np.int64)
        infos.update(zip(L.BOOL_INFO, cols[-_N_FLAGS:] > 0.5))
        infos["hazard"] = (self._hazard if hazard is None else hazard).copy()
        if reasons is None:  # copying a ready array is cheaper than indexing the names
            infos["outcome"] = self._running.copy()
            infos["reason"] = self._running.copy()
        else:
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
            self._started.pop(int(i), None)  # no longer the state a reset gives

    @property
    def mrm(self) -> np.ndarray:
        """``(N,)`` bool: worlds whose minimal-risk manoeuvre is engaged."""
        return self._wld[:, L.MRM] > 0.5

    def get_state(self, i: int) -> WorldState:
        """Snapshot of world ``i`` (same type as ``HighwayEnv.get_state``)."""
        return WorldState(self._veh[i].copy(), self._wld[i].copy(), rng_state(self._rng[i]),
                          False, config_dict(self.config))

    def set_state(self, i: int, state: WorldState | bytes) -> None:
        if isinstance(state, (bytes, bytearray, memoryview)):
            state = WorldState.from_bytes(bytes(state))
        check_snapshot(state, self.config, self._veh.shape[1])
        self._started.pop(int(i), None)
        self._veh[i] = state.veh
        self._wld[i] = state.wld
        self._rng[i] = rng_row(state)
        self._hazard[i] = hazard_name(state.wld[L.HZ_KIND])
        observe_worlds(self._veh[i : i + 1], self._wld[i : i + 1], self._params,
                       self._obs[i : i + 1], self._info[i : i + 1])

    def get_rows(self, worlds) -> tuple:
        """Snapshot of ``worlds`` (indices) as a few arrays, one copy per buffer: what
        counterfactual labelling takes every step for tens of worlds (``get_state`` builds a
        ``WorldState`` per world). Opaque; restore it with :meth:`set_rows` into an env of
        the same config."""
        idx = np.asarray(worlds, dtype=np.int64).reshape(-1)
        return (self.config, self._veh[idx], self._wld[idx], self._rng[idx],
                self._hazard[idx])

    def set_rows(self, rows: tuple, start: int = 0) -> None:
        """Restore :meth:`get_rows` snapshots into worlds ``start .. start + len - 1`` (as
        ``set_state`` per world, in one pass)."""
        cfg, veh, wld, rng, hazard = rows
        if cfg != self.config:
            raise ValueError("the rows were taken from an env with another config; restore "
                             "them into an env made with the same config")
        sl = slice(start, start + len(veh))
        if len(veh) == 0 or sl.stop > self.num_envs:
            raise ValueError(f"{len(veh)} rows from world {start} do not fit "
                             f"{self.num_envs} worlds")
        self._veh[sl], self._wld[sl], self._rng[sl], self._hazard[sl] = veh, wld, rng, hazard
        observe_worlds(self._veh[sl], self._wld[sl], self._params, self._obs[sl],
                       self._info[sl])

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
