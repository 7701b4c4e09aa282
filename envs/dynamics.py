"""The step kernel: traffic (IDM + MOBIL), the ego's kinematic bicycle, hazards, collisions,
observations, rewards and ground truth for a batch of worlds in one compiled call.

Everything runs in numba so that one control step of one world costs a few microseconds and
a batch of worlds costs one call; Python only builds the ``info`` dict. A step draws no
random numbers: all randomness is fixed at reset, so a step is a pure function of the arrays
(which is what makes ``get_state``/``set_state`` exact), and a reset (in the kernel too, for
the vector env's autoreset) is a pure function of the world's RNG row
(``takeover.envs.scenarios``).

Speed notes (measured, ``takeover bench env``): helpers are plain ``@njit`` functions that
LLVM inlines; numba's IR-level ``inline="always"`` of a helper that itself inlines others
made the traffic loop twice as slow. The helpers called once per sub-step or step that LLVM
does not inline (hazards, ego controls and motion, yield request, contact, meta-action,
sub-step, abort of a lane change, reward, status) are ``inline="always"``: each call of a
compiled function passes every array argument field by field and counts references to it
on entry and exit (calls even for borrowed views), and inlining them took 7-10% off the
step. Across a batch the worlds differ in which vehicles
lead their lane and which are nearest the ego, so a branch on that is mispredicted from one
world to the next: the traffic IDM's leaders (``_lane_leaders``) and the observation's
nearest K are found with selects and counts instead. LLVM turns a select back into a
branch around the computation of its operand when that is a division or more than a few
instructions (it did so in ``_observe_within``), so the selects there pick the divisions'
operands, or constants that a ``min`` / ``max`` then applies; with the lane-change
cooldowns run down by a select in ``_mobil``'s first pass, which marks the drivers mid
change in a bit mask, that took the step to 0.90 of what it was at 256 worlds (``kernel_ab``;
no change at 1 world, where the branches were predicted). The traffic sub-step's scalar
loops are near their floor: IDM inputs copied into columns for a vectorised IDM, the lane
sweep packed into one register, a multiplication for its division by the lane width, a
second pass for ``atan2`` and ten other restructurings all measured 1.00-1.37x the step
(each extra pass cost more than the divisions or branches it saved). The batch kernels
borrow the ``Batch``'s buffers (``_borrow``: numba's reference counting of every array passed to a
helper was 43% of the step in a ``perf`` profile), keep their scratch after the buffers'
ends, and prefetch the next world's arrays while they step one. Every shortcut here (no
trigonometry at heading 0, the incremental neighbour order, the leader sweep, the counted
top-K, counted among only the vehicles within a bound that the neighbour order gives
(``_near_bound``: about 9 of 26, and the count is quadratic), one division for the headway)
is bit-exact:
``tests/test_kernel_regression.py`` pins the trajectories to the reference v1 kernel, and
``python -m takeover.experiments.benchmarks.kernel_ab <checkout>`` times a change against
another checkout in one process and checks the bits. ``step_batch_threads`` steps blocks of
worlds on numba's threads (``Batch(..., threads=T)`` keeps one scratch per block): on the idle
2-core machine 1.9x the serial kernel at 256 worlds; next to another busy process, no
gain or a loss.

References: Treiber, Hennecke & Helbing 2000 (IDM); Kesting, Treiber & Helbing 2007 (MOBIL);
Kong et al. 2015 (kinematic bicycle model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic

from takeover.envs import layout as L
from takeover.envs.controllers import idm_accel, lane_keep_steer
from takeover.envs.hazards.base import R_MAX_STEPS
from takeover.envs.lane_view import lane_rows
from takeover.envs.layout import (
    ACC,
    ACC_MAX,
    ACTIVE,
    AMAX,
    B_SAFE,
    BCOMF,
    BRAKE_MAX,
    BRAKING,
    CAR,
    CRASHED,
    DECEL,
    DISCRETE,
    DIST_MAX,
    DT,
    EGO_ACC,
    EMPTY,
    FASTER,
    HZ_DEFICIT,
    HZ_END,
    HZ_FIRE_MODE,
    HZ_IDX,
    HZ_KIND,
    HZ_ONSET,
    HZ_SEV,
    HZ_STATE,
    HZ_T_ACTIVE,
    HZ_TRIGGER,
    HZ_WINDOW,
    HZ_X,
    HZ_XEND,
    I_ACCEL,
    I_COLLISION,
    I_HEADING,
    I_HEADWAY,
    I_HZ_ACTIVE,
    I_HZ_FIRED,
    I_HZ_ONSET,
    I_HZ_SEV,
    I_JERK,
    I_LANE,
    I_MIN_DIST,
    I_MRM,
    I_OFFROAD,
    I_PROGRESS,
    I_ROUTE_LEN,
    I_SPEED,
    I_STEER,
    I_TIME,
    I_TTC,
    I_X,
    I_Y,
    JERK,
    JERK_THR,
    K_OBS,
    KIND,
    LANE,
    LANE_BOUND,
    LANE_LEFT,
    LANE_RIGHT,
    LANE_W,
    LC_THRESHOLD,
    LC_TIMER,
    LEN,
    MODE,
    MRM,
    MRM_LANE,
    MRM_T,
    N_LANES,
    NORMAL,
    NSUB,
    OFFROAD,
    OFFSET,
    OVER,
    PENDING,
    POLITE,
    PREV_ACC,
    PSI,
    R_ARRIVAL,
    R_COLLISION,
    R_HEADWAY,
    R_JERK,
    R_OFFROAD,
    R_PROGRESS,
    R_SHOULDER,
    R_SPEED,
    R_STOPPED,
    RECYCLE_AHEAD,
    RECYCLE_BEHIND,
    ROUTE_LEN,
    RUNNING,
    S0,
    S_ARRIVED,
    S_COLLISION,
    S_OFF_ROAD,
    S_PULLED_OVER,
    S_STOPPED,
    S_STOPPED_IN_LANE,
    SENSE,
    SHADOW,
    SLOWER,
    STATIC,
    STEER,
    STEER_MAX,
    STEP,
    STILL,
    STOP_CLEAR,
    STOP_GRACE,
    STOP_SPEED,
    TGT_LANE,
    TGT_SPEED,
    THW,
    TIME,
    TRIGGER_RANGE,
    TTC_MAX,
    V0,
    V_HI,
    V_LO,
    V_MAX,
    V_SCALE,
    VY,
    WHEELBASE,
    WID,
    X_SCALE,
    V,
    X,
    Y,
)
from takeover.envs.scenarios import reset_scratch, reset_world

LAT_SPEED = 1.2  # m/s, lateral speed of an ordinary lane change (~3.3 s per lane)
LAT_SPEED_HAZARD = 2.8  # m/s, an aggressive cut-in or merge (~1.4 s per lane)
LC_COOLDOWN = 4.0  # s between two lane changes of one driver
DISCRETE_SPEED_STEP = 5.0  # m/s per faster/slower meta-action
DISCRETE_BRAKE = 6.0  # m/s^2, strongest braking of the meta-action speed controller
# minimal-risk manoeuvre (MRM): gentle in a live lane so that following traffic can react
# and there is time to reach the shoulder, firmer once on it (UN R157 allows up to 4 m/s^2)
MRM_DECEL = 1.5  # m/s^2 while in a live lane
MRM_STOP_DECEL = 3.0  # m/s^2 once on the hard shoulder
MRM_SEEK_SPEED = 12.0  # m/s held in a live lane while looking for gaps to the right ...
MRM_SEEK_TIME = 12.0  # s ... for at most this long; then it stops in its lane
MRM_GAP_AHEAD = 5.0  # m (+ MRM_GAP_TIME x closing speed) needed ahead in the lane right
MRM_GAP_BEHIND = 8.0  # m (+ MRM_GAP_TIME x closing speed) needed behind in it
MRM_GAP_TIME = 1.5  # s
MRM_IN_LANE = 1.0  # m: this close to a lane's centre the MRM looks for the next gap
# cooperative yielding (``_yield_request``): a car leaning this far toward a neighbour lane
# (or, discrete, with that lane as its target) signals a merge; it needs one if a standing
# object blocks its own lane within YIELD_BLOCKED; the follower it asks leaves YIELD_ROOM
# beyond its standstill distance behind it, room to angle in from a standstill
YIELD_LEAN = 0.4  # m off the lane centre
YIELD_BLOCKED = 250.0  # m
YIELD_ROOM = 6.0  # m
YIELD_RANGE = 150.0  # m: followers further back do not react yet


@njit(cache=True, error_model="numpy", inline="always")
def _occupies(y, wid, lane, w):
    """A vehicle occupies a lane if its body reaches well into it (both lanes mid-change)."""
    return abs(y - lane * w) < 0.5 * w + 0.5 * wid - 0.3


@njit(cache=True, error_model="numpy")
def _leader(vw, order, rank, i, lane, w):
    """Nearest vehicle ahead of slot ``i`` (by centre, alongside included) occupying
    ``lane``; -1 if none.

    Walks up ``order`` (occupied slots sorted by x at the start of the control step, then
    the empty ones) from ``i``, so a query costs a few steps instead of a pass over every
    vehicle. A counted ``for`` loop, one per direction: with a two-way ``while`` loop numba
    kept the reference counting of ``vw`` and ``order`` (four atomic operations per query,
    which made the traffic IDM 17% slower).
    """
    xi = vw[i, X]
    for r in range(rank[i] + 1, order.shape[0]):
        j = order[r]
        if vw[j, KIND] == EMPTY:  # the empty slots close the order: nothing further ahead
            return -1
        if vw[j, X] - xi >= 0.0 and _occupies(vw[j, Y], vw[j, WID], lane, w):
            return j
    return -1


@njit(cache=True, error_model="numpy")
def _follower(vw, order, rank, i, lane, w):
    """Nearest vehicle behind slot ``i`` (alongside included) occupying ``lane``; -1 if
    none (``_leader``, walking down ``order``)."""
    xi = vw[i, X]
    for r in range(rank[i] - 1, -1, -1):
        j = order[r]
        if vw[j, KIND] == EMPTY:
            return -1
        if xi - vw[j, X] >= 0.0 and _occupies(vw[j, Y], vw[j, WID], lane, w):
            return j
    return -1


@njit(cache=True, error_model="numpy")
def _after(vw, k, j):
    """Whether slot ``k`` sorts after slot ``j``: occupied slots by (x, slot), then the
    empty ones by slot (a strict total order, so the sorted order is unique)."""
    ek = vw[k, KIND] == EMPTY
    ej = vw[j, KIND] == EMPTY
    if ek != ej:
        return ek
    if ek or vw[k, X] == vw[j, X]:
        return k > j
    return vw[k, X] > vw[j, X]


@njit(cache=True, error_model="numpy")
def _sort_by_x(vw, order, rank):
    """Sort ``order`` (a permutation of the slots, left sorted by the previous step) by
    ``_after``, by insertion: vehicles rarely pass each other within one control step, so
    this costs about one comparison per slot. The result depends only on ``vw``."""
    m = order.shape[0]
    for r in range(1, m):
        j = order[r]
        q = r - 1
        while q >= 0 and _after(vw, order[q], j):
            order[q + 1] = order[q]
            q -= 1
        order[q + 1] = j
    for r in range(m):
        rank[order[r]] = r


@njit(cache=True, error_model="numpy")
def _cos_sin(psi):
    """``(cos(psi), sin(psi))``, bit for bit, without the trigonometry at psi = +-0 (most
    vehicles, most of the time)."""
    if psi == 0.0:
        return 1.0, psi
    return math.cos(psi), math.sin(psi)


@njit(cache=True, error_model="numpy")
def _vx(vw, j):
    """Slot ``j``'s speed along the road, m/s."""
    return vw[j, V] if vw[j, PSI] == 0.0 else vw[j, V] * math.cos(vw[j, PSI])


@njit(cache=True, error_model="numpy")
def _idm_behind(vw, i, j):
    """IDM acceleration of slot ``i`` following slot ``j`` (``j`` = -1: free road)."""
    if vw[i, AMAX] <= 0.0:  # static objects and the ego have no IDM driver
        return 0.0
    if j < 0:
        gap = math.inf
        vl = 0.0
    else:
        gap = vw[j, X] - vw[i, X] - 0.5 * (vw[j, LEN] + vw[i, LEN])
        vl = _vx(vw, j)
    a = idm_accel(vw[i, V], vw[i, V0], gap, vl, vw[i, THW], vw[i, AMAX], vw[i, BCOMF],
                  vw[i, S0])
    return max(a, -9.0)


@njit(cache=True, error_model="numpy")
def _follow(vw, order, rank, i, lane, w):
    """IDM acceleration of slot ``i`` behind its leader in ``lane``; a call, not inlined,
    so that the hot loop over every vehicle stays small (few vehicles change lanes)."""
    return _idm_behind(vw, i, _leader(vw, order, rank, i, lane, w))


@njit(cache=True, error_model="numpy")
def _half_extents(vw, j):
    """Half-extents (m) along x and y of slot ``j``'s box rotated by its heading."""
    if vw[j, PSI] == 0.0:  # the common case, and exactly what the trigonometry gives at 0
        return 0.5 * vw[j, LEN], 0.5 * vw[j, WID]
    c = abs(math.cos(vw[j, PSI]))
    s = abs(math.sin(vw[j, PSI]))
    return (0.5 * vw[j, LEN] * c + 0.5 * vw[j, WID] * s,
            0.5 * vw[j, LEN] * s + 0.5 * vw[j, WID] * c)


@njit(cache=True, error_model="numpy")
def _ego_collides(vw):
    hx0, hy0 = _half_extents(vw, 0)
    for j in range(1, vw.shape[0]):
        if vw[j, KIND] == EMPTY or abs(vw[j, X] - vw[0, X]) > 12.0:
            continue
        hx, hy = _half_extents(vw, j)
        if abs(vw[j, X] - vw[0, X]) < hx0 + hx and abs(vw[j, Y] - vw[0, Y]) < hy0 + hy:
            return True
    return False


@njit(cache=True, error_model="numpy")
def _offroad(vw, p):
    """The ego's centre is off the paved road: left of lane 0 or right of the shoulder."""
    w = p[LANE_W]
    y = vw[0, Y]
    return y < -0.5 * w or y > (p[N_LANES] + 0.5) * w


@njit(cache=True, error_model="numpy")
def _ego_lane(vw, p):
    """The lane under the ego's centre: 0..N_LANES-1, or N_LANES on the hard shoulder."""
    lane = round(vw[0, Y] / p[LANE_W])
    return min(max(lane, 0.0), p[N_LANES])


@njit(cache=True, error_model="numpy")
def _on_shoulder(vw, p):
    return vw[0, Y] > (p[N_LANES] - 0.5) * p[LANE_W]


@njit(cache=True, error_model="numpy", inline="always")
def _update_hazard(vw, ww, p):
    """Fire a pending hazard on its trigger (time, or the ego within sensing range of a
    standing hazard) and end an active one; see ``takeover.envs.hazards.base``."""
    state = ww[HZ_STATE]
    if state == OVER or ww[HZ_KIND] == 0.0:
        return
    t = ww[TIME]
    ranged = ww[HZ_TRIGGER] == TRIGGER_RANGE
    j = int(ww[HZ_IDX])
    mode = ww[HZ_FIRE_MODE]
    if state == ACTIVE:
        if (vw[0, X] > ww[HZ_XEND]) if ranged else (t >= ww[HZ_END]):
            ww[HZ_STATE] = OVER
            # past its window a moving hazard's car drives on: the braked car pulls away
            # again, the car that cut in speeds up and rejoins ordinary traffic
            if j >= 0 and mode == BRAKING:
                vw[j, MODE] = LANE_BOUND
            elif j >= 0 and mode == LANE_BOUND:
                vw[j, MODE] = NORMAL
                vw[j, V0] += ww[HZ_DEFICIT]
        return
    if not ((ww[HZ_X] - vw[0, X] < p[SENSE]) if ranged else (t >= ww[HZ_ONSET])):
        return
    if j >= 0 and mode == BRAKING:
        vw[j, MODE] = BRAKING
    elif j >= 0 and mode == LANE_BOUND:  # the waiting car moves into the ego's lane, slower
        vw[j, MODE] = LANE_BOUND
        vw[j, LANE] = min(_ego_lane(vw, p), p[N_LANES] - 1.0)
        vw[j, V0] = max(vw[0, V] - ww[HZ_DEFICIT], 3.0)
        vw[j, V] = min(vw[j, V], vw[j, V0] + 2.0)
    ww[HZ_STATE] = ACTIVE
    ww[HZ_T_ACTIVE] = t
    ww[HZ_END] = t + p[HZ_WINDOW]


@njit(cache=True, error_model="numpy")
def _gap_to(vw, j):
    """Bumper gap (m) from the ego to slot ``j`` (either side), ``inf`` for ``j`` = -1."""
    if j < 0:
        return math.inf
    return abs(vw[j, X] - vw[0, X]) - 0.5 * (vw[j, LEN] + vw[0, LEN])


@njit(cache=True, error_model="numpy")
def _mrm_controls(vw, ww, p, order, rank):
    """The minimal-risk manoeuvre: hazard lights (drawn from the ``MRM`` flag), slow to
    12 m/s, move one lane right whenever the gap there allows, down to the hard shoulder,
    and stop there; after 12 s without reaching it, stop in the lane. Follows its
    leader(s) with the IDM throughout."""
    w = p[LANE_W]
    n = p[N_LANES]
    v = vw[0, V]
    tl = ww[MRM_LANE]
    centred = abs(vw[0, Y] - tl * w) < MRM_IN_LANE
    if centred and tl < n and ww[MRM_T] < MRM_SEEK_TIME:
        lead = _leader(vw, order, rank, 0, tl + 1.0, w)
        foll = _follower(vw, order, rank, 0, tl + 1.0, w)
        closing_ahead = 0.0 if lead < 0 else max(0.0, v - vw[lead, V])
        closing_behind = 0.0 if foll < 0 else max(0.0, vw[foll, V] - v)
        if (_gap_to(vw, lead) > MRM_GAP_AHEAD + MRM_GAP_TIME * closing_ahead
                and _gap_to(vw, foll) > MRM_GAP_BEHIND + MRM_GAP_TIME * closing_behind):
            tl += 1.0
            ww[MRM_LANE] = tl
            centred = False
    elif not centred and abs(vw[0, Y] - (tl - 1.0) * w) < 0.5 * w:
        # mid-change, still mostly in the old lane: back out if the gap behind has closed
        foll = _follower(vw, order, rank, 0, tl, w)
        closing_behind = 0.0 if foll < 0 else max(0.0, vw[foll, V] - v)
        if _gap_to(vw, foll) < 0.5 * (MRM_GAP_BEHIND + MRM_GAP_TIME * closing_behind):
            tl -= 1.0
            ww[MRM_LANE] = tl
    cur = math.floor(vw[0, Y] / w + 0.5)
    acc = _ego_idm(vw, _leader(vw, order, rank, 0, cur, w))
    if tl != cur:
        acc = min(acc, _ego_idm(vw, _leader(vw, order, rank, 0, tl, w)))
    if centred and tl == n:
        target = -MRM_STOP_DECEL
    elif v > MRM_SEEK_SPEED or (ww[MRM_T] >= MRM_SEEK_TIME and tl == cur):
        target = -MRM_DECEL
    else:
        target = 0.0
    acc = max(min(acc, target), -p[BRAKE_MAX])
    if v <= 0.0:
        acc = max(acc, 0.0)
    steer = lane_keep_steer(vw[0, Y] - tl * w, vw[0, PSI], v, p[WHEELBASE])
    return min(max(steer, -p[STEER_MAX]), p[STEER_MAX]), acc


@njit(cache=True, error_model="numpy", inline="always")
def _ego_controls(vw, ww, a_in, p, order, rank):
    """Steering angle (rad) and acceleration (m/s^2) the ego applies this sub-step."""
    if ww[MRM] > 0.5:
        return _mrm_controls(vw, ww, p, order, rank)
    if p[DISCRETE] > 0.5:
        steer = lane_keep_steer(vw[0, Y] - ww[TGT_LANE] * p[LANE_W], vw[0, PSI], vw[0, V],
                                p[WHEELBASE])
        acc = min(max(1.0 * (ww[TGT_SPEED] - vw[0, V]), -DISCRETE_BRAKE), p[ACC_MAX])
        return min(max(steer, -p[STEER_MAX]), p[STEER_MAX]), acc
    steer = a_in[0] * p[STEER_MAX]
    acc = a_in[1] * (p[ACC_MAX] if a_in[1] > 0.0 else p[BRAKE_MAX])
    return steer, acc


@njit(cache=True, error_model="numpy", inline="always")
def _apply_meta_action(vw, ww, action, p):
    a = int(action)
    if a == FASTER:
        ww[TGT_SPEED] = min(ww[TGT_SPEED] + DISCRETE_SPEED_STEP, p[V_MAX])
    elif a == SLOWER:
        ww[TGT_SPEED] = max(ww[TGT_SPEED] - DISCRETE_SPEED_STEP, 0.0)
    elif a == LANE_LEFT:
        ww[TGT_LANE] = max(_ego_lane(vw, p) - 1.0, 0.0)
    elif a == LANE_RIGHT:  # travel lanes only: the shoulder is for the MRM
        lane = _ego_lane(vw, p)
        ww[TGT_LANE] = max(min(lane + 1.0, p[N_LANES] - 1.0), lane)


@njit(cache=True, error_model="numpy", inline="always")
def _yield_request(vw, ww, p, order, rank):
    """The lane whose followers the ego asks to let it in this sub-step: the lane it
    signals toward (it leans ``YIELD_LEAN`` m toward it, or has it as its discrete target),
    when a standing object blocks its own lane within ``YIELD_BLOCKED`` m (SUMO's LC2013
    ``informFollower``: a blocked lane changer asks the target lane's followers to open a
    gap); -1 if none."""
    w = p[LANE_W]
    cur = math.floor(vw[0, Y] / w + 0.5)
    lean = vw[0, Y] - cur * w
    if abs(lean) >= YIELD_LEAN:
        tgt = cur + (1.0 if lean > 0.0 else -1.0)
    elif p[DISCRETE] > 0.5 and ww[MRM] < 0.5 and ww[TGT_LANE] != cur:
        tgt = ww[TGT_LANE]
    else:
        return -1.0
    if tgt < 0.0 or tgt > p[N_LANES] - 1.0:
        return -1.0
    lead = _leader(vw, order, rank, 0, cur, w)
    if lead < 0 or _vx(vw, lead) >= 2.0 or _gap_to(vw, lead) > YIELD_BLOCKED:
        return -1.0
    return tgt


@njit(cache=True, error_model="numpy")
def _yield_accel(vw, i):
    """Acceleration with which traffic car ``i``, behind the ego in the lane it asks for,
    lets it in (``inf``: it does not; nor does a car over ``YIELD_RANGE`` m back): it
    follows the ego as a virtual leader by its own IDM (standstill distance ``s0 +
    YIELD_ROOM``), braking at least as hard as stopping behind it needs and at most its
    comfortable deceleration ``b_comf`` (cooperative speed adjustment, SUMO's
    ``lcCooperativeSpeed``; a car that would need more drives on, the next one yields).
    Braking at least what stopping needs keeps that need from growing, so a car that
    yields keeps yielding until the ego is in (then the ego is its ordinary leader)."""
    if vw[i, AMAX] <= 0.0:
        return math.inf
    s_stop = vw[i, S0] + YIELD_ROOM
    gap = vw[0, X] - vw[i, X] - 0.5 * (vw[0, LEN] + vw[i, LEN])
    v0 = _vx(vw, 0)
    closing = max(vw[i, V] - v0, 0.0)
    room = gap - s_stop
    if gap > YIELD_RANGE:
        return math.inf
    courtesy = vw[i, BCOMF]
    need = closing * closing / (2.0 * max(room, 0.5))  # m/s^2 to stop s_stop behind it
    if need > courtesy:
        return math.inf
    a = idm_accel(vw[i, V], vw[i, V0], max(gap, 0.1), v0, vw[i, THW], vw[i, AMAX],
                  vw[i, BCOMF], s_stop)
    return min(max(a, -courtesy), -need)


@njit(cache=True, error_model="numpy")
def _lane_leaders(vw, order, w, lead):
    """``lead[i]`` = the nearest occupied slot above ``i`` in ``order`` that occupies the
    lane under ``i``'s centre (-1: none; -2: that lane is not tracked), for every occupied
    slot ``i``: ``_leader``'s answer whenever that slot is ahead by x (it is unless the
    order went stale within the control step), in one sweep down the order.

    The sweep keeps, per lane, the last slot swept that occupies it (``lead[m:]``, lane
    ``L`` at ``L + 2``), and updates every lane with a select instead of a branch: which
    lanes a vehicle occupies, and how many vehicles ``_leader`` walks past, differ from
    world to world, so a walk per vehicle (or a branchy sweep, branch
    ``kernel-scratch-sweep``) pays a mispredicted branch per vehicle."""
    m = order.shape[0]
    last = lead[m:]
    nl = last.shape[0]
    last[:] = -1
    top = m
    while top > 0 and vw[order[top - 1], KIND] == EMPTY:  # the empty slots close the order
        top -= 1
    for r in range(top - 1, -1, -1):
        j = order[r]
        yj = vw[j, Y]
        wid = vw[j, WID]
        k = int(math.floor(yj / w + 0.5)) + 2
        inside = (k >= 0) & (k < nl)
        c = last[min(max(k, 0), nl - 1)]
        lead[j] = c if inside else -2
        for q in range(nl):
            last[q] = j if _occupies(yj, wid, q - 2.0, w) else last[q]


@njit(cache=True, error_model="numpy")
def _traffic_accel(vw, ww, p, order, rank, lead):
    """Every traffic vehicle's acceleration this sub-step, by its mode: static objects
    stand, a braking hazard car brakes at its ``DECEL``, a waiting hazard car holds its
    offset to the ego, everyone else follows the IDM behind its leader (and, mid lane
    change, behind the leader in the target lane too; the car the ego asks to let it in
    also yields, ``_yield_request``). Written out in the loop: numba's
    inlining of it as a function made this phase twice as slow. ``lead`` is scratch
    (``_scratch``) for the own-lane leaders (``_lane_leaders``)."""
    w = p[LANE_W]
    asked = _yield_request(vw, ww, p, order, rank)
    _lane_leaders(vw, order, w, lead)
    for i in range(1, vw.shape[0]):
        if vw[i, KIND] == EMPTY:
            continue
        mode = vw[i, MODE]
        if mode == STATIC:
            vw[i, ACC] = 0.0
        elif mode == BRAKING:
            vw[i, ACC] = -vw[i, DECEL] if vw[i, V] > 0.0 else 0.0
        elif mode == SHADOW:
            target = vw[0, X] + vw[i, OFFSET]
            a = 0.8 * (target - vw[i, X]) + 1.5 * (vw[0, V] - vw[i, V])
            vw[i, ACC] = min(max(a, -4.0), 3.0)
        else:
            cur = math.floor(vw[i, Y] / w + 0.5)
            j = lead[i]
            if j == -2 or (j >= 0 and not vw[j, X] - vw[i, X] >= 0.0):  # rare: walk
                j = _leader(vw, order, rank, i, cur, w)
            a = _idm_behind(vw, i, j)
            tgt = vw[i, LANE]
            if tgt != cur:
                a = min(a, _follow(vw, order, rank, i, tgt, w))
            if cur == asked and vw[i, X] < vw[0, X]:
                a = min(a, _yield_accel(vw, i))
            vw[i, ACC] = a


@njit(cache=True, error_model="numpy", inline="always")
def _ego_move(vw, ww, a_in, p, dt, order, rank):
    """The ego's controls, then its kinematic bicycle about the centre of gravity
    (lr = lf = wheelbase / 2) for ``dt`` s."""
    steer, acc = _ego_controls(vw, ww, a_in, p, order, rank)
    ww[STEER] = steer
    ww[EGO_ACC] = acc
    v = vw[0, V]
    # at zero steering beta = atan(0.5 tan(+-0)) = +-0 and sin(beta) = beta, bit for bit
    beta = steer if steer == 0.0 else math.atan(0.5 * math.tan(steer))
    c, s = _cos_sin(vw[0, PSI] + beta)
    vw[0, X] += v * c * dt
    vw[0, Y] += v * s * dt
    vw[0, PSI] += v / (0.5 * p[WHEELBASE]) * (beta if beta == 0.0 else math.sin(beta)) * dt
    vw[0, V] = min(max(v + acc * dt, 0.0), p[V_MAX])
    vw[0, ACC] = acc


@njit(cache=True, error_model="numpy")
def _traffic_move(vw, ww, p, dt):
    """Integrate traffic for ``dt`` s (speed, position, lateral move toward its lane) and
    advance the clock."""
    w = p[LANE_W]
    hz = int(ww[HZ_IDX])
    for i in range(1, vw.shape[0]):
        if vw[i, KIND] == EMPTY or vw[i, MODE] == STATIC:
            continue
        vw[i, V] = max(vw[i, V] + vw[i, ACC] * dt, 0.0)
        vw[i, X] += vw[i, V] * dt
        err = vw[i, LANE] * w - vw[i, Y]
        lat = LAT_SPEED_HAZARD if (i == hz and ww[HZ_STATE] != PENDING) else LAT_SPEED
        vy = min(max(1.5 * err, -lat), lat)
        vw[i, VY] = vy
        if vy != 0.0:
            vw[i, Y] += vy * dt
            vw[i, PSI] = math.atan2(vy, max(vw[i, V], 1.0))
        else:
            vw[i, PSI] = 0.0
    ww[TIME] += dt


@njit(cache=True, error_model="numpy", inline="always")
def _contact(vw, ww, p):
    """Latch a collision or leaving the road."""
    if _ego_collides(vw):
        ww[CRASHED] = 1.0
    if _offroad(vw, p):
        ww[OFFROAD] = 1.0


@njit(cache=True, error_model="numpy", inline="always")
def _substep(vw, ww, a_in, p, dt, order, rank, lead):
    _update_hazard(vw, ww, p)
    _traffic_accel(vw, ww, p, order, rank, lead)
    _ego_move(vw, ww, a_in, p, dt, order, rank)
    _traffic_move(vw, ww, p, dt)
    _contact(vw, ww, p)


def _popcounting(typingctx, x):
    """``_popcount(x)``: the number of bits set in the int64 ``x`` (``llvm.ctpop``)."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]),
                                            "llvm.ctpop.i64")
        return builder.call(fn, [args[0]])
    return types.int64(types.int64), codegen


_popcount = cast("Callable[[int], int]", intrinsic(_popcounting))


def _trailing_zeros(typingctx, x):
    """``_ctz(x)``: the index of the lowest bit set in the int64 ``x`` != 0
    (``llvm.cttz``)."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i64, ir.IntType(1)]), "llvm.cttz.i64")
        return builder.call(fn, [args[0], ir.IntType(1)(1)])
    return types.int64(types.int64), codegen


_ctz = cast("Callable[[int], int]", intrinsic(_trailing_zeros))


@njit(cache=True, error_model="numpy", inline="always")
def _abort_if_blocked(vw, i, order, rank, w):
    """A driver mid lane change steers back if someone now sits beside it in the target
    lane (the gap it chose has closed, e.g. the ego braked or moved over)."""
    tgt = vw[i, LANE]
    for ahead in (True, False):
        j = _leader(vw, order, rank, i, tgt, w) if ahead else _follower(vw, order, rank, i, tgt, w)
        if j < 0 or abs(vw[j, Y] - vw[i, Y]) < 0.5 * (vw[j, WID] + vw[i, WID]):
            continue  # none, or already overlapping laterally: too late to back out
        gap = abs(vw[j, X] - vw[i, X]) - 0.5 * (vw[j, LEN] + vw[i, LEN])
        if gap < 2.0:
            vw[i, LANE] = tgt - 1.0 if vw[i, Y] < tgt * w else tgt + 1.0
            vw[i, LC_TIMER] = LC_COOLDOWN
            return


@njit(cache=True, error_model="numpy")
def _mobil(vw, ww, p, order, rank):
    """MOBIL lane changes for ordinary traffic. Each driver reconsiders its lane once per
    simulated second, staggered across drivers (people do not re-decide every 100 ms);
    drivers mid lane change check every step whether to back out.

    Two passes: the backing out, then only the drivers whose turn it is (slots ``turn``,
    ``turn + period``, ...). Neither reads another driver's ``LANE`` or ``LC_TIMER`` (the
    only columns they write), so this decides exactly as one pass in slot order would.

    First the control step's cooldowns run down (each driver's ``LC_TIMER``, by a select:
    which drivers cool down differs from world to world), in the pass that marks the
    drivers mid change in a bit mask (the same test, without a branch per driver: 2-3 of
    20 are mid change, different ones in each world, and the branch was mispredicted);
    the backing out then visits the marked slots only. The order of the backing out does
    not matter: a driver's writes only its own ``LANE`` and ``LC_TIMER``, and reads the
    others' positions and sizes."""
    w = p[LANE_W]
    n = p[N_LANES]
    m = vw.shape[0]
    dt = p[DT]
    mid = 0  # slots 1..62 mid change, as bits (slots past 62, in worlds that big: at once)
    for i in range(1, m):
        t = vw[i, LC_TIMER]
        vw[i, LC_TIMER] = t - dt if t > 0.0 else t
        on = ((vw[i, KIND] == CAR) & (vw[i, MODE] == NORMAL)
              & (abs(vw[i, Y] - vw[i, LANE] * w) > 0.2))
        if i < 63:
            mid |= np.int64(on) << i
        elif on:
            _abort_if_blocked(vw, i, order, rank, w)
    for _ in range(_popcount(mid)):
        _abort_if_blocked(vw, _ctz(mid), order, rank, w)
        mid &= mid - 1
    period = max(int(round(1.0 / p[DT])), 1)
    turn = int(ww[STEP]) % period
    asked = _yield_request(vw, ww, p, order, rank)
    for i in range(turn if turn > 0 else period, m, period):
        if vw[i, KIND] != CAR or vw[i, MODE] != NORMAL or vw[i, LC_TIMER] > 0.0:
            continue
        cur = vw[i, LANE]
        if abs(vw[i, Y] - cur * w) > 0.2:  # mid change (or just backed out: timer set)
            continue
        lead = _leader(vw, order, rank, i, cur, w)
        foll = _follower(vw, order, rank, i, cur, w)
        a_self = _idm_behind(vw, i, lead)
        best_gain = p[LC_THRESHOLD]
        best_lane = -1.0
        foll_known, foll_gain = False, 0.0  # the old follower's term (politeness x gain)
        for d in (-1.0, 1.0):
            lane = cur + d
            if lane < 0.0 or lane > n - 1.0:
                continue
            nl = _leader(vw, order, rank, i, lane, w)
            nf = _follower(vw, order, rank, i, lane, w)
            if lane == asked and vw[0, X] > vw[i, X] and (nl < 0 or vw[nl, X] > vw[0, X]):
                nl = 0  # the gap the ego signals for is its own: it leads there
            # never change into a gap shorter than the standstill distance
            if nl >= 0 and vw[nl, X] - vw[i, X] < 0.5 * (vw[nl, LEN] + vw[i, LEN]) + vw[i, S0]:
                continue
            if nf >= 0 and vw[i, X] - vw[nf, X] < 0.5 * (vw[nf, LEN] + vw[i, LEN]) + vw[i, S0]:
                continue
            a_new = _idm_behind(vw, i, nl)
            gain = a_new - a_self
            if nf >= 0:
                # the new follower must not brake harder than b_safe (the ego counts too)
                nf_before = _idm_behind(vw, nf, nl) if nf > 0 else 0.0
                nf_after = _idm_behind(vw, nf, i) if nf > 0 else _ego_idm(vw, i)
                if nf_after < -p[B_SAFE]:
                    continue
                gain += vw[i, POLITE] * (nf_after - nf_before)
            if foll > 0:
                if not foll_known:  # the same for both lanes: evaluated once
                    foll_gain = vw[i, POLITE] * (_idm_behind(vw, foll, lead)
                                                 - _idm_behind(vw, foll, i))
                    foll_known = True
                gain += foll_gain
            if gain > best_gain:
                best_gain = gain
                best_lane = lane
        if best_lane >= 0.0:
            vw[i, LANE] = best_lane
            vw[i, LC_TIMER] = LC_COOLDOWN


@njit(cache=True, error_model="numpy")
def _ego_idm(vw, j):
    """IDM acceleration the ego would need behind ``j`` (-1: free road), with a typical
    driver's parameters (the ego has none of its own): MOBIL's safety check when the ego is
    the new follower, and the MRM's car following."""
    v = vw[0, V]
    if j < 0:
        return idm_accel(v, max(v, 1.0), math.inf, 0.0, 1.5, 1.5, 2.0, 2.5)
    gap = vw[j, X] - vw[0, X] - 0.5 * (vw[j, LEN] + vw[0, LEN])
    return idm_accel(v, max(v, 1.0), gap, _vx(vw, j), 1.5, 1.5, 2.0, 2.5)


@njit(cache=True, error_model="numpy")
def _recycle(vw, p, room):
    """Keep traffic around the ego: ordinary cars far behind reappear ahead and vice versa,
    in the lane with the most room (deterministic, so snapshots stay exact). ``room`` is
    scratch for ``N_LANES`` floats."""
    w = p[LANE_W]
    xe = vw[0, X]
    for i in range(1, vw.shape[0]):
        if vw[i, KIND] != CAR or vw[i, MODE] != NORMAL:
            continue
        if vw[i, X] < xe - p[RECYCLE_BEHIND]:
            x_new = xe + p[RECYCLE_AHEAD]
        elif vw[i, X] > xe + p[RECYCLE_AHEAD] + 60.0:
            x_new = xe - p[RECYCLE_BEHIND] + 20.0
        else:
            continue
        # the room in each lane (the nearest other vehicle occupying it) in one pass over
        # the vehicles: a car that finds no room is a candidate again the next step
        nl = int(p[N_LANES])
        room[:nl] = 1e9
        for j in range(vw.shape[0]):
            if j == i or vw[j, KIND] == EMPTY:
                continue
            yj, wid, dist = vw[j, Y], vw[j, WID], abs(vw[j, X] - x_new)
            for lane in range(nl):
                room[lane] = min(room[lane], dist) if _occupies(yj, wid, lane, w) else room[lane]
        best_lane = -1.0
        best_room = 25.0
        for lane in range(nl):
            if room[lane] > best_room:
                best_room = room[lane]
                best_lane = float(lane)
        if best_lane >= 0.0:
            vw[i, X] = x_new
            vw[i, Y] = best_lane * w
            vw[i, LANE] = best_lane
            vw[i, VY] = 0.0
            vw[i, PSI] = 0.0
            vw[i, V] = min(vw[i, V0], vw[0, V] + 3.0) if x_new < xe else vw[i, V0]


@njit(cache=True, error_model="numpy")
def _near_bound(vw, order, rank, k):
    """An upper bound on the ``k``-th smallest squared distance from the ego to another
    vehicle (``inf`` if none is found): the largest of the ``k`` vehicles around the ego in
    ``order`` (sorted by x at the start of the step: the nearest by x, or near them)."""
    r0 = rank[0]
    lo = r0 - k // 2
    if lo < 0 or lo + k >= order.shape[0]:
        return math.inf
    xe, ye = vw[0, X], vw[0, Y]
    t = 0.0
    for r in range(lo, lo + k + 1):
        j = order[r]
        if j == 0:
            continue
        if vw[j, KIND] == EMPTY:
            return math.inf
        dx = vw[j, X] - xe
        dy = vw[j, Y] - ye
        t = max(t, dx * dx + dy * dy)
    return t


@njit(cache=True, error_model="numpy")
def _gather_all(vw, xe, ye, cs, near_d):
    """``_observe``'s others (slots in ``cs``, squared distances in ``near_d``), every one
    under 1e18; returns how many."""
    c = 0
    for j in range(1, vw.shape[0]):
        if vw[j, KIND] == EMPTY:
            continue
        dx = vw[j, X] - xe
        dy = vw[j, Y] - ye
        d = dx * dx + dy * dy
        cs[c] = j
        near_d[c] = d
        c += d < 1e18
    return c


@njit(cache=True, error_model="numpy")
def _observe(vw, ww, p, ob, inf, near, near_d):
    """Fill one world's observation rows and ground-truth row; return the reward pieces.
    ``near`` / ``near_d`` (``_scratch``) are scratch for the nearest others."""
    return _observe_within(vw, ww, p, ob, inf, near, near_d, math.inf)


@njit(cache=True, error_model="numpy")
def _observe_within(vw, ww, p, ob, inf, near, near_d, bound):
    """``_observe``, told that at least ``K_OBS`` other vehicles are within squared distance
    ``bound`` (``_near_bound``; ``inf``: nothing known): only those take part in the count
    of the nearest K. If fewer turn out to be (the bound was wrong), it counts them all, so
    the result does not depend on ``bound``."""
    w = p[LANE_W]
    m = vw.shape[0]
    k = int(p[K_OBS])
    xe, ye, ve, pe = vw[0, X], vw[0, Y], vw[0, V], vw[0, PSI]
    ce, se = _cos_sin(pe)
    vxe, vye = ve * ce, ve * se
    road = (p[N_LANES] + 1.0) * w  # travel lanes and the hard shoulder
    ob[:, :] = 0.0
    ob[0, 0] = 1.0
    if p[DISCRETE] > 0.5:  # the setpoint the meta-actions move (else the policy cannot see it)
        ob[0, 1] = min(max((ww[TGT_SPEED] - ve) / p[V_SCALE], -1.0), 1.0)
    ob[0, 2] = min(max(2.0 * (ye + 0.5 * w) / road - 1.0, -1.0), 1.0)
    ob[0, 3] = min(max(vxe / p[V_SCALE], -1.0), 1.0)
    ob[0, 4] = min(max(vye / p[V_SCALE], -1.0), 1.0)
    ob[0, 5] = ce
    ob[0, 6] = se
    ttc = TTC_MAX
    gap_ahead = math.inf  # the smallest gap in the corridor ahead (headway: over ve)
    min_dist = DIST_MAX
    hx0, hy0 = _half_extents(vw, 0)
    cs = near[k + 1:]  # the other vehicles' slots, in slot order, and in near_d[:c] ...
    c = 0  # ... their squared distances (those under 1e18 and within the bound)
    c_all = 0  # (those under 1e18)
    for j in range(1, m):
        if vw[j, KIND] == EMPTY:
            continue
        dx = vw[j, X] - xe
        dy = vw[j, Y] - ye
        # one cos / sin per vehicle for its box and its speed along the road (at heading
        # 0 they are 1 and 0, and these expressions give ``_half_extents`` and ``_vx``
        # bit for bit); the candidate distance is computed for every vehicle and kept by a
        # select on the same test as before (a branch on it was mispredicted)
        cj, sj = _cos_sin(vw[j, PSI])
        ac, asn = abs(cj), abs(sj)
        hx = 0.5 * vw[j, LEN] * ac + 0.5 * vw[j, WID] * asn
        hy = 0.5 * vw[j, LEN] * asn + 0.5 * vw[j, WID] * ac
        near_box = (abs(dx) < min_dist + hx0 + 10.0) & (abs(dy) < min_dist + hy0 + 10.0)
        cand = max(abs(dx) - hx0 - hx, abs(dy) - hy0 - hy, 0.0)
        # (a select of constants, then max / min: a select of cand itself, LLVM made a
        # branch around its computation again; max(cand, -inf) is cand, min(., inf) a no-op)
        min_dist = min(min_dist, max(cand, -math.inf if near_box else math.inf))
        d = dx * dx + dy * dy
        cs[c] = j
        near_d[c] = d
        c += (d < 1e18) & (d <= bound)
        c_all += d < 1e18
        # time to collision and headway to the vehicles ahead: in the ego's corridor, or
        # drifting toward it (cut-in, merge: the conflict starts once both the gap and the
        # lateral clearance have closed). Every candidate is computed and the right one
        # selected, with no branch: which vehicles are ahead, beside or closing differs
        # from world to world, so the branches were mispredicted (about 60% of this
        # phase at 256 worlds); the values taken are the same expressions, bit for bit.
        # The selects pick the divisions' operands, not their results: LLVM turns a
        # select of a division's result back into a branch around the division. Not
        # taken, a candidate is inf / 1 (and -inf / 1 for the cut-in's term, which the
        # max then ignores), which leaves the min as it is
        gap = max(dx - 0.5 * (vw[j, LEN] + vw[0, LEN]), 0.0)
        side = abs(dy) - 0.5 * (vw[j, WID] + vw[0, WID]) - 0.3  # lateral clearance
        closing = vxe - vw[j, V] * cj
        closing_y = (vye - vw[j, VY]) if dy > 0.0 else (vw[j, VY] - vye)
        corridor = side <= 0.0
        use = (dx > 0.0) & (closing > 1e-6) & (corridor | (closing_y > 1e-6))
        cut = use & (not corridor)
        t_gap = (gap if use else math.inf) / (closing if use else 1.0)
        t = max(t_gap, (side if cut else -math.inf) / (closing_y if cut else 1.0))
        ttc = min(ttc, t)
        gap_ahead = min(gap_ahead, gap if (dx > 0.0) & corridor & (ve > 0.1) else math.inf)
    # one division, not one per vehicle: x / ve is monotonic in x, so the smallest gap
    # gives the smallest headway, bit for bit (no gap ahead: inf / ve = inf)
    headway = min(TTC_MAX, gap_ahead / ve)
    # the K nearest by (squared distance, slot): each vehicle's place in that order is the
    # number of vehicles before it, counted without a branch, and it lands at near[place]
    # (near[k]: not among the K). An insertion into a sorted list cost a mispredicted
    # branch per vehicle: whether a vehicle enters, and how far it moves, differs from
    # world to world. Only the vehicles within the bound are counted: with at least K of
    # them, every vehicle before one of them is one of them (its distance is no larger),
    # so their places are their places among all, and the others' are K or more
    cnt = min(c_all, k)
    if c < cnt:  # the bound held fewer than K: all of them
        c = _gather_all(vw, xe, ye, cs, near_d)
    for a in range(c):
        da = near_d[a]
        place = 0
        for b in range(c):
            db = near_d[b]
            place += (db < da) | ((db == da) & (b < a))
        near[min(place, k)] = cs[a]
    for r in range(1, cnt + 1):
        best = near[r - 1]
        vj, pj = vw[best, V], vw[best, PSI]
        cj, sj = _cos_sin(pj)
        ob[r, 0] = 1.0
        ob[r, 1] = min(max((vw[best, X] - xe) / p[X_SCALE], -1.0), 1.0)
        ob[r, 2] = min(max((vw[best, Y] - ye) / road, -1.0), 1.0)
        ob[r, 3] = min(max((vj * cj - vxe) / p[V_SCALE], -1.0), 1.0)
        ob[r, 4] = min(max((vj * sj - vye) / p[V_SCALE], -1.0), 1.0)
        ob[r, 5] = cj
        ob[r, 6] = sj
    if p[L.LANE_OBS] > 0.5:
        lane_rows(vw, p, ob, k + 1)
    jerk = ww[JERK]
    inf[I_TIME] = ww[TIME]
    inf[I_X] = xe
    inf[I_Y] = ye
    inf[I_HEADING] = pe
    inf[I_SPEED] = ve
    inf[I_LANE] = _ego_lane(vw, p)
    inf[I_ACCEL] = ww[EGO_ACC]
    inf[I_STEER] = ww[STEER]
    inf[I_JERK] = jerk
    inf[I_TTC] = ttc
    inf[I_HEADWAY] = headway
    inf[I_MIN_DIST] = min_dist
    inf[I_HZ_ACTIVE] = 1.0 if ww[HZ_STATE] == ACTIVE else 0.0
    inf[I_HZ_ONSET] = ww[HZ_T_ACTIVE]
    inf[I_HZ_SEV] = ww[HZ_SEV]
    inf[I_COLLISION] = ww[CRASHED]
    inf[I_OFFROAD] = ww[OFFROAD]
    inf[I_HZ_FIRED] = 1.0 if (ww[HZ_KIND] != 0.0 and ww[HZ_STATE] != PENDING) else 0.0
    inf[I_PROGRESS] = min(xe, p[ROUTE_LEN])
    inf[I_ROUTE_LEN] = p[ROUTE_LEN]
    inf[I_MRM] = ww[MRM]
    # the per-step shaping (speed, tailgating, jerk); the step adds progress and outcomes
    speed_r = min(max((ve - p[V_LO]) / (p[V_HI] - p[V_LO]), 0.0), 1.0)
    hw_pen = min(max(1.0 - headway, 0.0), 1.0)
    jerk_pen = min(max((abs(jerk) - p[JERK_THR]) / p[JERK_THR], 0.0), 1.0)
    return p[R_SPEED] * speed_r - p[R_HEADWAY] * hw_pen - p[R_JERK] * jerk_pen


@njit(cache=True, error_model="numpy", inline="always")
def _status(vw, ww, p, order, rank):
    """The episode's outcome after this step (``layout.STATUS_OUTCOMES``; 0 = running),
    updating the standstill clock."""
    if ww[CRASHED] > 0.0:
        return S_COLLISION
    if ww[OFFROAD] > 0.0:
        return S_OFF_ROAD
    if vw[0, X] >= p[ROUTE_LEN]:
        return S_ARRIVED
    if ww[MRM] > 0.5:
        ww[STILL] = 0.0
        ww[MRM_T] += p[DT]
        if vw[0, V] <= 0.0:
            return S_PULLED_OVER if _on_shoulder(vw, p) else S_STOPPED_IN_LANE
        return RUNNING
    if vw[0, V] < p[STOP_SPEED] and not _on_shoulder(vw, p):
        lane = math.floor(vw[0, Y] / p[LANE_W] + 0.5)
        if _gap_to(vw, _leader(vw, order, rank, 0, lane, p[LANE_W])) > p[STOP_CLEAR]:
            ww[STILL] += p[DT]
            return S_STOPPED if ww[STILL] >= p[STOP_GRACE] - 1e-9 else RUNNING
    ww[STILL] = 0.0
    return RUNNING


@njit(cache=True, error_model="numpy")
def _end_step(vw, ww, p):
    """Per-control-step bookkeeping: step count, jerk (the lane-change cooldowns run down
    in ``_mobil``'s first pass over the drivers, which comes next)."""
    ww[STEP] += 1.0
    ww[JERK] = (ww[EGO_ACC] - ww[PREV_ACC]) / p[DT]
    ww[PREV_ACC] = ww[EGO_ACC]


@njit(cache=True, error_model="numpy", inline="always")
def _reward(vw, ww, p, order, rank, r, x0):
    """The step's reward (``r`` = the shaping from ``_observe``, ``x0`` = the ego's x before
    the step) and status."""
    route = p[ROUTE_LEN]
    r += p[R_PROGRESS] * (min(vw[0, X], route) - min(x0, route)) / route
    if ww[MRM] < 0.5 and _on_shoulder(vw, p):
        r -= p[R_SHOULDER]
    status = _status(vw, ww, p, order, rank)
    if status == S_COLLISION:
        r += p[R_COLLISION]
    elif status == S_OFF_ROAD:
        r += p[R_OFFROAD]
    elif status == S_ARRIVED:
        r += p[R_ARRIVAL]
    elif status == S_STOPPED:
        r += p[R_STOPPED]
    return r, status


@njit(cache=True, error_model="numpy")
def _step_world(vw, ww, a_in, p, ob, inf, order, rank, near, near_d, lead):
    """One world, one control step; returns (reward, status).

    The phases (timed one by one by ``takeover.envs.profile``): meta-action and neighbour
    order, then per sub-step hazards, traffic IDM, ego controls + bicycle, traffic motion,
    contact; then bookkeeping, MOBIL, recycling, observation, reward and status."""
    nsub = int(p[NSUB])
    dt = p[DT] / nsub
    x0 = vw[0, X]
    if p[DISCRETE] > 0.5 and ww[MRM] < 0.5:
        _apply_meta_action(vw, ww, a_in[0], p)
    _sort_by_x(vw, order, rank)
    for _ in range(nsub):
        _substep(vw, ww, a_in, p, dt, order, rank, lead)
        if ww[CRASHED] > 0.0 or ww[OFFROAD] > 0.0:
            break
    _end_step(vw, ww, p)
    _mobil(vw, ww, p, order, rank)
    _recycle(vw, p, near_d)  # (scratch: _observe fills near_d afresh)
    r = _observe_within(vw, ww, p, ob, inf, near, near_d,
                        _near_bound(vw, order, rank, int(p[K_OBS])))
    return _reward(vw, ww, p, order, rank, r, x0)


@njit(cache=True, error_model="numpy")
def _scratch_size(p, m):
    """``(int64s, float64s)`` of the per-call scratch for worlds of ``m`` slots (one for
    a whole batch, not one per world): ``_observe``'s nearest others' slots (``K_OBS``,
    one spare, then every other vehicle's slot) and their squared distances, and
    ``_lane_leaders``' ``lead`` (``m`` slots, then lanes -2 .. N_LANES + 2)."""
    return int(p[K_OBS]) + 1 + m + m + int(p[N_LANES]) + 5, m


@njit(cache=True, error_model="numpy")
def _scratch_views(p, m, ints, floats):
    """``(near, near_d, lead)``: the scratch (``_scratch_size``) in ``ints`` / ``floats``."""
    k = int(p[K_OBS])
    ni, nf = _scratch_size(p, m)
    return ints[:k + 1 + m], floats[:nf], ints[k + 1 + m:ni]


@njit(cache=True, error_model="numpy")
def _scratch(p, m):
    """``_scratch_views`` of a new allocation (the ``Batch`` kernels use the room their
    buffers keep for it, ``_batch_scratch``)."""
    ni, nf = _scratch_size(p, m)
    return _scratch_views(p, m, np.empty(ni, dtype=np.int64), np.empty(nf))


@njit(cache=True, error_model="numpy")
def step_worlds(veh, wld, actions, p, obs, info, reward, status, order, rank, near, near_d,
                lead):
    """Advance every world one control step in place.

    ``actions`` is ``(N, 2)`` ([steer, accel] in [-1, 1]) or, for the discrete variant,
    ``(N, 1)`` meta-action indices; a world whose ``MRM`` flag is set ignores its action.
    ``status`` receives 0 (running) or the index of the outcome in
    ``layout.STATUS_OUTCOMES`` (collision, off_road, stopped, arrived, pulled_over,
    stopped_in_lane). Worlds already ended are still stepped; the caller resets them.
    ``order`` / ``rank`` ``(N, M)`` int64 hold each world's slots sorted by x (and each
    slot's place in that order) from its previous step: any permutation is valid (the
    kernel re-sorts it), a near-sorted one is fastest. ``near``, ``near_d``, ``lead`` are
    scratch (``_scratch``).
    """
    for n in range(veh.shape[0]):
        reward[n], status[n] = _step_world(veh[n], wld[n], actions[n], p, obs[n], info[n],
                                           order[n], rank[n], near, near_d, lead)


@njit(cache=True, error_model="numpy")
def observe_worlds(veh, wld, p, obs, info):
    """Observations and ground truth without stepping (used after reset)."""
    near, near_d, _ = _scratch(p, veh.shape[1])
    for n in range(veh.shape[0]):
        _observe(veh[n], wld[n], p, obs[n], info[n], near, near_d)


@njit(cache=True, error_model="numpy")
def observe_worlds_at(veh, wld, p, obs, info, idx):
    """``observe_worlds`` for the worlds listed in ``idx`` only (after autoreset)."""
    near, near_d, _ = _scratch(p, veh.shape[1])
    for n in idx:
        _observe(veh[n], wld[n], p, obs[n], info[n], near, near_d)


@njit(cache=True, error_model="numpy")
def _ends(ww, status, rp):
    """0 if the world's episode runs on after this step; else 1 (terminated: ``status``
    != 0) or 2 (truncated: the time limit)."""
    if status != RUNNING:
        return 1
    return 2 if ww[STEP] >= rp[R_MAX_STEPS] else 0


@njit(cache=True, error_model="numpy")
def _end_or_reset(vw, ww, p, ob, inf, status, rng, rp, fob, finf, near, near_d):
    """``_ends``; for an ended world, after copying its last observation and ground truth
    to ``fob`` / ``finf``, start (and observe) its next episode."""
    ended = _ends(ww, status, rp)
    if ended == 0:
        return 0
    fob[:] = ob
    finf[:] = inf
    st, keep = reset_scratch()  # allocated per new episode: few steps start one
    reset_world(vw, ww, rng, rp, st, keep)
    _observe(vw, ww, p, ob, inf, near, near_d)
    return ended


@njit(cache=True, error_model="numpy")
def step_worlds_autoreset(veh, wld, actions, p, obs, info, reward, status, order, rank, rng,
                          rp, ended, final_obs, final_info, queue, queued, took, near, near_d,
                          lead):
    """``step_worlds``, then Gymnasium's same-step autoreset inside the kernel: ``ended[n]``
    gets ``_ends``'s code, and an ended world's last observation and ground truth go to
    ``final_obs[n]`` / ``final_info[n]`` while ``obs[n]`` / ``info[n]`` become its next
    episode's first (drawn from its RNG row ``rng[n]``, reset parameters ``rp``).

    The first ``queued[0]`` rows of ``queue`` ``(N, 2)`` uint64 are the next episodes to
    start (``set_next_seeds``): the worlds that end, in world order, take one each, and a
    row ``(1, key)`` restarts the world's RNG row at ``(key, 0)`` first, as
    ``reset(seed=...)`` does (``(0, 0)``: its own next episode). ``took[n]`` gets the row
    world ``n`` took (-1: none); the rows taken leave the queue. ``near``, ``near_d``,
    ``lead``: scratch, as for ``step_worlds``."""
    q, nq = 0, queued[0]
    for n in range(veh.shape[0]):
        if n + 1 < veh.shape[0]:  # the next world's arrays, while this one is stepped
            _prefetch_all(veh[n + 1])
            _prefetch_all(wld[n + 1])
            _prefetch_all(obs[n + 1])
            _prefetch_all(info[n + 1])
            _prefetch_all(order[n + 1])
            _prefetch_all(rank[n + 1])
        reward[n], status[n] = _step_world(veh[n], wld[n], actions[n], p, obs[n], info[n],
                                           order[n], rank[n], near, near_d, lead)
        e = _ends(wld[n], status[n], rp)
        took[n] = -1
        if q < nq and e:
            if queue[q, 0]:
                rng[n, 0] = queue[q, 1]  # streams.KEY, EPISODE
                rng[n, 1] = 0
            took[n] = q
            q += 1
        ended[n] = e
        if e:  # (not a call of 12 arrays per world-step that does nothing)
            _end_or_reset(veh[n], wld[n], p, obs[n], info[n], status[n], rng[n], rp,
                          final_obs[n], final_info[n], near, near_d)
    if q:
        queue[: nq - q] = queue[q:nq].copy()
        queued[0] = nq - q


@njit(cache=True, error_model="numpy")
def reset_worlds(veh, wld, rng, rp, p, obs, info, hazard, idx):
    """Start the next episode of each world in ``idx`` (from its RNG row) and observe it;
    ``hazard[n]`` gets its hazard code."""
    near, near_d, _ = _scratch(p, veh.shape[1])
    st, keep = reset_scratch()
    for n in idx:
        hazard[n] = reset_world(veh[n], wld[n], rng[n], rp, st, keep)
        _observe(veh[n], wld[n], p, obs[n], info[n], near, near_d)


# --- a batch in three flat buffers: one kernel call takes 3 arrays, not 15 -----------------
# (numba unboxes each array argument separately, ~0.5 us apiece on the loaded 2-core
# machine: 15 arguments cost about as much as stepping 16 worlds)
HEADER = 8  # int64 slots before the int64 arrays: n, slots, obs rows, action cols, len(rp),
QUEUED = 5  # ... the number of queued next episodes (``step_worlds_autoreset``) ...
THREADS = 6  # ... and the number of scratches the buffers end in (``step_batch_threads``)
OBS_COLS = len(L.OBS_FEATURES)


@njit(cache=True)
def _offsets(n, m, r, a, nrp):
    """Where each array starts (and the three buffers end): float64 ``veh, wld, info,
    final_info, act, rew, p, rp | end``, float32 ``obs, final_obs | end``, int64 ``status,
    order, rank, ended, codes, rng, queue, took | end`` (after the header)."""
    o_wld = n * m * L.VEH_COLS
    o_info = o_wld + n * L.WLD_COLS
    o_finfo = o_info + n * L.INFO_COLS
    o_act = o_finfo + n * L.INFO_COLS
    o_rew = o_act + n * a
    o_p = o_rew + n
    o_rp = o_p + L.PARAM_COLS
    f_end = o_rp + nrp
    o_fobs = n * r * OBS_COLS
    g_end = 2 * o_fobs
    o_order = HEADER + n
    o_rank = o_order + n * m
    o_ended = o_rank + n * m
    o_codes = o_ended + n
    o_rng = o_codes + n
    o_queue = o_rng + 2 * n
    o_took = o_queue + 2 * n
    i_end = o_took + n
    return (0, o_wld, o_info, o_finfo, o_act, o_rew, o_p, o_rp, f_end, 0, o_fobs, g_end,
            HEADER, o_order, o_rank, o_ended, o_codes, o_rng, o_queue, o_took, i_end)


def _borrowed(typingctx, arr):
    """``_borrow(arr)``: ``arr`` without its owner: the same array (type, data, shape, strides) with no
    reference-counted meminfo (nor Python parent), for views that live only within one
    kernel call whose caller holds the buffers.

    numba counts references to an array every time it is passed to a compiled function
    that is not inlined, by atomic operations that order memory (two per array per call,
    a few hundred per world-step: 43% of the step kernel's time in a ``perf`` profile);
    on a meminfo of NULL they are a test and a return. Only for the three buffers of a
    ``Batch``, which the Python caller keeps alive for the whole call: a borrowed view of
    an array allocated inside the kernel would outlive the array (numba frees it after
    its last use by name), nor for what is returned to Python (``Batch`` keeps the views
    ``_unpack`` gives, which own their buffer)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, value=args[0])
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        ary.parent = cgutils.get_null_value(ary.parent.type)
        return ary._getvalue()
    return arr(arr), codegen


_borrow = cast("Callable[[np.ndarray], np.ndarray]", intrinsic(_borrowed))


def _prefetching(typingctx, arr, offset):
    """``_prefetch(arr, offset)``: ask the CPU to bring the cache line ``offset`` bytes
    into ``arr``'s data into its caches (``llvm.prefetch``; a hint, it changes no value)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, value=args[0])
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.gep(builder.bitcast(ary.data, i8p), [args[1]])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep, data
        return context.get_dummy_value()
    return types.none(arr, types.intp), codegen


_prefetch = cast("Callable[[np.ndarray, int], None]", intrinsic(_prefetching))


@njit(cache=True)
def _prefetch_all(a):
    """``_prefetch`` every cache line of the contiguous array ``a``."""
    for off in range(0, a.size * a.itemsize, 64):
        _prefetch(a, off)


@njit(cache=True)
def _unpack(f64, f32, i64):
    n, m, r, a = i64[0], i64[1], i64[2], i64[3]
    (o_veh, o_wld, o_info, o_finfo, o_act, o_rew, o_p, o_rp, f_end, o_obs, o_fobs, g_end,
     o_status, o_order, o_rank, o_ended, o_codes, o_rng, o_queue, o_took, i_end) = _offsets(
        n, m, r, a, i64[4])
    return (f64[o_veh:o_wld].reshape((n, m, L.VEH_COLS)),
            f64[o_wld:o_info].reshape((n, L.WLD_COLS)),
            f64[o_info:o_finfo].reshape((n, L.INFO_COLS)),
            f64[o_finfo:o_act].reshape((n, L.INFO_COLS)),
            f64[o_act:o_rew].reshape((n, a)),
            f64[o_rew:o_p], f64[o_p:o_rp], f64[o_rp:f_end],
            f32[o_obs:o_fobs].reshape((n, r, OBS_COLS)),
            f32[o_fobs:g_end].reshape((n, r, OBS_COLS)),
            i64[o_status:o_order], i64[o_order:o_rank].reshape((n, m)),
            i64[o_rank:o_ended].reshape((n, m)), i64[o_ended:o_codes], i64[o_codes:o_rng],
            i64[o_rng:o_queue].view(np.uint64).reshape((n, 2)),
            i64[o_queue:o_took].view(np.uint64).reshape((n, 2)), i64[o_took:i_end],
            i64[QUEUED:QUEUED + 1])


@njit(cache=True)
def _views(f64, f32, i64):
    """``_unpack``'s views, borrowed (``_borrow``): for the kernels of a ``Batch``."""
    return _unpack(_borrow(f64), _borrow(f32), _borrow(i64))


@njit(cache=True, error_model="numpy")
def _check_room(f64, i64, p, threads):
    """Refuse buffers that end without room for ``threads`` scratches (the kernels run
    without bounds checks)."""
    off = _offsets(i64[0], i64[1], i64[2], i64[3], i64[4])
    ni, nf = _scratch_size(p, i64[1])
    if threads < 1 or i64.size < off[-1] + threads * ni or f64.size < off[8] + threads * nf:
        raise ValueError("the buffers end without room for the kernels' scratch: make them "
                         "with dynamics.Batch")


@njit(cache=True, error_model="numpy")
def _scratch_at(f64, i64, p, t):
    """Scratch ``t`` (``_scratch_views``; one per thread) in the room a ``Batch`` keeps
    after the ends of its float64 and int64 buffers, borrowed: no allocation per call.
    Unchecked: the caller checks the room first (``_check_room``)."""
    off = _offsets(i64[0], i64[1], i64[2], i64[3], i64[4])
    ni, nf = _scratch_size(p, i64[1])
    return _scratch_views(p, i64[1], _borrow(i64[off[-1] + t * ni:]),
                          _borrow(f64[off[8] + t * nf:]))


@njit(cache=True, error_model="numpy")
def _batch_scratch(f64, i64, p):
    """The kernels' first scratch (``_scratch_at``), after checking the room for it."""
    _check_room(f64, i64, p, 1)
    return _scratch_at(f64, i64, p, 0)


class Batch:
    """The arrays of ``n`` worlds (``layout``) as numpy views into three flat buffers, so
    that stepping, resetting and observing them is one compiled call of 3-4 arguments
    (``step_batch``, ``reset_batch``, ``observe_batch``).

    Attributes (views): ``veh`` ``(n, slots, VEH_COLS)``, ``wld`` ``(n, WLD_COLS)``,
    ``info`` / ``final_info`` ``(n, INFO_COLS)``, ``act`` ``(n, act_cols)``, ``rew`` ``(n,)``,
    ``p`` the config's ``params()``, ``rp`` the reset parameters
    (``scenarios.reset_params``), ``obs`` / ``final_obs`` ``(n, obs_rows, 7)`` float32,
    ``status``, ``ended``, ``codes`` (hazard code) ``(n,)`` int64, ``order`` / ``rank``
    ``(n, slots)`` int64 (each world's slots sorted by x), ``rng`` ``(n, 2)`` uint64
    (``streams``: key, episode); ``queue`` ``(n, 2)`` uint64, ``queued`` ``(1,)`` and
    ``took`` ``(n,)`` int64: the next episodes the autoreset starts
    (``step_worlds_autoreset``). The buffers end in the kernels' scratch
    (``_batch_scratch``), which is not state.
    """

    NAMES = ("veh", "wld", "info", "final_info", "act", "rew", "p", "rp", "obs", "final_obs",
             "status", "order", "rank", "ended", "codes", "rng", "queue", "took", "queued")
    veh: np.ndarray
    wld: np.ndarray
    info: np.ndarray
    final_info: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    p: np.ndarray
    rp: np.ndarray
    obs: np.ndarray
    final_obs: np.ndarray
    status: np.ndarray
    order: np.ndarray
    rank: np.ndarray
    ended: np.ndarray
    codes: np.ndarray
    rng: np.ndarray
    queue: np.ndarray
    took: np.ndarray
    queued: np.ndarray

    def __init__(self, n: int, slots: int, obs_rows: int, act_cols: int, p: np.ndarray,
                 rp: np.ndarray, threads: int = 1) -> None:
        if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or not (
                1 <= threads <= n):
            raise ValueError(f"threads must be an integer in 1..{n} (at most one per world), "
                             f"got {threads!r}")
        off = _offsets(n, slots, obs_rows, act_cols, rp.size)
        ints, floats = _scratch_size(p, slots)  # the kernels' scratches, after the arrays
        self.f64 = np.zeros(off[8] + threads * floats)
        self.f32 = np.zeros(off[11], dtype=np.float32)
        self.i64 = np.zeros(off[-1] + threads * ints, dtype=np.int64)
        self.i64[:5] = n, slots, obs_rows, act_cols, rp.size
        self.i64[THREADS] = self.threads = int(threads)
        for name, view in zip(self.NAMES, _unpack(self.f64, self.f32, self.i64)):
            setattr(self, name, view)
        self.p[:] = p
        self.rp[:] = rp
        self.order[:] = np.arange(slots)  # any permutation is valid: the kernel re-sorts
        self.rank[:] = self.order


@njit(cache=True)
def in_unit_box(a):
    """Whether every entry of ``a`` is in [-1, 1] (NaN is not): the continuous actions'
    check, one compiled call instead of four numpy ones (2 us for one world)."""
    for x in a.ravel():
        if not -1.0 <= x <= 1.0:
            return False
    return True


@njit(cache=True, error_model="numpy")
def step_batch(f64, f32, i64, autoreset):
    """``step_worlds`` (``autoreset``: ``step_worlds_autoreset``) of a ``Batch``."""
    (veh, wld, info, finfo, act, rew, p, rp, obs, fobs, status, order, rank, ended, codes,
     rng, queue, took, queued) = _views(f64, f32, i64)
    near, near_d, lead = _batch_scratch(f64, i64, p)
    if autoreset:
        step_worlds_autoreset(veh, wld, act, p, obs, info, rew, status, order, rank, rng, rp,
                              ended, fobs, finfo, queue, queued, took, near, near_d, lead)
    else:
        step_worlds(veh, wld, act, p, obs, info, rew, status, order, rank, near, near_d, lead)


@njit(cache=True, error_model="numpy", parallel=True)
def step_batch_threads(f64, f32, i64, autoreset):
    """``step_batch`` on ``Batch(..., threads=T)``'s buffers: the worlds in ``T`` contiguous
    blocks stepped in parallel (numba ``prange``), each block with its own scratch.

    Worlds share nothing but the scratch, so every bit equals ``step_batch``'s. With
    episodes queued (``set_next_seeds``) the autoreset hands them out in world order
    between two parallel passes (step, then reset the worlds that ended), as
    ``step_worlds_autoreset`` does; without (the common case) each block resets its own
    ended worlds as it goes, in one pass: the second pass's fork and join, and the wait
    for the block with the most resets, cost more than the step of 16 worlds gains.
    Numba's threads must not run before a ``fork`` (GNU OpenMP's are not fork-safe): the
    experiments' worker processes use ``step_batch``."""
    (veh, wld, info, finfo, act, rew, p, rp, obs, fobs, status, order, rank, ended, codes,
     rng, queue, took, queued) = _views(f64, f32, i64)
    nt, n = i64[THREADS], veh.shape[0]
    _check_room(f64, i64, p, nt)
    inline = autoreset and queued[0] == 0  # reset within the step pass: no queue to hand out
    for t in prange(nt):
        near, near_d, lead = _scratch_at(f64, i64, p, t)
        for w in range(n * t // nt, n * (t + 1) // nt):
            reward_w, status[w] = _step_world(veh[w], wld[w], act[w], p, obs[w], info[w],
                                              order[w], rank[w], near, near_d, lead)
            rew[w] = reward_w
            if autoreset:
                e = _ends(wld[w], status[w], rp)
                ended[w] = e
                if inline:
                    took[w] = -1
                    if e:
                        _end_or_reset(veh[w], wld[w], p, obs[w], info[w], status[w], rng[w],
                                      rp, fobs[w], finfo[w], near, near_d)
    if not autoreset or inline:
        return
    q, nq = 0, queued[0]
    for w in range(n):
        took[w] = -1
        if q < nq and ended[w]:
            if queue[q, 0]:
                rng[w, 0] = queue[q, 1]  # streams.KEY, EPISODE
                rng[w, 1] = 0
            took[w] = q
            q += 1
    for t in prange(nt):
        near, near_d, _ = _scratch_at(f64, i64, p, t)
        for w in range(n * t // nt, n * (t + 1) // nt):
            if ended[w]:
                _end_or_reset(veh[w], wld[w], p, obs[w], info[w], status[w], rng[w], rp,
                              fobs[w], finfo[w], near, near_d)
    if q:
        queue[: nq - q] = queue[q:nq].copy()
        queued[0] = nq - q


@njit(cache=True, error_model="numpy")
def reset_batch(f64, f32, i64, idx):
    """``reset_worlds`` of the worlds ``idx`` of a ``Batch``."""
    (veh, wld, info, finfo, act, rew, p, rp, obs, fobs, status, order, rank, ended, codes,
     rng, queue, took, queued) = _views(f64, f32, i64)
    reset_worlds(veh, wld, rng, rp, p, obs, info, codes, idx)


@njit(cache=True, error_model="numpy")
def observe_batch(f64, f32, i64, idx):
    """``observe_worlds_at`` the worlds ``idx`` of a ``Batch``."""
    (veh, wld, info, finfo, act, rew, p, rp, obs, fobs, status, order, rank, ended, codes,
     rng, queue, took, queued) = _views(f64, f32, i64)
    observe_worlds_at(veh, wld, p, obs, info, idx)
