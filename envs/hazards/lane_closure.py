"""A work zone of cones closes the ego's lane."""

from __future__ import annotations

from numba import njit

from takeover.envs import layout as L
from takeover.envs.hazards.base import R_LANE_W, Hazard, keep_lane_clear, place_vehicle

CONES = 10


@njit(cache=True)
def place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, s, keep):
    x0 = v_ego * onset  # where the ego is at the onset if it holds its start speed
    length = 40.0 + 32.0 * s
    for c in range(CONES):
        place_vehicle(veh, slot + c, L.CONE, x0 + length * c / (CONES - 1), ego_lane, 0.0,
                      rp[R_LANE_W], 0.6, 0.6, L.STATIC)
    wld[L.HZ_X], wld[L.HZ_XEND] = x0, x0 + length
    return keep_lane_clear(keep, ego_lane, x0 + length + 10.0)  # past the work zone


class LaneClosure(Hazard):
    name = "lane_closure"
    env_name = "LaneClosure"
    code = 5
    trigger = L.TRIGGER_RANGE
    summary = ("a work zone of cones closes the ego's lane for 40 + 32 s m from where the "
               "ego would be at the onset; fires when the ego is within ``sense_range``; no traffic starts between the "
               "ego and it in that lane")
    place = staticmethod(place)
