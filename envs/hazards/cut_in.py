"""A car alongside cuts into the ego's lane, close and slower."""

from __future__ import annotations

from numba import njit

from takeover.envs import layout as L
from takeover.envs.hazards.base import R_LANES, Hazard, shadow_car
from takeover.envs.streams import uniform


@njit(cache=True)
def place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, s, keep):
    gap = 12.0 - 8.0 * s
    left_ok = ego_lane - 1.0 >= 0.0
    right_ok = ego_lane + 1.0 < rp[R_LANES]
    sides = int(left_ok) + int(right_ok)
    pick = min(int(uniform(st) * sides), sides - 1)  # the left side first, as listed
    lane = ego_lane - 1.0 if (left_ok and pick == 0) else ego_lane + 1.0
    wld[L.HZ_DEFICIT] = 2.0 + 5.0 * s
    shadow_car(veh, wld, rp, st, slot, lane, v_ego, gap)
    keep[0, 0], keep[0, 1], keep[0, 2] = lane, -20.0, 30.0
    return 1


class CutIn(Hazard):
    name = "cut_in"
    env_name = "CutIn"
    code = 2
    trigger = L.TRIGGER_TIME
    fire_mode = L.LANE_BOUND
    summary = ("a car alongside in an adjacent lane cuts in at the onset with a gap of "
               "12 - 8 s m, driving 2 + 5 s m/s slower than the ego; ``hazard_window`` s later it speeds "
               "up and rejoins traffic")
    place = staticmethod(place)
