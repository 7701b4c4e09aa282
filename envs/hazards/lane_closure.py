"""A work zone of cones closes the ego's lane."""

from __future__ import annotations

import numpy as np

from takeover.envs import layout as L
from takeover.envs.hazards.base import Hazard, KeepOut, Scene, place_vehicle

CONES = 10


class LaneClosure(Hazard):
    name = "lane_closure"
    env_name = "LaneClosure"
    code = 5
    trigger = L.TRIGGER_RANGE
    summary = ("a work zone of cones closes the ego's lane for 40 + 32 s m from where the "
               "ego would be at the onset; fires when the ego is within ``sense_range``; no traffic starts between the "
               "ego and it in that lane")

    def place(self, scene: Scene) -> list[KeepOut]:
        x0 = scene.x_hit
        length = 40.0 + 32.0 * scene.severity
        for c, x in enumerate(np.linspace(x0, x0 + length, CONES)):
            place_vehicle(scene.veh, scene.slot + c, L.CONE, float(x), scene.ego_lane, 0.0,
                          scene.cfg.lane_width, length=0.6, width=0.6, mode=L.STATIC)
        scene.wld[L.HZ_X], scene.wld[L.HZ_XEND] = x0, x0 + length
        # no traffic between the ego and the obstacle in its lane: the ego meets the hazard
        # itself, not a queue of traffic cars stuck behind it (ordinary traffic cannot
        # zip-merge out of a blocked lane, so a queue there jammed every lane)
        return [(scene.ego_lane, -25.0, x0 + length + 10.0)]
