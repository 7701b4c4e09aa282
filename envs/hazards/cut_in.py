"""A car alongside cuts into the ego's lane, close and slower."""

from __future__ import annotations

from takeover.envs import layout as L
from takeover.envs.hazards.base import Hazard, KeepOut, Scene, shadow_car


class CutIn(Hazard):
    name = "cut_in"
    env_name = "CutIn"
    code = 2
    trigger = L.TRIGGER_TIME
    fire_mode = L.LANE_BOUND
    summary = ("a car alongside in an adjacent lane cuts in at the onset with a gap of "
               "12 - 8 s m, driving 2 + 5 s m/s slower than the ego; ``hazard_window`` s later it speeds "
               "up and rejoins traffic")

    def place(self, scene: Scene) -> list[KeepOut]:
        s, n = scene.severity, scene.cfg.lanes
        gap = 12.0 - 8.0 * s
        sides = [lane for lane in (scene.ego_lane - 1, scene.ego_lane + 1) if 0 <= lane < n]
        lane = float(sides[min(int(scene.rng.random() * len(sides)), len(sides) - 1)])
        scene.wld[L.HZ_DEFICIT] = 2.0 + 5.0 * s
        shadow_car(scene, lane, gap)
        return [(lane, -20.0, 30.0)]
