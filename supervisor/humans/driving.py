"""How a scripted human drives: one world's controls from the true world arrays, in numba.

The driver is the careful ``takeover.envs.drivers.IDMDriver``'s algorithm, compiled, with the
human's own style in place of the careful driver's constants: desired speed, headway,
acceleration and braking, how far ahead it sees a standing obstacle (``lookahead``), how
early it sees a car drifting into its lane (``anticipation``), the gap it accepts for a lane
change (``gap_ahead``, ``gap_behind``, ``follower_brake``) and whether it also steers around
a sudden need to brake hard (``evade_brake``). So, per control step:

* car following: the world's IDM behind the corridor's leader (a car drifting in counts
  ``anticipation`` s early); toward a standing obstacle it keeps speed until stopping at
  ``b_comf`` is needed, then brakes as much as stopping needs, and stops ``s0 +
  STANDOFF`` m short (room to steer around it);
* a lane change when a standing object blocks its lane within ``lookahead`` m, or the
  leader is much slower than desired (under 80 % of it within 80 m), or (``evade_brake`` >
  0) the own lane asks for braking harder than ``evade_brake``: into the neighbour travel
  lane that asks for the least braking, if its gap is one the human accepts (room behind:
  ``gap_behind`` m plus ``CLOSING_TIME`` s of the follower's closing speed, and a follower
  that can match the ego's speed braking at most ``follower_brake``; room ahead:
  ``gap_ahead`` m plus 1 s of closing speed); blocked with no gap yet, it drops back (at
  most ``SEEK_BRAKE``) toward the neighbour lane's car, and signals: it leans
  ``SIGNAL_LEAN`` m toward the open lane with the most room behind, which asks that lane's
  traffic to let it in (the kernel's cooperative yielding). With discrete actions a human
  cannot lean: it signals by targeting the lane (the kernel reads that as the same request)
  once it stands still behind the obstacle, where targeting a lane does not move the car;
* a continuous lane change it has begun is abandoned while the target lane's follower
  closes to half the accepted gap (a discrete one cannot be: ``meta_action``).

The car following, the lane keeping and the corridor queries are the world's own
(``takeover.envs.controllers``), so a human and the careful driver mean the same equations.

The road (``takeover.envs.highway``): travel lanes ``0 .. N_LANES - 1`` (lane ``k`` centred
at ``y = k * LANE_W``, 0 leftmost) and the hard shoulder at ``y = N_LANES * LANE_W`` on the
right. A human never chooses the shoulder: if it finds itself there (it took over from a
minimal-risk manoeuvre that had pulled over) it rejoins the rightmost travel lane as soon as
the gap there is one it accepts, following whatever is ahead on the shoulder meanwhile.

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
    speed_meta_action,
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
# the careful driver's constants (``IDMDriver``), the same for every human
STANDOFF = 7.0  # m added to s0 behind a standing obstacle: room to steer around it
CLOSING_TIME = 1.5  # s of the target-lane follower's closing speed the gap behind must add
OVERTAKE_BELOW = 0.8  # a leader under this share of the desired speed (within 80 m) is passed
SEEK_BRAKE = 1.0  # m/s^2: blocked with no gap, the most braking used to drop back to one
STANDING = 2.0  # m/s: slower than this an object counts as standing


@njit(cache=True, error_model="numpy")
def standing_ahead(vw, y, lookahead):
    """Whether a standing object lies within ``lookahead`` m ahead in the lane at ``y``
    (``drivers.standing_ahead``)."""
    for j in range(1, vw.shape[0]):
        if vw[j, KIND] == EMPTY:
            continue
        dx = vw[j, X] - vw[0, X]
        if (0.0 < dx < lookahead and vw[j, V] < STANDING
                and abs(vw[j, Y] - y) < 0.5 * (vw[j, WID] + vw[0, WID])):
            return True
    return False


@njit(cache=True, error_model="numpy")
def leader(vw, y, horizon):
    """``(bumper gap m, speed along the road m/s)`` of the nearest object ahead whose
    lateral path over the next ``horizon`` s (at its lateral speed) crosses the corridor at
    ``y``: a car cutting in counts from the moment it drifts toward the corridor.
    ``controllers.corridor_leader`` tests the position now and at the path's end point,
    which a fast cut-in overshoots for horizons above about 1 s (a 2.8 m/s drift over 2 s
    moves 5.6 m, past a 5 m corridor); so the path is also tested at a third and two
    thirds of the horizon (steps of at most 2 m, under half the corridor)."""
    gap, vl = corridor_leader(vw, y, 0.5, horizon)
    for k in (1.0, 2.0):
        g, v = corridor_leader(vw, y, 0.5, horizon * k / 3.0)
        if g < gap:
            gap, vl = g, v
    return gap, vl


@njit(cache=True, error_model="numpy")
def room_behind(vw, hp, y):
    """Whether the follower in the lane at ``y`` leaves the human room to change in ahead
    of it (``IDMDriver._room_behind`` with the human's ``gap_behind`` and
    ``follower_brake``); a standing follower (one waving the ego in) needs only 2 m."""
    g_back, jb = corridor_follower(vw, y, 0.5)
    if jb < 0:
        return True
    v_back = vw[jb, V]
    if v_back < 0.5:
        return g_back > 2.0
    closing = max(0.0, v_back - vw[0, V])
    room = g_back - hp[H_GAP_BEHIND]
    return room >= closing * CLOSING_TIME and closing * closing <= 2.0 * hp[H_FOLLOWER_BRAKE] * room


@njit(cache=True, error_model="numpy")
def _idm_h(v, hp, s0, gap, vl):
    """The human's IDM (its desired speed, headway, acceleration and comfort braking)."""
    return idm_accel(v, hp[H_V0], gap, vl, hp[H_THW], hp[H_AMAX], hp[H_BCOMF], s0)


@njit(cache=True, error_model="numpy")
def controls(vw, p, hp, target_lane, signal_lane, world_lane):
    """One world's desired ``(steer rad, acceleration m/s^2, target lane, signal lane)``
    for a human with parameters ``hp``. ``target_lane`` is the lane it is heading for and
    ``signal_lane`` the lane it signals toward (NaN: none yet / none); ``world_lane`` is
    the discrete action type's target lane (``layout.TGT_LANE``), NaN for continuous
    actions."""
    w = p[L.LANE_W]
    n_lanes = p[L.N_LANES]  # travel lanes; lane index n_lanes is the hard shoulder
    discrete = not math.isnan(world_lane)
    ego_y = vw[0, Y]
    lane_now = min(max(math.floor(ego_y / w + 0.5), 0.0), n_lanes)
    if math.isnan(target_lane):
        target_lane = lane_now
    if (discrete and world_lane != lane_now and target_lane == lane_now
            and world_lane != signal_lane):
        target_lane = world_lane  # a discrete lane change is committed (a wrong action too)
    v = vw[0, V]
    v0, b_comf = hp[H_V0], hp[H_BCOMF]
    gap, v_lead = leader(vw, ego_y, hp[H_ANTICIPATION])
    creep = math.inf  # steering around a standing obstacle: creep up to it, do not wait
    if target_lane != lane_now and not discrete:
        # mid-change: steer back if the target lane's follower closes in (the gap has shut)
        g_back, jb = corridor_follower(vw, target_lane * w, 0.5)
        if jb >= 0 and vw[jb, V] >= 0.5 and g_back < (
                hp[H_GAP_BEHIND] + max(0.0, vw[jb, V] - v) * CLOSING_TIME * 0.5):
            target_lane = lane_now
    if target_lane != lane_now:  # mid-change: also respect the target lane's leader
        g2, v2 = corridor_leader(vw, target_lane * w, 0.5, 0.0)
        if v_lead < STANDING and gap > 2.0:
            creep = idm_accel(v, v0, gap, v_lead, 0.5, hp[H_AMAX], b_comf, 1.0)
            gap, v_lead = g2, v2
        elif g2 < gap:
            gap, v_lead = g2, v2
    # stop well back from a standing obstacle: steering around it needs room
    s0 = hp[H_S0] + (STANDOFF if v_lead < STANDING else 0.0)
    if v_lead < STANDING and math.isfinite(gap):
        # keep speed (and the chance to merge at traffic speed) until a stop at b_comf is
        # needed, then brake as much as stopping needs; the IDM would crawl from far back
        room = gap - s0
        need = v * v / (2.0 * room) if room > 0.0 else math.inf
        acc = -need if need >= b_comf else _idm_h(v, hp, s0, math.inf, 0.0)
        if room <= 0.0:
            acc = -b_comf if v > 0.0 else 0.0
    else:
        acc = _idm_h(v, hp, s0, gap, v_lead)
    acc = min(acc, creep)
    look = hp[H_LOOKAHEAD]
    if target_lane == lane_now and lane_now == n_lanes:
        # on the shoulder (after a minimal-risk manoeuvre): rejoin traffic at the first
        # gap this human accepts
        y = (n_lanes - 1.0) * w
        g_ahead, v_ahead = corridor_leader(vw, y, 0.5, 0.0)
        if room_behind(vw, hp, y) and not (
                math.isfinite(g_ahead) and g_ahead < hp[H_GAP_AHEAD] + max(0.0, v - v_ahead)):
            target_lane = n_lanes - 1.0
        signal_lane = math.nan
    elif target_lane == lane_now:
        blocked = standing_ahead(vw, lane_now * w, look)
        evade = hp[H_EVADE] > 0.0 and acc < -hp[H_EVADE]
        # a human that does not evade (``evade_brake`` 0) only brakes while its lane asks
        # for more than comfortable braking: no lane change until that need has passed
        freeze = hp[H_EVADE] == 0.0 and acc < -b_comf
        if not freeze and (blocked or evade or (gap < 80.0 and v_lead < OVERTAKE_BELOW * v0)):
            best = -b_comf if blocked else acc + 0.5
            seek = -math.inf  # blocked, and no gap yet: fall in behind a neighbour lane's car
            room = -math.inf  # blocked: signal toward the open lane with most room behind
            signal = math.nan
            for d in (-1.0, 1.0):
                lane = lane_now + d
                if lane < 0.0 or lane > n_lanes - 1.0 or standing_ahead(vw, lane * w, look):
                    continue
                g_ahead, v_ahead = corridor_leader(vw, lane * w, 0.5, 0.0)
                g_back, _ = corridor_follower(vw, lane * w, 0.5)
                if lane == signal_lane or (g_back > room and math.isnan(signal_lane)):
                    room, signal = g_back, lane
                if not room_behind(vw, hp, lane * w):
                    continue
                a_new = _idm_h(v, hp, s0, g_ahead, v_ahead)
                if (g_ahead < hp[H_GAP_AHEAD] + max(0.0, v - v_ahead)
                        or (blocked and a_new <= best)):
                    seek = max(seek, a_new)  # blocked: drop back to that gap
                    continue
                if a_new > best:
                    best = a_new
                    target_lane = lane
            if blocked and target_lane == lane_now and seek > -math.inf:
                acc = min(acc, max(seek, -SEEK_BRAKE))
            signal_lane = signal if blocked and target_lane == lane_now else math.nan
        else:
            signal_lane = math.nan
    else:
        signal_lane = math.nan
    y_aim = target_lane * w
    if not math.isnan(signal_lane) and not discrete:  # lean toward it, inside one's lane
        y_aim += math.copysign(SIGNAL_LEAN, signal_lane - lane_now)
    steer = lane_keep_steer(ego_y - y_aim, vw[0, PSI], v, p[L.WHEELBASE])
    acc = min(max(acc, -p[L.BRAKE_MAX] * hp[H_BRAKE_USE]), p[L.ACC_MAX])
    return steer, acc, target_lane, signal_lane


@njit(cache=True, error_model="numpy")
def meta_action(vw, ww, p, hp, acc, target_lane, signal_lane):
    """The meta-action that best realises the desired lane and acceleration (the discrete
    action type).

    Lanes: a lane change when it sets the world's target lane (``LANE_LEFT`` / ``RIGHT``
    target the lane beside the one under the ego) to the lane wanted; so a change is
    committed once begun (turning back before the lane line would target the lane on the
    other side). Standing still behind a standing obstacle with no gap (``signal_lane``
    set), the human targets the lane it signals toward, which does not move a standing car,
    and holds still (the acceleration is capped at 0) until it accepts a gap.

    Speed: ``controllers.speed_meta_action`` (the rule the intent agent shares), with
    the human's desired speed."""
    w = p[L.LANE_W]
    want_lane = target_lane
    if not math.isnan(signal_lane) and vw[0, V] < 0.5:
        want_lane = signal_lane
        acc = min(acc, 0.0)
    tgt_lane = ww[L.TGT_LANE]
    if want_lane != tgt_lane:
        ego_lane = min(max(math.floor(vw[0, Y] / w + 0.5), 0.0), p[L.N_LANES])
        if max(ego_lane - 1.0, 0.0) == want_lane:
            return L.LANE_LEFT
        if max(min(ego_lane + 1.0, p[L.N_LANES] - 1.0), ego_lane) == want_lane:
            return L.LANE_RIGHT
    return speed_meta_action(vw[0, V], ww[L.TGT_SPEED], acc, hp[H_V0])
