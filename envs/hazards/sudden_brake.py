"""A lead car brakes hard to a stop."""

from __future__ import annotations

from numba import njit

from takeover.envs import layout as L
from takeover.envs.hazards.base import (
    R_LANE_W,
    R_TRAF_HI,
    R_TRAF_LO,
    Hazard,
    keep_lane_clear,
    place_vehicle,
    set_driver,
)
from takeover.envs.streams import uniform


@njit(cache=True)
def place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, s, keep):
    gap = 20.0 + 15.0 * uniform(st)
    place_vehicle(veh, slot, L.CAR, gap, ego_lane, v_ego, rp[R_LANE_W], 5.0, 2.0,
                  L.LANE_BOUND)
    set_driver(veh, slot, st, rp[R_TRAF_LO], rp[R_TRAF_HI])
    veh[slot, L.V0] = v_ego
    # pulls away briskly, as a driver clearing an emergency stop does (traffic's 1-2
    # m/s^2 left the careful driver behind it too little of the limit to arrive)
    veh[slot, L.AMAX] = 3.0
    veh[slot, L.DECEL] = 4.0 + 5.0 * s
    wld[L.HZ_IDX] = slot
    return keep_lane_clear(keep, ego_lane, gap + 20.0)  # up to 15 m past the lead car


class SuddenBrake(Hazard):
    name = "sudden_brake"
    env_name = "SuddenBrake"
    code = 1
    trigger = L.TRIGGER_TIME
    fire_mode = L.BRAKING
    summary = ("a lead car 20-35 m ahead in the ego's lane brakes at 4 + 5 s m/s^2 at the onset "
               "time, to a stop if it has time, and drives off again ``hazard_window`` s later "
               "(pulling away at up to 3 m/s^2)")
    place = staticmethod(place)
