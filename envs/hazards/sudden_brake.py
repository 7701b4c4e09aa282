"""A lead car brakes hard to a stop."""

from __future__ import annotations

from takeover.envs import layout as L
from takeover.envs.hazards.base import Hazard, KeepOut, Scene, place_vehicle, set_driver


class SuddenBrake(Hazard):
    name = "sudden_brake"
    env_name = "SuddenBrake"
    code = 1
    trigger = L.TRIGGER_TIME
    fire_mode = L.BRAKING
    summary = ("a lead car 20-35 m ahead in the ego's lane brakes at 4 + 5 s m/s^2 at the onset "
               "time, to a stop if it has time, and drives off again ``hazard_window`` s later "
               "(pulling away at up to 3 m/s^2)")

    def place(self, scene: Scene) -> list[KeepOut]:
        gap = 20.0 + 15.0 * scene.rng.random()
        h, lane = scene.slot, scene.ego_lane
        place_vehicle(scene.veh, h, L.CAR, gap, lane, scene.v_ego, scene.cfg.lane_width,
                      mode=L.LANE_BOUND)
        set_driver(scene.veh[h], scene.rng.random(6), scene.cfg)
        scene.veh[h, L.V0] = scene.v_ego
        # pulls away briskly, as a driver clearing an emergency stop does (traffic's 1-2
        # m/s^2 left the careful driver behind it too little of the limit to arrive)
        scene.veh[h, L.AMAX] = 3.0
        scene.veh[h, L.DECEL] = 4.0 + 5.0 * scene.severity
        scene.wld[L.HZ_IDX] = h
        return [(lane, -25.0, gap + 20.0)]
