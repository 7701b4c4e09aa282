"""A stopped car or truck in the ego's lane."""

from __future__ import annotations

from takeover.envs import layout as L
from takeover.envs.hazards.base import Hazard, KeepOut, Scene, place_vehicle


class StalledCar(Hazard):
    name = "stalled_car"
    env_name = "StalledCar"
    code = 3
    trigger = L.TRIGGER_RANGE
    summary = ("a stopped car (or truck, 5 + 7 s m long) in the ego's lane where the ego "
               "would be at the onset; fires when the ego is within ``sense_range``; no traffic starts between the "
               "ego and it in that lane")

    def place(self, scene: Scene) -> list[KeepOut]:
        s, x = scene.severity, scene.x_hit
        length = 5.0 + 7.0 * s
        place_vehicle(scene.veh, scene.slot, L.STALLED, x, scene.ego_lane, 0.0,
                      scene.cfg.lane_width, length=length, width=2.2 if s > 0.5 else 2.0,
                      mode=L.STATIC)
        scene.wld[L.HZ_X] = x - 0.5 * length
        scene.wld[L.HZ_XEND] = x + 0.5 * length
        # no traffic between the ego and the obstacle in its lane: the ego meets the hazard
        # itself, not a queue of traffic cars stuck behind it (ordinary traffic cannot
        # zip-merge out of a blocked lane, so a queue there jammed every lane)
        return [(scene.ego_lane, -25.0, x + 15.0)]
