"""A stopped car or truck in the ego's lane."""

from __future__ import annotations

from numba import njit

from takeover.envs import layout as L
from takeover.envs.hazards.base import R_LANE_W, Hazard, keep_lane_clear, place_vehicle


@njit(cache=True)
def place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, s, keep):
    x = v_ego * onset  # where the ego is at the onset if it holds its start speed
    length = 5.0 + 7.0 * s
    place_vehicle(veh, slot, L.STALLED, x, ego_lane, 0.0, rp[R_LANE_W], length,
                  2.2 if s > 0.5 else 2.0, L.STATIC)
    wld[L.HZ_X] = x - 0.5 * length
    wld[L.HZ_XEND] = x + 0.5 * length
    return keep_lane_clear(keep, ego_lane, x + 15.0)  # up to just past the obstacle


class StalledCar(Hazard):
    name = "stalled_car"
    env_name = "StalledCar"
    code = 3
    trigger = L.TRIGGER_RANGE
    summary = ("a stopped car (or truck, 5 + 7 s m long) in the ego's lane where the ego "
               "would be at the onset; fires when the ego is within ``sense_range``; no traffic starts between the "
               "ego and it in that lane")
    place = staticmethod(place)
