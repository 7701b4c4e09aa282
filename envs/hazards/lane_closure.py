"""A work zone closes the ego's lane behind a taper of cones.

As a real lane closure is laid out (MUTCD Part 6: a merging taper, then the work area),
the cones start at the closed lane's far edge, where they block nothing, and run
diagonally across it to near its line with the open lane: a driver sees the lane narrow
for the taper's whole length and moves over while it still can, instead of meeting a wall.
The taper is ``TAPER_MAX - TAPER_SPAN * s`` m (120-70 m; MUTCD's L = W S would be about
220 m at 25 m/s, too long for the 437 m route); the work area ends half a taper after it.

Each cone stands for a stretch of devices (23-40 m apart; MUTCD's spacing is at most
about S ft, 17 m at 25 m/s): the observation holds the K = 8 nearest objects, and a
realistic row of cones fills it, hiding the traffic in the lane to move into. Measured
with the shipped novice on development seeds 0..199: ten cones on the lane's centre over
40-72 m (the first version) 0.015 arrived, ten in this taper 0.035, these five 0.135 [0.09,
0.18] (the careful driver 0.905 -> 0.915). It passes only a closed middle lane: it never
moves right out of the left lane, or left out of the right one, around a standing object
(as on StalledCar), and a longer taper (100-160 m) did not change that (0.14 on 0..99).
"""

from __future__ import annotations

from numba import njit

from takeover.envs import layout as L
from takeover.envs.hazards.base import R_LANE_W, R_LANES, Hazard, keep_lane_clear, place_vehicle
from takeover.envs.streams import uniform

TAPER_CONES = 4  # and one more where the work area ends, half a taper further
CONES = 5
TAPER_MAX = 120.0  # m, at severity 0
TAPER_SPAN = 50.0  # m shorter at severity 1
FAR_EDGE = 1.7  # m from the lane centre: the first cone, half a cone inside the far edge
NEAR_EDGE = 1.2  # m from the lane centre toward the open lane: the line the cones end on
# (0.8 m inside the lane line, a buffer from the open lane's traffic; still blocking: the
# ego's half width plus a cone's is 1.3 m)


@njit(cache=True)
def place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, s, keep):
    x0 = v_ego * onset  # where the ego is at the onset if it holds its start speed
    w = rp[R_LANE_W]
    # the open side: the one lane beside an edge lane, either side of a middle lane
    if ego_lane == 0.0:
        side = 1.0
    elif ego_lane == rp[R_LANES] - 1.0:
        side = -1.0
    else:
        side = 1.0 if uniform(st) < 0.5 else -1.0
    taper = TAPER_MAX - TAPER_SPAN * s
    step = taper / (TAPER_CONES - 1)
    x = x0
    for c in range(CONES):
        if c < TAPER_CONES:
            x = x0 + step * c
            off = side * (-FAR_EDGE + (FAR_EDGE + NEAR_EDGE) * c / (TAPER_CONES - 1))
        else:
            x = x0 + 1.5 * taper
            off = side * NEAR_EDGE
        place_vehicle(veh, slot + c, L.CONE, x, ego_lane, 0.0, w, 0.6, 0.6, L.STATIC)
        veh[slot + c, L.Y] += off
    wld[L.HZ_X], wld[L.HZ_XEND] = x0, x
    return keep_lane_clear(keep, ego_lane, x + 10.0)  # past the work zone


class LaneClosure(Hazard):
    name = "lane_closure"
    env_name = "LaneClosure"
    code = 5
    trigger = L.TRIGGER_RANGE
    summary = ("a work zone closes the ego's lane from where the ego would be at the onset: "
               "a taper of cones 120 - 50 s m long from the lane's far edge across to the "
               "open lane, then a short work area (half the taper) along it; fires when the ego is "
               "within ``sense_range`` of the taper; no traffic starts between the ego and "
               "it in that lane")
    place = staticmethod(place)
