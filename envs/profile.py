"""Where a batched world-step's time goes: the step kernel run phase by phase over all
worlds (the autoreset of ended worlds included), each phase timed, with the Python side of
``HighwayVectorEnv.step`` (action checks, ``info``) timed around it.

Each phase is one compiled call over every world, built from the same functions
``dynamics.step_worlds`` fuses, so the worlds follow exactly the trajectory ``env.step``
gives them (``tests/test_kernel_profile.py`` checks this bit for bit); the split costs a
few dispatches per step (reported as ``dispatch``, measured on an empty call) and the
cache reuse the fused kernel gets, so the phases add up to a little more than the fused
kernel. The phase kernels are compiled when first used, not cached on disk: numba's
cache would not see a change in ``dynamics`` and would time the old kernel.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from takeover.envs import layout as L
from takeover.envs.dynamics import (
    _apply_meta_action,
    _batch_scratch,
    _contact,
    _ego_move,
    _end_or_reset,
    _end_step,
    _mobil,
    _near_bound,
    _observe_within,
    _recycle,
    _reward,
    _sort_by_x,
    _traffic_accel,
    _traffic_move,
    _update_hazard,
    _views,
)

if TYPE_CHECKING:
    from takeover.envs.vector import HighwayVectorEnv

PHASES = ("sort", "hazards", "idm", "ego", "traffic", "collision", "bookkeeping", "mobil",
          "recycle", "observe", "reward", "reset")
"""Kernel phases in step order: neighbour order (sort by x), hazard triggers, traffic IDM
with its neighbour search, ego meta-action + controls + bicycle, traffic motion, collision
and road-edge tests, step count and jerk, MOBIL (and the lane-change cooldowns), recycling
traffic around the ego, observation + ground truth + shaping, reward and outcome, the
autoreset of ended worlds (done flags, new episode, its first observation)."""
PYTHON = ("py_actions", "py_info")
"""The Python side of ``env.step``: checking the actions, building ``info`` (done flags,
the ended worlds' final observation and info)."""


@njit
def _nothing(f64, f32, i64, live):
    return live.shape[0]


# each phase takes the batch's three buffers, as ``dynamics.step_batch`` does, and borrows
# their views (``dynamics._views``, in ``Batch.NAMES`` order): no reference counting, as in
# the fused kernel
@njit(error_model="numpy")
def _p_sort(f64, f32, i64, x0):
    v = _views(f64, f32, i64)
    veh, order, rank = v[0], v[11], v[12]
    for n in range(veh.shape[0]):
        x0[n] = veh[n, 0, L.X]
        _sort_by_x(veh[n], order[n], rank[n])


@njit(error_model="numpy")
def _p_hazards(f64, f32, i64, live):
    v = _views(f64, f32, i64)
    veh, wld, p = v[0], v[1], v[6]
    for n in range(veh.shape[0]):
        if live[n]:
            _update_hazard(veh[n], wld[n], p)


@njit(error_model="numpy")
def _p_idm(f64, f32, i64, live):
    v = _views(f64, f32, i64)
    veh, wld, p, order, rank = v[0], v[1], v[6], v[11], v[12]
    _, _, lead = _batch_scratch(f64, i64, p)
    for n in range(veh.shape[0]):
        if live[n]:
            _traffic_accel(veh[n], wld[n], p, order[n], rank[n], lead)


@njit(error_model="numpy")
def _p_meta(f64, f32, i64):
    v = _views(f64, f32, i64)
    veh, wld, act, p = v[0], v[1], v[4], v[6]
    if p[L.DISCRETE] > 0.5:
        for n in range(veh.shape[0]):
            if wld[n, L.MRM] < 0.5:
                _apply_meta_action(veh[n], wld[n], act[n, 0], p)


@njit(error_model="numpy")
def _p_ego(f64, f32, i64, dt, live):
    v = _views(f64, f32, i64)
    veh, wld, act, p, order, rank = v[0], v[1], v[4], v[6], v[11], v[12]
    for n in range(veh.shape[0]):
        if live[n]:
            _ego_move(veh[n], wld[n], act[n], p, dt, order[n], rank[n])


@njit(error_model="numpy")
def _p_traffic(f64, f32, i64, dt, live):
    v = _views(f64, f32, i64)
    veh, wld, p = v[0], v[1], v[6]
    for n in range(veh.shape[0]):
        if live[n]:
            _traffic_move(veh[n], wld[n], p, dt)


@njit(error_model="numpy")
def _p_collision(f64, f32, i64, live):
    v = _views(f64, f32, i64)
    veh, wld, p = v[0], v[1], v[6]
    for n in range(veh.shape[0]):
        if live[n]:
            _contact(veh[n], wld[n], p)
            live[n] = wld[n, L.CRASHED] == 0.0 and wld[n, L.OFFROAD] == 0.0


@njit(error_model="numpy")
def _p_bookkeeping(f64, f32, i64):
    v = _views(f64, f32, i64)
    veh, wld, p = v[0], v[1], v[6]
    for n in range(veh.shape[0]):
        _end_step(veh[n], wld[n], p)


@njit(error_model="numpy")
def _p_mobil(f64, f32, i64):
    v = _views(f64, f32, i64)
    veh, wld, p, order, rank = v[0], v[1], v[6], v[11], v[12]
    for n in range(veh.shape[0]):
        _mobil(veh[n], wld[n], p, order[n], rank[n])


@njit(error_model="numpy")
def _p_recycle(f64, f32, i64):
    v = _views(f64, f32, i64)
    veh, p = v[0], v[6]
    _, room, _ = _batch_scratch(f64, i64, p)
    for n in range(veh.shape[0]):
        _recycle(veh[n], p, room)


@njit(error_model="numpy")
def _p_observe(f64, f32, i64):
    v = _views(f64, f32, i64)
    veh, wld, info, rew, p, obs, order, rank = v[0], v[1], v[2], v[5], v[6], v[8], v[11], v[12]
    near, near_d, _ = _batch_scratch(f64, i64, p)
    for n in range(veh.shape[0]):
        bound = _near_bound(veh[n], order[n], rank[n], int(p[L.K_OBS]))
        rew[n] = _observe_within(veh[n], wld[n], p, obs[n], info[n], near, near_d, bound)


@njit(error_model="numpy")
def _p_reward(f64, f32, i64, x0):
    v = _views(f64, f32, i64)
    veh, wld, rew, p, status, order, rank = v[0], v[1], v[5], v[6], v[10], v[11], v[12]
    for n in range(veh.shape[0]):
        rew[n], status[n] = _reward(veh[n], wld[n], p, order[n], rank[n], rew[n], x0[n])


@njit(error_model="numpy")
def _p_reset(f64, f32, i64):
    v = _views(f64, f32, i64)
    veh, wld, info, finfo, p, rp, obs, fobs, status, ended, rng = v[0], v[1], v[2], v[3], v[6], v[7], v[8], v[9], v[10], v[13], v[15]
    near, near_d, _ = _batch_scratch(f64, i64, p)
    for n in range(veh.shape[0]):
        ended[n] = _end_or_reset(veh[n], wld[n], p, obs[n], info[n], status[n], rng[n], rp,
                                 fobs[n], finfo[n], near, near_d)


def _kernel_phases(env: HighwayVectorEnv, clock: dict[str, float]) -> None:
    """One control step of every world through the phases, adding each phase's seconds to
    ``clock``."""
    b = env._batch
    bufs = (b.f64, b.f32, b.i64)
    x0 = np.empty(env.num_envs)
    live = np.ones(env.num_envs, dtype=np.bool_)
    p = env._params
    nsub = int(p[L.NSUB])
    dt = p[L.DT] / nsub
    tick = time.perf_counter

    def timed(name, fn, *args):
        t = tick()
        fn(*bufs, *args)
        clock[name] += tick() - t

    timed("ego", _p_meta)
    timed("sort", _p_sort, x0)
    for _ in range(nsub):
        timed("hazards", _p_hazards, live)
        timed("idm", _p_idm, live)
        timed("ego", _p_ego, dt, live)
        timed("traffic", _p_traffic, dt, live)
        timed("collision", _p_collision, live)
    timed("bookkeeping", _p_bookkeeping)
    timed("mobil", _p_mobil)
    timed("recycle", _p_recycle)
    timed("observe", _p_observe)
    timed("reward", _p_reward, x0)
    timed("reset", _p_reset)


def profile(env: HighwayVectorEnv, actions: np.ndarray, steps: int) -> dict[str, float]:
    """Step ``env`` ``steps`` times with ``actions`` through the timed phases; return ns
    per world-step of each kernel phase, of ``dispatch`` (the extra compiled calls the split
    makes, measured on an empty call and taken out of the phases), of each Python part, and
    their ``total``. Each part is the median over the steps of its time in one step, so a
    step in which the machine preempted us does not count (on a loaded machine most
    windows of a few microseconds run undisturbed)."""
    names = (*PHASES, *PYTHON)
    per_step = {k: np.zeros(steps) for k in names}
    nsub = int(env._params[L.NSUB])
    calls = {k: nsub if k in ("hazards", "idm", "traffic", "collision") else 1 for k in PHASES}
    calls["ego"] = nsub + 1
    clock = dict.fromkeys(names, 0.0)
    resets = np.zeros(steps)
    for s in range(steps):
        clock.update(dict.fromkeys(clock, 0.0))
        t0 = time.perf_counter()
        env._load_actions(actions)
        t1 = time.perf_counter()
        _kernel_phases(env, clock)
        t2 = time.perf_counter()
        env._after_step()
        clock["py_actions"] = t1 - t0
        clock["py_info"] = time.perf_counter() - t2
        for k in names:
            per_step[k][s] = clock[k]
        resets[s] = np.count_nonzero(env._ended)
    live = np.ones(env.num_envs, dtype=np.bool_)
    args = (env._batch.f64, env._batch.f32, env._batch.i64, live)
    laps = np.zeros(200)
    for r in range(laps.size):
        t = time.perf_counter()
        _nothing(*args)
        laps[r] = time.perf_counter() - t
    per_call = float(np.median(laps))
    scale = 1e9 / env.num_envs
    out = {k: float(np.median(v)) * scale for k, v in per_step.items()}
    # a step's reset phase costs a scan of the done flags plus each new episode: the median
    # step (with or without a reset) would hide the episodes, so the scan is the median of
    # the steps without a reset and an episode the median over the steps with some of
    # their extra time per new episode, counted as often as episodes started
    busy = resets > 0
    if busy.any() and not busy.all():
        scan = float(np.median(per_step["reset"][~busy]))
        each = float(np.median((per_step["reset"][busy] - scan) / resets[busy]))
        out["reset"] = (scan + max(each, 0.0) * float(resets.sum()) / steps) * scale
    out["dispatch"] = 0.0
    for k in PHASES:  # the split's extra calls are not the kernel's: report them apart
        d = min(per_call * calls[k] * scale, out[k])
        out[k] -= d
        out["dispatch"] += d
    out["total"] = sum(out.values())
    return out
