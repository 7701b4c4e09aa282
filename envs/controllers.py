"""The low-level controllers of the world: one IDM, one lane keeper, and the corridor
queries (leader / follower in a lateral corridor) that drivers reading the true state use.

The step kernel's traffic, the ego's discrete meta-action controller and the minimal-risk
manoeuvre, the reference drivers (``takeover.envs.drivers``) and the scripted humans all
call these, so a "careful driver" means the same equations everywhere.

Each is a numba function (callable from Python and from other compiled code); the IDM and
the lane keeper also have a ``*_batch`` ufunc of the same arguments that broadcasts over arrays, e.g. one call for N
worlds. Names and signatures are stable (other layers depend on them).

References: Treiber, Hennecke & Helbing 2000 (IDM).
"""

from __future__ import annotations

import math

from numba import njit, vectorize

from takeover.envs.layout import EMPTY, FASTER, IDLE, KIND, LEN, PSI, SLOWER, VY, WID, V, X, Y

LANE_KEEP_GAIN = 0.6  # 1/s: lateral error (m) -> desired lateral speed (m/s) at speed v
LANE_KEEP_HEADING_MAX = 0.25  # rad: the steepest heading the lane keeper asks for
LANE_KEEP_YAW_GAIN = 3.0  # 1/s: heading error -> yaw rate
LANE_KEEP_MIN_SPEED = 1.0  # m/s: below this the steering law uses this speed
SIGNAL_LEAN = 0.6
"""m a driver blocked by a standing object leans toward the lane it wants, inside its own
lane: its signal to merge (the kernel's traffic reads 0.4 m or more as one and lets it in,
``dynamics._yield_request``)."""


@njit(cache=True, error_model="numpy", inline="always")
def idm_accel(v, v0, gap, v_lead, headway, a_max, b_comf, s0):
    """Intelligent Driver Model acceleration (m/s^2).

    Args (SI units): ``v`` own speed, ``v0`` desired speed, ``gap`` bumper-to-bumper gap to
    the leader (``inf`` = free road), ``v_lead`` the leader's speed, ``headway`` desired
    time headway (s), ``a_max`` maximum acceleration, ``b_comf`` comfortable deceleration,
    ``s0`` standstill distance (m). Unbounded below: a caller clips to its brakes.
    """
    r = v / max(v0, 0.1)
    r *= r
    free = 1.0 - r * r
    if not math.isfinite(gap):
        return a_max * free
    q = (s0 + max(0.0, v * headway + v * (v - v_lead) / (2.0 * math.sqrt(a_max * b_comf)))) \
        / max(gap, 0.1)
    return a_max * (free - q * q)


@njit(cache=True, error_model="numpy", inline="always")
def lane_keep_steer(lateral_error, heading, speed, wheelbase):
    """Front-wheel angle (rad, positive = right) that steers a kinematic bicycle onto a lane
    centre: ``lateral_error`` = y - y_centre (m), ``heading`` (rad), ``speed`` (m/s),
    ``wheelbase`` (m). The heading asked for is limited to 0.25 rad, so a full lane change
    (4 m) takes about 3 s at highway speed; the caller clips to its steering limit."""
    v = max(speed, LANE_KEEP_MIN_SPEED)
    s = min(max(-LANE_KEEP_GAIN * lateral_error / v, -LANE_KEEP_HEADING_MAX),
            LANE_KEEP_HEADING_MAX)
    yaw_rate = LANE_KEEP_YAW_GAIN * (math.asin(s) - heading)
    return math.atan(yaw_rate * wheelbase / v)


# --- corridor queries on one world's vehicle rows (``layout`` columns; row 0 is the ego),
# for drivers that read the true state: the reference drivers and the scripted humans
@njit(cache=True, error_model="numpy")
def corridor_leader(vw, y, margin, anticipation):
    """``(bumper gap m, speed along the road m/s)`` of the nearest object ahead of the ego
    (by centre) overlapping the corridor at lateral position ``y`` (``margin`` m each side
    of the two half-widths), now or, if ``anticipation`` > 0, that many seconds ahead at its
    lateral speed (a car cutting in counts as it starts to drift); gap ``inf`` (speed 0)
    when the corridor is clear. The gap is negative for an object alongside."""
    best_dx = math.inf
    gap = math.inf
    vl = 0.0
    for j in range(1, vw.shape[0]):
        if vw[j, KIND] == EMPTY:
            continue
        dx = vw[j, X] - vw[0, X]
        if dx <= 0.0 or dx >= best_dx:
            continue
        half = 0.5 * (vw[j, WID] + vw[0, WID]) + margin
        if abs(vw[j, Y] - y) < half or (
                anticipation > 0.0 and abs(vw[j, Y] + vw[j, VY] * anticipation - y) < half):
            best_dx = dx
            gap = dx - 0.5 * (vw[j, LEN] + vw[0, LEN])
            vl = vw[j, V] * math.cos(vw[j, PSI])
    return gap, vl


@njit(cache=True, error_model="numpy")
def corridor_follower(vw, y, margin):
    """``(bumper gap m, slot)`` of the nearest vehicle behind the ego (by centre, alongside
    included) overlapping the corridor at ``y`` (``margin`` m each side); ``(inf, -1)``
    when none."""
    best_dx = math.inf
    gap = math.inf
    jj = -1
    for j in range(1, vw.shape[0]):
        if vw[j, KIND] == EMPTY:
            continue
        dx = vw[0, X] - vw[j, X]
        if dx < 0.0 or dx >= best_dx:
            continue
        if abs(vw[j, Y] - y) < 0.5 * (vw[j, WID] + vw[0, WID]) + margin:
            best_dx = dx
            gap = dx - 0.5 * (vw[j, LEN] + vw[0, LEN])
            jj = j
    return gap, jj


@njit(cache=True, error_model="numpy", inline="always")
def speed_meta_action(v, target, acc, v0):
    """The speed meta-action (``IDLE`` / ``FASTER`` / ``SLOWER``) that realises a desired
    acceleration ``acc`` (m/s^2) at speed ``v`` with the speed controller's setpoint
    ``target`` (m/s), for a driver whose desired speed is ``v0``.

    The discrete speed controller accelerates at 1/s times the setpoint gap and a
    meta-action moves the setpoint by 5 m/s, so: ``slower`` when the speed ``acc`` reaches
    in 1 s is 2.5 m/s (half a step) below the setpoint and the driver wants to slow down
    (or the setpoint exceeds its desired speed; a setpoint already 0 is left alone);
    ``faster`` when it is 2.5 m/s above it, or when the road lets the driver speed up
    (``acc`` > 0.5) and one more step stays within its desired speed, or to pull away from
    a standstill. A gentle acceleration is so realised in pulses of ``faster``, which the
    ``slower`` rule must not undo on the next step. The scripted humans
    (``supervisor.humans.driving.meta_action``) and the intent agent
    (``takeover.agents.intent``, from its observation) both act by this rule."""
    want = v + acc * 1.0
    if want < target - 2.5 and target > 0.0 and (acc < 0.0 or target > v0 + 2.5):
        return SLOWER
    if (want > target + 2.5 or (acc > 0.5 and target + 2.5 < v0 and v > target - 2.5)
            or (acc > 0.2 and target < 2.5 and v < 1.0)):
        return FASTER
    return IDLE


speed_meta_action_batch = vectorize(["int64(float64, float64, float64, float64)"],
                                    cache=True)(speed_meta_action.py_func)
"""``speed_meta_action`` as a ufunc over arrays of worlds (the intent agent's batch)."""

idm_accel_batch = vectorize(["float64(float64, float64, float64, float64, float64, float64, "
                             "float64, float64)"], cache=True)(idm_accel.py_func)
"""``idm_accel`` as a ufunc: every argument may be an array (broadcast), e.g. ``(N,)``."""

lane_keep_steer_batch = vectorize(["float64(float64, float64, float64, float64)"],
                                  cache=True)(lane_keep_steer.py_func)
"""``lane_keep_steer`` as a ufunc over arrays of worlds."""
