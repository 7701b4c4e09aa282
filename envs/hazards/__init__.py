"""The hazard registry: every scenario name, env id, config choice and doc table derives from
``HAZARDS``. A new hazard is one module with one ``Hazard`` class, one line in ``HAZARDS``
and one branch in ``place_hazard`` (the compiled reset cannot look a function up in a dict).

``MIXED`` (the hazards ``takeover/Highway-v1`` draws from) is pinned, not derived: adding a
hazard must not change the episodes old seeds give. Each hazard draws from its own stream
seeded by the episode and a hash of its name (``stream_tag``), never by its position in a
list.
"""

from __future__ import annotations

import zlib

from numba import njit

from takeover.envs.hazards import cut_in, lane_closure, merge, stalled_car, sudden_brake
from takeover.envs.hazards.base import MAX_KEEP_OUT, Hazard, place_vehicle, set_driver
from takeover.envs.hazards.cut_in import CutIn
from takeover.envs.hazards.lane_closure import LaneClosure
from takeover.envs.hazards.merge import Merge
from takeover.envs.hazards.stalled_car import StalledCar
from takeover.envs.hazards.sudden_brake import SuddenBrake

HAZARDS: dict[str, Hazard] = {h.name: h for h in (
    SuddenBrake(),
    CutIn(),
    StalledCar(),
    Merge(),
    LaneClosure(),
)}
"""Scenario name -> hazard, in documentation order."""

MIXED = ("sudden_brake", "cut_in", "stalled_car", "merge", "lane_closure")
"""The mixed scenario's hazards, pinned (``Highway-v1``): draw ``u`` picks
``MIXED[int(u * 5)]``. Append a new hazard here only with a version bump."""

BY_CODE: dict[int, Hazard] = {h.code: h for h in HAZARDS.values()}


@njit(cache=True)
def place_hazard(code, veh, wld, rp, st, slot, ego_lane, v_ego, onset, severity, keep):
    """Call hazard ``code``'s ``place`` (see ``base``); -1 for a code nobody places."""
    args = (veh, wld, rp, st, slot, ego_lane, v_ego, onset, severity, keep)
    if code == 1:
        return sudden_brake.place(*args)
    if code == 2:
        return cut_in.place(*args)
    if code == 3:
        return stalled_car.place(*args)
    if code == 4:
        return merge.place(*args)
    if code == 5:
        return lane_closure.place(*args)
    return -1


PLACED = {1: sudden_brake, 2: cut_in, 3: stalled_car, 4: merge, 5: lane_closure}
"""The codes ``place_hazard`` dispatches, and the module whose ``place`` it calls."""

if len(BY_CODE) != len(HAZARDS) or 0 in BY_CODE or set(MIXED) - set(HAZARDS):
    raise RuntimeError("hazard codes must be unique and non-zero, MIXED must name hazards")
if any(PLACED.get(c) is None or PLACED[c].place is not h.place for c, h in BY_CODE.items()):
    raise RuntimeError("every hazard code needs its branch in hazards.place_hazard, calling "
                       "that hazard's place")


def hazard_name(code: int) -> str:
    """Scenario name of a ``HZ_KIND`` code (``"none"`` for 0)."""
    return BY_CODE[int(code)].name if code else "none"


def stream_tag(name: str) -> int:
    """The tag of hazard ``name``'s random stream (``streams.start``): a CRC32 of the name,
    so it does not depend on the registry's order or contents."""
    return zlib.crc32(name.encode())


__all__ = ["BY_CODE", "HAZARDS", "MAX_KEEP_OUT", "MIXED", "PLACED", "Hazard", "hazard_name",
           "place_hazard", "place_vehicle", "set_driver", "stream_tag"]
