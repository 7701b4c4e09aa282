"""The hazard registry: every scenario name, env id, config choice and doc table derives from
``HAZARDS``. A new hazard is one module with one ``Hazard`` class and one line below.

``MIXED`` (the hazards ``takeover/Highway-v1`` draws from) is pinned, not derived: adding a
hazard must not change the episodes old seeds give. Each hazard draws from its own stream
seeded by the episode and a hash of its name, never by its position in a list.
"""

from __future__ import annotations

import zlib

import numpy as np

from takeover.envs.hazards.base import Hazard, KeepOut, Scene, place_vehicle, set_driver
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

if len(BY_CODE) != len(HAZARDS) or 0 in BY_CODE or set(MIXED) - set(HAZARDS):
    raise RuntimeError("hazard codes must be unique and non-zero, MIXED must name hazards")


def hazard_name(code: int) -> str:
    """Scenario name of a ``HZ_KIND`` code (``"none"`` for 0)."""
    return BY_CODE[int(code)].name if code else "none"


def hazard_rng(episode_key: int, name: str) -> np.random.Generator:
    """The stream of hazard ``name`` in the episode ``episode_key`` (a draw of the env's
    RNG): seeded by both, so it does not depend on the registry's order or contents."""
    return np.random.default_rng([int(episode_key), zlib.crc32(name.encode())])


__all__ = ["BY_CODE", "HAZARDS", "MIXED", "Hazard", "KeepOut", "Scene", "hazard_name",
           "hazard_rng", "place_vehicle", "set_driver"]
