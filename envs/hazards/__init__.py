"""The hazard registry: every scenario name, env id, config choice and doc table derives from
``HAZARDS``. A new hazard is one module in this package holding one ``Hazard`` class, and its
module's name on one line of ``MODULES`` (``place_hazard``, the compiled dispatch the reset
calls, is built from ``HAZARDS``).

``MIXED`` (the hazards ``takeover/Highway-v2`` draws from) is pinned, not derived: adding a
hazard must not change the episodes old seeds give. Each hazard draws from its own stream
seeded by the episode and a hash of its name (``stream_tag``), never by its position in a
list.
"""

from __future__ import annotations

import importlib
import zlib
from pathlib import Path
from typing import Any

from numba import njit

from takeover.envs.hazards.base import MAX_KEEP_OUT, Hazard, place_vehicle, set_driver

MODULES = (
    "sudden_brake",
    "cut_in",
    "stalled_car",
    "merge",
    "lane_closure",
)
"""The registry: one line per hazard, the name of its module in this package, in
documentation order. Only these modules are imported (a stray file is never loaded)."""


def _hazard_of(module: str) -> Hazard:
    """The one ``Hazard`` subclass defined in ``module``, instantiated."""
    mod = importlib.import_module(f"{__name__}.{module}")
    found = [obj for obj in vars(mod).values() if isinstance(obj, type)
             and issubclass(obj, Hazard) and obj.__module__ == mod.__name__]
    if len(found) != 1:
        raise RuntimeError(f"hazard module {mod.__name__} must define exactly one Hazard "
                           f"subclass; it defines {len(found)}")
    return found[0]()


HAZARDS: dict[str, Hazard] = {h.name: h for h in map(_hazard_of, MODULES)}
"""Scenario name -> hazard, in documentation order."""

MIXED = ("sudden_brake", "cut_in", "stalled_car", "merge", "lane_closure")
"""The mixed scenario's hazards, pinned (``Highway-v2``): draw ``u`` picks
``MIXED[int(u * 5)]``. Append a new hazard here only with a version bump."""

BY_CODE: dict[int, Hazard] = {h.code: h for h in HAZARDS.values()}


def _dispatch(places: list[tuple[int, Any]]) -> Any:
    """A compiled ``place_hazard`` over ``places`` ((code, njit place) pairs): a chain of
    one small njit function per hazard, each closing over its code and ``place`` and falling
    through to the next. Numba cannot call a function looked up at run time from a table,
    but it compiles a closure's cells as constants, so the chain is the branch-per-hazard
    ``if`` ladder written by the registry instead of by hand."""

    @njit
    def nobody(code, veh, wld, rp, st, slot, ego_lane, v_ego, onset, severity, keep):
        return -1

    chain = nobody
    for code, place in reversed(places):
        chain = _link(code, place, chain)
    return chain


def _link(code_i: int, place: Any, rest: Any) -> Any:
    @njit
    def place_hazard(code, veh, wld, rp, st, slot, ego_lane, v_ego, onset, severity, keep):
        if code == code_i:
            return place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, severity, keep)
        return rest(code, veh, wld, rp, st, slot, ego_lane, v_ego, onset, severity, keep)

    return place_hazard


if len(BY_CODE) != len(HAZARDS) or 0 in BY_CODE or set(MIXED) - set(HAZARDS):
    raise RuntimeError("hazard codes must be unique and non-zero, MIXED must name hazards")
if any(getattr(h.place, "py_func", None) is None for h in HAZARDS.values()):
    raise RuntimeError("every hazard's place must be an @njit function (see hazards.base)")

place_hazard = _dispatch(sorted((h.code, h.place) for h in HAZARDS.values()))
"""``place_hazard(code, veh, wld, rp, st, slot, ego_lane, v_ego, onset, severity, keep)``:
hazard ``code``'s ``place`` (see ``base``); -1 for a code nobody places. Built from
``HAZARDS`` at import, so a new hazard needs no branch here."""


def registry_stamp() -> int:
    """A CRC32 of what the compiled dispatch is built from: every hazard's code and name, and
    the size and modification time of each file of this package (numba's own freshness
    test). ``scenarios`` compares it with the stamp its cached code was compiled with."""
    parts = [f"{h.code}:{h.name}" for h in HAZARDS.values()]
    for f in sorted(Path(__file__).parent.glob("*.py")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return zlib.crc32("|".join(parts).encode())


def hazard_name(code: int) -> str:
    """Scenario name of a ``HZ_KIND`` code (``"none"`` for 0)."""
    return BY_CODE[int(code)].name if code else "none"


def stream_tag(name: str) -> int:
    """The tag of hazard ``name``'s random stream (``streams.start``): a CRC32 of the name,
    so it does not depend on the registry's order or contents."""
    return zlib.crc32(name.encode())


__all__ = ["BY_CODE", "HAZARDS", "MAX_KEEP_OUT", "MIXED", "MODULES", "Hazard", "hazard_name",
           "place_hazard", "place_vehicle", "registry_stamp", "set_driver", "stream_tag"]
