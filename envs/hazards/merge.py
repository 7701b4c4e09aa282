"""A car on the acceleration lane (the hard shoulder's position) merges in front of the ego
into a gap it misjudged.

A merging driver matches the traffic's speed on the acceleration lane and picks a gap
(highway-env's ``merge-v0`` ramp car likewise speeds up to traffic before it merges); the
hazard is a gap picked too short and a merge made too slow (the lane-change crash of the
NHTSA pre-crash scenarios). This car holds station 15-25 m ahead of the ego's nose (0.6-1.0
s at 25 m/s, under the ego's own following gap) and, once in, settles 3-7 m/s below the
ego's speed (it merges at up to 2 m/s above that, ``dynamics._update_hazard``) until it
speeds up again ``hazard_window`` s later: an ego that keeps its speed runs into it, one
that brakes firmly when it moves over has the room to. The first version merged 5-12 m
ahead, 3-9 m/s slower: under 0.5 s to collision at its worst, beyond what a driver without
foreknowledge of the merge, or a human taking over, could avoid (the shipped novice
arrived in 0.045 of development seeds 0..199).

Until it merges the car matches whatever speed the ego drives (the kernel's ``SHADOW``
mode): an ego that brakes for it (the plain-trained novice slows to about 15 m/s) is
matched, which a merging driver would not do below ramp speed.
"""

from __future__ import annotations

from numba import njit

from takeover.envs import layout as L
from takeover.envs.hazards.base import R_LANES, Hazard, shadow_car


@njit(cache=True)
def place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, s, keep):
    gap = 25.0 - 10.0 * s
    wld[L.HZ_DEFICIT] = 3.0 + 4.0 * s
    shadow_car(veh, wld, rp, st, slot, rp[R_LANES], v_ego, gap)  # right of the right lane
    return 0


class Merge(Hazard):
    name = "merge"
    env_name = "Merge"
    code = 4
    trigger = L.TRIGGER_TIME
    fire_mode = L.LANE_BOUND
    start_lane = "right"
    summary = ("the ego starts in the right lane; a car on the acceleration lane matching "
               "its speed merges in front at the onset into a short gap, 25 - 10 s m, then "
               "drives 3 + 4 s m/s slower, and rejoins traffic ``hazard_window`` s later")
    place = staticmethod(place)
