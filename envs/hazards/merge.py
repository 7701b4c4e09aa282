"""A car on the acceleration lane (the hard shoulder's position) merges in front of the ego."""

from __future__ import annotations

from takeover.envs import layout as L
from takeover.envs.hazards.base import Hazard, KeepOut, Scene, shadow_car


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

    def place(self, scene: Scene) -> list[KeepOut]:
        s = scene.severity
        gap = 12.0 - 7.0 * s
        lane = float(scene.cfg.lanes)  # right of the rightmost lane
        scene.wld[L.HZ_DEFICIT] = 3.0 + 6.0 * s
        shadow_car(scene, lane, gap)
        return []
