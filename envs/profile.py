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
    _contact,
    _ego_move,
    _end_or_reset,
    _end_step,
    _mobil,
    _observe,
    _recycle,
    _reward,
    _scratch,
    _sort_by_x,
    _traffic_accel,
    _traffic_move,
    _update_hazard,
)
from takeover.envs.scenarios import reset_scratch

if TYPE_CHECKING:
    from takeover.envs.vector import HighwayVectorEnv

PHASES = ("sort", "hazards", "idm", "ego", "traffic", "collision", "bookkeeping", "mobil",
          "recycle", "observe", "reward", "reset")
"""Kernel phases in step order: neighbour order (sort by x), hazard triggers, traffic IDM
with its neighbour search, ego meta-action + controls + bicycle, traffic motion, collision
and road-edge tests, jerk and cooldowns, MOBIL, recycling traffic around the ego,
observation + ground truth + shaping, reward and outcome, the autoreset of ended worlds
(done flags, new episode, its first observation)."""
PYTHON = ("py_actions", "py_info")
"""The Python side of ``env.step``: checking the actions, building ``info`` (done flags,
the ended worlds' final observation and info)."""


@njit
def _nothing(veh, wld, act, p, order, rank, live):
    return veh.shape[0]


@njit(error_model="numpy")
def _p_sort(veh, wld, act, p, order, rank, x0):
    for n in range(veh.shape[0]):
        x0[n] = veh[n, 0, L.X]
        _sort_by_x(veh[n], order[n], rank[n])


@njit(error_model="numpy")
def _p_hazards(veh, wld, p, live):
    for n in range(veh.shape[0]):
        if live[n]:
            _update_hazard(veh[n], wld[n], p)


@njit(error_model="numpy")
def _p_idm(veh, wld, p, order, rank, live):
    _, _, lead = _scratch(p, veh.shape[1])
    for n in range(veh.shape[0]):
        if live[n]:
            _traffic_accel(veh[n], wld[n], p, order[n], rank[n], lead)


@njit(error_model="numpy")
def _p_meta(veh, wld, act, p):
    if p[L.DISCRETE] > 0.5:
        for n in range(veh.shape[0]):
            if wld[n, L.MRM] < 0.5:
                _apply_meta_action(veh[n], wld[n], act[n, 0], p)


@njit(error_model="numpy")
def _p_ego(veh, wld, act, p, dt, order, rank, live):
    for n in range(veh.shape[0]):
        if live[n]:
            _ego_move(veh[n], wld[n], act[n], p, dt, order[n], rank[n])


@njit(error_model="numpy")
def _p_traffic(veh, wld, p, dt, live):
    for n in range(veh.shape[0]):
        if live[n]:
            _traffic_move(veh[n], wld[n], p, dt)


@njit(error_model="numpy")
def _p_collision(veh, wld, p, live):
    for n in range(veh.shape[0]):
        if live[n]:
            _contact(veh[n], wld[n], p)
            live[n] = wld[n, L.CRASHED] == 0.0 and wld[n, L.OFFROAD] == 0.0


@njit(error_model="numpy")
def _p_bookkeeping(veh, wld, p):
    for n in range(veh.shape[0]):
        _end_step(veh[n], wld[n], p)


@njit(error_model="numpy")
def _p_mobil(veh, wld, p, order, rank):
    for n in range(veh.shape[0]):
        _mobil(veh[n], wld[n], p, order[n], rank[n])


@njit(error_model="numpy")
def _p_recycle(veh, p):
    for n in range(veh.shape[0]):
        _recycle(veh[n], p)


@njit(error_model="numpy")
def _p_observe(veh, wld, p, obs, info, reward):
    near, near_d, _ = _scratch(p, veh.shape[1])
    for n in range(veh.shape[0]):
        reward[n] = _observe(veh[n], wld[n], p, obs[n], info[n], near, near_d)


@njit(error_model="numpy")
def _p_reward(veh, wld, p, order, rank, reward, status, x0):
    for n in range(veh.shape[0]):
        reward[n], status[n] = _reward(veh[n], wld[n], p, order[n], rank[n], reward[n], x0[n])


@njit(error_model="numpy")
def _p_reset(veh, wld, p, obs, info, status, rng, rp, ended, final_obs, final_info):
    near, near_d, _ = _scratch(p, veh.shape[1])
    st, keep = reset_scratch()
    for n in range(veh.shape[0]):
        ended[n] = _end_or_reset(veh[n], wld[n], p, obs[n], info[n], status[n], rng[n], rp,
                                 final_obs[n], final_info[n], near, near_d, st, keep)


def _kernel_phases(env: HighwayVectorEnv, clock: dict[str, float]) -> None:
    """One control step of every world through the phases, adding each phase's seconds to
    ``clock``."""
    veh, wld, act, p = env._veh, env._wld, env._act, env._params
    order, rank = env._order, env._rank
    x0 = np.empty(env.num_envs)
    live = np.ones(env.num_envs, dtype=np.bool_)
    nsub = int(p[L.NSUB])
    dt = p[L.DT] / nsub
    tick = time.perf_counter

    def timed(name, fn, *args):
        t = tick()
        fn(*args)
        clock[name] += tick() - t

    timed("ego", _p_meta, veh, wld, act, p)
    timed("sort", _p_sort, veh, wld, act, p, order, rank, x0)
    for _ in range(nsub):
        timed("hazards", _p_hazards, veh, wld, p, live)
        timed("idm", _p_idm, veh, wld, p, order, rank, live)
        timed("ego", _p_ego, veh, wld, act, p, dt, order, rank, live)
        timed("traffic", _p_traffic, veh, wld, p, dt, live)
        timed("collision", _p_collision, veh, wld, p, live)
    timed("bookkeeping", _p_bookkeeping, veh, wld, p)
    timed("mobil", _p_mobil, veh, wld, p, order, rank)
    timed("recycle", _p_recycle, veh, p)
    timed("observe", _p_observe, veh, wld, p, env._obs, env._info, env._rew)
    timed("reward", _p_reward, veh, wld, p, order, rank, env._rew, env._status, x0)
    timed("reset", _p_reset, veh, wld, p, env._obs, env._info, env._status, env._rng,
          env._reset_params, env._ended, env._final_obs, env._final_info)


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
    args = (env._veh, env._wld, env._act, env._params, env._order, env._rank, live)
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
