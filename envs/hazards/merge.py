"""A car on the acceleration lane (the hard shoulder's position) merges in front of the ego."""

from __future__ import annotations

from numba import njit

from takeover.envs import layout as L
from takeover.envs.hazards.base import R_LANES, Hazard, shadow_car


@njit(cache=True)
def place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, s, keep):
    gap = 12.0 - 7.0 * s
    wld[L.HZ_DEFICIT] = 3.0 + 6.0 * s
    shadow_car(veh, wld, rp, st, slot, rp[R_LANES], v_ego, gap)  # right of the right lane
    return 0


class Merge(Hazard):
    name = "merge"
    env_name = "Merge"
    code = 4
    trigger = L.TRIGGER_TIME
    fire_mode = L.LANE_BOUND
    start_lane = "right"
    summary = ("the ego starts in the right lane; a car on the acceleration lane beside it "
               "merges in front at the onset with a gap of 12 - 7 s m, 3 + 6 s m/s slower, and "
               "rejoins traffic ``hazard_window`` s later")
    place = staticmethod(place)
