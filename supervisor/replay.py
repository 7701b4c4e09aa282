"""Replay a recorded live drive: the same key events through the same :class:`KeyState`
at the same simulation times, so with the same seed the trajectory is bit-identical.

This is what turns a person's drive into a regression test: record with
``takeover drive --record keys.json``, replay with ``--replay keys.json`` (or
``ReplayHuman.load("keys.json")`` in a test).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from takeover.atomic import atomic_write_text
from takeover.supervisor.keyboard import KEYS, KeyEvent, KeyHuman, KeyRates

FORMAT = "takeover-key-events"
VERSION = 1


def save_events(path: str | os.PathLike, events: list[KeyEvent], **meta: Any) -> None:
    """Write events as JSON (atomically). Times are stored as ``float.hex`` strings too, so
    a reload gives the exact same floats. ``meta`` (seed, scenario, ...) is kept alongside."""
    data = {"format": FORMAT, "version": VERSION, "meta": meta,
            "events": [{"time": e.time, "time_hex": float(e.time).hex(), "key": e.key,
                        "down": e.down} for e in events]}
    atomic_write_text(path, json.dumps(data, indent=1))


def load_events(path: str | os.PathLike) -> tuple[list[KeyEvent], dict[str, Any]]:
    """Read events written by :func:`save_events`; returns ``(events, meta)``."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a key-event JSON file ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a takeover key-event file (record one with "
                         "`takeover drive --record FILE`)")
    if data.get("version", 0) > VERSION:
        raise ValueError(f"{path} has key-event format version {data['version']}; this "
                         f"takeover reads up to {VERSION}: upgrade takeover")
    events = []
    for i, e in enumerate(data["events"]):
        t = float.fromhex(e["time_hex"]) if "time_hex" in e else float(e["time"])
        if not math.isfinite(t) or e.get("key") not in KEYS:
            raise ValueError(f"{path}: event {i} is invalid: {e!r}")
        events.append(KeyEvent(t, e["key"], bool(e["down"])))
    return events, dict(data.get("meta", {}))


class ReplayHuman(KeyHuman):
    """A :class:`~takeover.types.Human` replaying recorded key events by simulation time."""

    def __init__(self, events: list[KeyEvent], rates: KeyRates | None = None) -> None:
        super().__init__(events, rates)

    @classmethod
    def load(cls, path: str | os.PathLike, rates: KeyRates | None = None) -> ReplayHuman:
        events, _ = load_events(path)
        return cls(events, rates)
