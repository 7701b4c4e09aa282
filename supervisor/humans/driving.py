"""How a scripted human drives: one world's controls from the true world arrays, in numba.

The driver is the careful ``takeover.envs.drivers.IDMDriver`` (IDM car following in its
corridor, a lane change around a slow or stopped obstacle when the target lane has room,
heading-based lane keeping) with the human's own style: headway, braking, the gap it accepts
for a lane change, how early it sees a car drifting into its lane.

This is the only module of the humans that calls the world's kernels (``_idm``, the layout
columns). The world branch moves the IDM and the lane keeper into ``envs/`` as batched numba
functions: re-point the imports here and delete the local helpers marked "until then".
Numba's on-disk cache of ``batched._act`` (which compiles these functions in) only watches
``batched.py``: after editing this file, delete ``supervisor/humans/__pycache__/*.nb?``.
"""

from __future__ import annotations

import math

from numba import njit

from takeover.envs import layout as L
from takeover.envs.controllers import idm_accel  # the world's IDM (one IDM in the code base)

from .params import FIELDS

# indices into the human parameter vector (numba reads module ints as constants)
H_V0 = FIELDS.index("desired_speed")
H_THW = FIELDS.index("headway")
H_AMAX = FIELDS.index("a_max")
H_BCOMF = FIELDS.index("b_comf")
H_S0 = FIELDS.index("s0")
H_BRAKE_USE = FIELDS.index("brake_use")
H_ANTICIPATION = FIELDS.index("anticipation")
H_GAP_AHEAD = FIELDS.index("gap_ahead")
H_GAP_BEHIND = FIELDS.index("gap_behind")
H_FOLLOWER_BRAKE = FIELDS.index("follower_brake")
H_LOOKAHEAD = FIELDS.index("lookahead")

X, Y, V, PSI, VY, LEN, WID, KIND = L.X, L.Y, L.V, L.PSI, L.VY, L.LEN, L.WID, L.KIND
EMPTY = L.EMPTY
FREE = -1.0  # "no leader" gap of ``_idm`` below


@njit(cache=True, error_model="numpy", inline="always")
def _idm(v, v0, thw, amax, b, s0, gap, v_lead):
    """The world's IDM (``takeover.envs.controllers.idm_accel``) with a negative ``gap``
    meaning a free road, as this module's callers pass it."""
    return idm_accel(v, v0, gap if gap >= 0.0 else math.inf, v_lead, thw, amax, b, s0)


@njit(cache=True, error_model="numpy")
def corridor_leader(vw, y, margin):
    """(bumper gap m, speed m/s) of the nearest object ahead overlapping the corridor at
    lateral position ``y``; gap ``FREE`` when none (until then: ``drivers.corridor_leader``)."""
    best_dx = 1e18
    gap = FREE
    vl = 0.0
    for j in range(1, vw.shape[0]):
        if vw[j, KIND] == EMPTY:
            continue
        dx = vw[j, X] - vw[0, X]
        if dx <= 0.0 or dx >= best_dx:
            continue
        if abs(vw[j, Y] - y) < 0.5 * (vw[j, WID] + vw[0, WID]) + margin:
            best_dx = dx
            gap = max(dx - 0.5 * (vw[j, LEN] + vw[0, LEN]), 0.01)
            vl = vw[j, V] * math.cos(vw[j, PSI])
    return gap, vl


@njit(cache=True, error_model="numpy")
def corridor_follower(vw, y):
    """(bumper gap m, slot) of the nearest vehicle behind the ego in the corridor at ``y``;
    gap ``FREE`` and slot -1 when none (until then: ``drivers.corridor_follower_gap``)."""
    best_dx = 1e18
    gap = FREE
    jj = -1
    for j in range(1, vw.shape[0]):
        if vw[j, KIND] == EMPTY:
            continue
        dx = vw[0, X] - vw[j, X]
        if dx < 0.0 or dx >= best_dx:
            continue
        if abs(vw[j, Y] - y) < 0.5 * (vw[j, WID] + vw[0, WID]) + 0.5:
            best_dx = dx
            gap = max(dx - 0.5 * (vw[j, LEN] + vw[0, LEN]), 0.0)
            jj = j
    return gap, jj


@njit(cache=True, error_model="numpy")
def follower_decel(vw, j, gap):
    """Braking (m/s^2, >= 0) the follower in slot ``j`` needs behind the ego at bumper gap
    ``gap``, by its own IDM (MOBIL's safety criterion, Kesting, Treiber & Helbing 2007)."""
    if j < 0 or vw[j, L.AMAX] <= 0.0:
        return 0.0
    a = _idm(vw[j, V], vw[j, L.V0], vw[j, L.THW], vw[j, L.AMAX], vw[j, L.BCOMF], vw[j, L.S0],
             max(gap, 0.01), vw[0, V])
    return max(-a, 0.0)


@njit(cache=True, error_model="numpy")
def slowest_ahead(vw, y, lookahead):
    """Lowest speed (m/s) of the objects ahead within ``lookahead`` m in the corridor at
    ``y``; ``inf`` when none."""
    vmin = math.inf
    for j in range(1, vw.shape[0]):
        if vw[j, KIND] == EMPTY:
            continue
        dx = vw[j, X] - vw[0, X]
        if 0.0 < dx < lookahead and abs(vw[j, Y] - y) < 0.5 * (vw[j, WID] + vw[0, WID]) + 0.5:
            vmin = min(vmin, vw[j, V] * math.cos(vw[j, PSI]))
    return vmin


@njit(cache=True, error_model="numpy")
def lane_keeping_steer(vw, y_target, wheelbase):
    """Steering angle (rad) that turns the heading toward ``y_target`` (the world's lane
    keeper of the discrete action type; until then a copy of ``_ego_controls``' law)."""
    vv = max(vw[0, V], 5.0)
    psi_ref = math.asin(min(max(-0.6 * (vw[0, Y] - y_target) / vv, -0.25), 0.25))
    return math.atan(3.0 * (psi_ref - vw[0, PSI]) * wheelbase / vv)


@njit(cache=True, error_model="numpy")
def _idm_h(v, hp, s0, gap, vl):
    return _idm(v, hp[H_V0], hp[H_THW], hp[H_AMAX], hp[H_BCOMF], s0, gap, vl)


@njit(cache=True, error_model="numpy")
def controls(vw, p, hp, target_lane):
    """One world's desired (steer rad, acceleration m/s^2, target lane) for a human with
    parameters ``hp``; ``target_lane`` is the lane it is heading for (NaN: none yet)."""
    w = p[L.LANE_W]
    n_lanes = p[L.N_LANES]
    ego_y = vw[0, Y]
    lane_now = min(max(math.floor(ego_y / w + 0.5), 0.0), n_lanes - 1.0)
    if math.isnan(target_lane):
        target_lane = lane_now
    v = vw[0, V]
    gap, vl = corridor_leader(vw, ego_y, 0.5)
    if target_lane == lane_now:
        # stop well back from a standing obstacle: steering around it needs room
        s0 = hp[H_S0] + (7.0 if gap >= 0.0 and vl < 2.0 else 0.0)
        acc = _idm_h(v, hp, s0, gap, vl)
    else:  # mid-change: creep into that room (only what still overlaps the body counts,
        # with 1 m to spare), and respect the target lane's leader too
        g1, v1 = corridor_leader(vw, ego_y, 0.0)
        acc = _idm_h(v, hp, 1.0, g1, v1)
        g2, v2 = corridor_leader(vw, target_lane * w, 0.5)
        acc = min(acc, _idm_h(v, hp, hp[H_S0], g2, v2))
    # anticipation: a car ahead whose predicted lateral position enters the corridor
    h = hp[H_ANTICIPATION]
    if h > 0.0:
        for j in range(1, vw.shape[0]):
            if vw[j, KIND] == EMPTY:
                continue
            dx = vw[j, X] - vw[0, X]
            half = 0.5 * (vw[j, WID] + vw[0, WID]) + 0.3
            if dx <= 0.0 or abs(vw[j, Y] - ego_y) < half:
                continue
            if abs(vw[j, Y] + vw[j, VY] * h - ego_y) < half:
                g = max(dx - 0.5 * (vw[j, LEN] + vw[0, LEN]), 0.01)
                acc = min(acc, _idm_h(v, hp, hp[H_S0], g, vw[j, V] * math.cos(vw[j, PSI])))
    # a lane change around slow traffic seen within the lookahead (the human scans past
    # its leader), into a lane that moves faster there and a gap this human accepts
    look = hp[H_LOOKAHEAD]
    slow_now = slowest_ahead(vw, ego_y, look)
    if target_lane == lane_now and slow_now < 0.8 * hp[H_V0]:
        best = slow_now + 3.0
        for d in (-1.0, 1.0):
            lane = lane_now + d
            if lane < 0.0 or lane > n_lanes - 1.0:
                continue
            g_ahead, v_ahead = corridor_leader(vw, lane * w, 0.5)
            g_back, jb = corridor_follower(vw, lane * w)
            if jb >= 0 and (g_back < hp[H_GAP_BEHIND]
                            or follower_decel(vw, jb, g_back) > hp[H_FOLLOWER_BRAKE]):
                continue
            if g_ahead >= 0.0 and (g_ahead < hp[H_GAP_AHEAD] + max(0.0, v - v_ahead)
                                   or _idm_h(v, hp, hp[H_S0], g_ahead, v_ahead) < -hp[H_BCOMF]):
                continue
            v_lane = slowest_ahead(vw, lane * w, look)
            if v_lane > best:
                best = v_lane
                target_lane = lane
    elif target_lane != lane_now:  # not yet half-way over: abort if the gap has closed
        g_back, jb = corridor_follower(vw, target_lane * w)
        g_ahead, _ = corridor_leader(vw, target_lane * w, 0.0)
        if ((jb >= 0 and (g_back < 1.0
                          or follower_decel(vw, jb, g_back) > hp[H_FOLLOWER_BRAKE] + 2.0))
                or 0.0 <= g_ahead < 1.0):
            target_lane = lane_now
    steer = lane_keeping_steer(vw, target_lane * w, p[L.WHEELBASE])
    acc = min(max(acc, -p[L.BRAKE_MAX] * hp[H_BRAKE_USE]), p[L.ACC_MAX])
    return steer, acc, target_lane


@njit(cache=True, error_model="numpy")
def meta_action(vw, ww, p, acc, target_lane):
    """The meta-action that best realises the desired lane and acceleration (the discrete
    action type; same rule as ``IDMDriver.meta_action``)."""
    lane_now = vw[0, Y] / p[L.LANE_W]
    if target_lane != ww[L.TGT_LANE]:
        return L.LANE_LEFT if target_lane < lane_now else L.LANE_RIGHT
    want = vw[0, V] + acc * 1.0  # the speed this acceleration reaches in 1 s
    if want < ww[L.TGT_SPEED] - 2.5:
        return L.SLOWER
    if want > ww[L.TGT_SPEED] + 2.5 or (acc > 0.2 and ww[L.TGT_SPEED] < 2.5 and vw[0, V] < 1.0):
        return L.FASTER  # (the second case: pull away from a standstill)
    return L.IDLE
