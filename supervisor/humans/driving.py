"""How a scripted human drives: one world's controls from the true world arrays, in numba.

The driver is the careful ``takeover.envs.drivers.IDMDriver`` (IDM car following in its
corridor, a lane change around a slow or stopped obstacle when the target lane has room,
lane keeping) with the human's own style: headway, braking, the gap it accepts for a lane
change, how far ahead it scans, how early it sees a car drifting into its lane.

The car following, the lane keeping and the corridor queries are the world's own
(``takeover.envs.controllers``: ``idm_accel``, ``lane_keep_steer``, ``corridor_leader``,
``corridor_follower``, numba functions compiled into this code), so a human and the careful
driver mean the same equations. Blocked by a standing object with no gap yet, a human
signals as the careful driver does: it leans ``SIGNAL_LEAN`` m toward the open lane, which
asks that lane's traffic to let it in (the kernel's cooperative yielding).

The road (``takeover.envs.highway``): travel lanes ``0 .. N_LANES - 1`` (lane ``k`` centred
at ``y = k * LANE_W``, 0 leftmost) and the hard shoulder at ``y = N_LANES * LANE_W`` on the
right. A human never chooses the shoulder: it changes lanes among the travel lanes only, and
if it finds itself on the shoulder (it took over from a minimal-risk manoeuvre that had
pulled over) it rejoins the rightmost travel lane as soon as the gap there is one it
accepts, following whatever is ahead on the shoulder meanwhile. (No preset pulls over on
its own: arriving is the only success, and a human who hands back during a hazard lets the
automation's minimal-risk manoeuvre do that.)

Numba's on-disk cache of ``batched._act`` (which compiles these functions in) only watches
``batched.py``: after editing this file, delete ``supervisor/humans/__pycache__/*.nb?``.
"""

from __future__ import annotations

import math

from numba import njit

from takeover.envs import layout as L
from takeover.envs.controllers import (
    SIGNAL_LEAN,
    corridor_follower,
    corridor_leader,
    idm_accel,
    lane_keep_steer,
)

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
H_EVADE = FIELDS.index("evade_brake")

X, Y, V, PSI, VY, LEN, WID, KIND = L.X, L.Y, L.V, L.PSI, L.VY, L.LEN, L.WID, L.KIND
EMPTY = L.EMPTY
STANDING_ROOM = 7.0  # m added to s0 behind a standing obstacle: room to steer around it


# --- the human's own judgements ------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def follower_decel(vw, j, gap):
    """Braking (m/s^2, >= 0) the follower in slot ``j`` needs behind the ego at bumper gap
    ``gap``, by its own IDM (MOBIL's safety criterion, Kesting, Treiber & Helbing 2007)."""
    if j < 0 or vw[j, L.AMAX] <= 0.0:
        return 0.0
    a = idm_accel(vw[j, V], vw[j, L.V0], max(gap, 0.01), vw[0, V], vw[j, L.THW],
                  vw[j, L.AMAX], vw[j, L.BCOMF], vw[j, L.S0])
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
def _idm_h(v, hp, s0, gap, vl):
    """The human's IDM (its desired speed, headway, acceleration and comfort braking)."""
    return idm_accel(v, hp[H_V0], gap, vl, hp[H_THW], hp[H_AMAX], hp[H_BCOMF], s0)


@njit(cache=True, error_model="numpy")
def gap_accepted(vw, hp, lane_y, own_brake):
    """Whether this human accepts the gap in the lane centred at ``lane_y`` for a lane
    change now: room behind (``gap_behind``, and the follower need not brake harder than
    ``follower_brake``) and ahead (``gap_ahead`` plus the closing speed x 1 s, and the
    human's own IDM need not brake harder than ``own_brake`` m/s^2 behind the new
    leader)."""
    v = vw[0, V]
    g_back, jb = corridor_follower(vw, lane_y, 0.5)
    if jb >= 0 and (g_back < hp[H_GAP_BEHIND]
                    or follower_decel(vw, jb, g_back) > hp[H_FOLLOWER_BRAKE]):
        return False
    g_ahead, v_ahead = corridor_leader(vw, lane_y, 0.5, 0.0)
    return not (math.isfinite(g_ahead)
                and (g_ahead < hp[H_GAP_AHEAD] + max(0.0, v - v_ahead)
                     or _idm_h(v, hp, hp[H_S0], g_ahead, v_ahead) < -own_brake))


@njit(cache=True, error_model="numpy")
def controls(vw, p, hp, target_lane):
    """One world's desired (steer rad, acceleration m/s^2, target lane) for a human with
    parameters ``hp``; ``target_lane`` is the lane it is heading for (NaN: none yet)."""
    w = p[L.LANE_W]
    n_lanes = p[L.N_LANES]  # travel lanes; lane index n_lanes is the hard shoulder
    ego_y = vw[0, Y]
    lane_now = min(max(math.floor(ego_y / w + 0.5), 0.0), n_lanes)
    if math.isnan(target_lane):
        target_lane = lane_now
    v = vw[0, V]
    lean = 0.0  # m toward a neighbour lane: the signal to merge (``SIGNAL_LEAN``)
    gap, vl = corridor_leader(vw, ego_y, 0.5, 0.0)
    if target_lane == lane_now:
        # stop well back from a standing obstacle: steering around it needs room
        s0 = hp[H_S0] + (STANDING_ROOM if math.isfinite(gap) and vl < 2.0 else 0.0)
        acc = _idm_h(v, hp, s0, gap, vl)
    else:  # mid-change: creep into that room (only what still overlaps the body counts,
        # with 1 m to spare), and respect the target lane's leader too
        g1, v1 = corridor_leader(vw, ego_y, 0.0, 0.0)
        acc = _idm_h(v, hp, 1.0, g1, v1)
        g2, v2 = corridor_leader(vw, target_lane * w, 0.5, 0.0)
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
    look = hp[H_LOOKAHEAD]
    if target_lane == lane_now and lane_now == n_lanes:
        # on the shoulder (after a minimal-risk manoeuvre): rejoin traffic at the first
        # gap this human accepts
        if gap_accepted(vw, hp, (n_lanes - 1.0) * w, hp[H_BCOMF]):
            target_lane = n_lanes - 1.0
    elif target_lane == lane_now:
        # a lane change around slow traffic seen within the lookahead (the human scans
        # past its leader), into a travel lane that moves faster there and a gap this
        # human accepts
        # human accepts; or, when the own lane asks for braking harder than ``evade_brake``,
        # an evasive change into the accepted lane that asks for the least braking
        slow_now = slowest_ahead(vw, ego_y, look)
        evade = hp[H_EVADE] > 0.0 and acc < -hp[H_EVADE]
        if slow_now < 0.8 * hp[H_V0] or evade:
            best = slow_now + 3.0
            best_acc = acc + 1.0
            for d in (-1.0, 1.0):
                lane = lane_now + d
                if lane < 0.0 or lane > n_lanes - 1.0:  # never onto the shoulder
                    continue
                # evading, the human takes harder braking of its own in the new lane, as
                # long as it is less than staying asks for (checked below)
                if not gap_accepted(vw, hp, lane * w, math.inf if evade else hp[H_BCOMF]):
                    continue
                if evade:
                    g_l, v_l = corridor_leader(vw, lane * w, 0.5, 0.0)
                    a_l = _idm_h(v, hp, hp[H_S0], g_l, v_l)
                    if a_l > best_acc:
                        best_acc = a_l
                        target_lane = lane
                    continue
                v_lane = slowest_ahead(vw, lane * w, look)
                if v_lane > best:
                    best = v_lane
                    target_lane = lane
        if target_lane == lane_now and slow_now < 2.0:
            # blocked by a standing object, no gap yet: signal (lean) toward the open lane
            # with the most room behind, so that its traffic can let the human in
            room = -math.inf
            for d in (-1.0, 1.0):
                lane = lane_now + d
                if (lane < 0.0 or lane > n_lanes - 1.0
                        or slowest_ahead(vw, lane * w, look) < 2.0):
                    continue
                g_b, _ = corridor_follower(vw, lane * w, 0.5)
                if g_b > room:
                    room = g_b
                    lean = SIGNAL_LEAN * d
    else:  # mid-change: abort if the gap has closed
        g_back, jb = corridor_follower(vw, target_lane * w, 0.5)
        g_ahead, _ = corridor_leader(vw, target_lane * w, 0.0, 0.0)
        if ((jb >= 0 and (g_back < 1.0
                          or follower_decel(vw, jb, g_back) > hp[H_FOLLOWER_BRAKE] + 2.0))
                or g_ahead < 1.0):
            target_lane = lane_now
    steer = lane_keep_steer(ego_y - target_lane * w - lean, vw[0, PSI], v, p[L.WHEELBASE])
    acc = min(max(acc, -p[L.BRAKE_MAX] * hp[H_BRAKE_USE]), p[L.ACC_MAX])
    return steer, acc, target_lane


@njit(cache=True, error_model="numpy")
def meta_action(vw, ww, p, hp, acc, target_lane):
    """The meta-action that best realises the desired lane and acceleration (the discrete
    action type): a lane change toward ``target_lane``; ``slower`` when the speed this
    acceleration reaches in 1 s is 2.5 m/s (half a meta-action step) below the target
    speed; ``faster`` when it is 2.5 m/s above it, or when the road ahead lets the human
    speed up (the IDM asks for more than 0.5 m/s^2) and one more step stays within its
    desired speed (``IDMDriver.meta_action``'s rule alone never speeds up on a free road,
    where the IDM asks for gentle accelerations)."""
    lane_now = vw[0, Y] / p[L.LANE_W]
    if target_lane != ww[L.TGT_LANE]:
        return L.LANE_LEFT if target_lane < lane_now else L.LANE_RIGHT
    want = vw[0, V] + acc * 1.0  # the speed this acceleration reaches in 1 s
    tgt = ww[L.TGT_SPEED]
    if want < tgt - 2.5:
        return L.SLOWER
    if (want > tgt + 2.5 or (acc > 0.5 and tgt + 2.5 < hp[H_V0] and vw[0, V] > tgt - 2.5)
            or (acc > 0.2 and tgt < 2.5 and vw[0, V] < 1.0)):
        return L.FASTER  # (the last case: pull away from a standstill)
    return L.IDLE
