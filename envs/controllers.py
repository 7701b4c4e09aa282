"""The two low-level controllers of the world: one IDM and one lane keeper.

The step kernel's traffic, the ego's discrete meta-action controller and the minimal-risk
manoeuvre, the reference drivers (``takeover.envs.drivers``) and the scripted humans all
call these, so a "careful driver" means the same equations everywhere.

Each is a numba scalar function (callable from Python and from other compiled code) plus a
``*_batch`` ufunc of the same arguments that broadcasts over arrays, e.g. one call for N
worlds. Names and signatures are stable (other layers depend on them).

References: Treiber, Hennecke & Helbing 2000 (IDM).
"""

from __future__ import annotations

import math

from numba import njit, vectorize

LANE_KEEP_GAIN = 0.6  # 1/s: lateral error (m) -> desired lateral speed (m/s) at speed v
LANE_KEEP_HEADING_MAX = 0.25  # rad: the steepest heading the lane keeper asks for
LANE_KEEP_YAW_GAIN = 3.0  # 1/s: heading error -> yaw rate
LANE_KEEP_MIN_SPEED = 1.0  # m/s: below this the steering law uses this speed


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


idm_accel_batch = vectorize(["float64(float64, float64, float64, float64, float64, float64, "
                             "float64, float64)"], cache=True)(idm_accel.py_func)
"""``idm_accel`` as a ufunc: every argument may be an array (broadcast), e.g. ``(N,)``."""

lane_keep_steer_batch = vectorize(["float64(float64, float64, float64, float64)"],
                                  cache=True)(lane_keep_steer.py_func)
"""``lane_keep_steer`` as a ufunc over arrays of worlds."""
