"""Recordings of live sessions, and the human that replays them.

A :class:`Recording` holds everything a drive depends on besides the code: the settings
(scenario, agent, gate, estimator, action type, hand-back policy, human settings), the env's
configuration, and per episode its seed, every input event stamped with the control step
that consumed it, and how the episode ended (``done``, or the person's ``quit`` / window
``close`` / ``restart`` / ``next`` at a step). Replaying it through the same
:class:`~takeover.supervisor.keyboard.KeyHuman` gives the live log back record by record
(every field but the wall-clock ones): see ``takeover.supervisor.live.replay``.

Floats are stored as ``float.hex`` strings too, so a reload gives the exact same bits. Files
are plain JSON (nothing read from disk is executed) and written atomically.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from takeover.atomic import atomic_write_text
from takeover.supervisor.keyboard import KEYS, KeyEvent, KeyHuman, KeyRates

FORMAT = "takeover-recording"
OLD_FORMAT = "takeover-key-events"  # version 1: one episode, events stamped by time only
VERSION = 2
ENDS = ("done", "quit", "close", "restart", "next", "max_frames")
"""How an episode ended: by itself, or by the person (ESC, window close, restart / next from
a pause) or a frame limit at a given step."""


class RecordingError(ValueError):
    """A recording is unreadable or cannot be honoured; the message names the file."""


@dataclass(frozen=True)
class EpisodeRecording:
    """One recorded episode.

    Attributes:
        seed: the episode's reset seed.
        events: every input event, in the order consumed.
        end: how it ended (one of :data:`ENDS`).
        end_step: number of control steps taken when it ended.
    """

    seed: int
    events: list[KeyEvent]
    end: str = "done"
    end_step: int = 0


@dataclass(frozen=True)
class Recording:
    """A live session: its settings, the env configuration and its episodes."""

    settings: dict[str, Any]
    env_config: dict[str, Any] = field(default_factory=dict)
    episodes: list[EpisodeRecording] = field(default_factory=list)


def _fhex(x: float) -> str:
    return float(x).hex()


def _event_json(e: KeyEvent) -> dict[str, Any]:
    out = {"step": e.step, "time": e.time, "time_hex": _fhex(e.time), "key": e.key,
           "down": e.down}
    if e.value != 1.0:
        out["value_hex"] = _fhex(e.value)
    return out


def save_recording(path: str | os.PathLike, rec: Recording) -> None:
    """Write ``rec`` as JSON, atomically."""
    data = {"format": FORMAT, "version": VERSION, "settings": rec.settings,
            "env_config": rec.env_config,
            "episodes": [{"seed": ep.seed, "end": ep.end, "end_step": ep.end_step,
                          "events": [_event_json(e) for e in ep.events]}
                         for ep in rec.episodes]}
    atomic_write_text(path, json.dumps(data, indent=1))


def _event(path: Any, i: int, e: Any) -> KeyEvent:
    try:
        t = float.fromhex(e["time_hex"]) if "time_hex" in e else float(e["time"])
        value = float.fromhex(e["value_hex"]) if "value_hex" in e else 1.0
        step = int(e.get("step", -1))
        if not (math.isfinite(t) and math.isfinite(value)) or e.get("key") not in KEYS:
            raise ValueError
        return KeyEvent(t, e["key"], bool(e["down"]), step, value)
    except (TypeError, ValueError, KeyError, AttributeError):
        raise RecordingError(f"{path}: event {i} is invalid: {e!r}") from None


def load_recording(path: str | os.PathLike) -> Recording:
    """Read a recording written by :func:`save_recording` (or a version-1 key-event file),
    refusing anything else with a message naming the file."""
    p = Path(path)
    if not p.is_file():
        raise RecordingError(f"replay file {str(p)!r} does not exist (record one with "
                             "`takeover drive --record FILE`)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordingError(f"{p} is not a takeover recording: not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, OLD_FORMAT):
        raise RecordingError(f"{p} is not a takeover recording (record one with "
                             "`takeover drive --record FILE`)")
    version = data.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise RecordingError(f"{p} has recording format version {version!r}; this takeover "
                             f"reads up to {VERSION}: upgrade takeover")
    try:
        if data["format"] == OLD_FORMAT:
            meta = dict(data.get("meta", {}))
            if "seed" not in meta or "scenario" not in meta:
                raise RecordingError(f"{p} is a version-1 key-event file without its seed "
                                     "and scenario: it cannot be replayed exactly; record again")
            events = [_event(p, i, e) for i, e in enumerate(data["events"])]
            settings = {k: meta[k] for k in ("scenario", "agent", "gate", "estimator",
                                             "action_type") if k in meta}
            return Recording(settings, {}, [EpisodeRecording(int(meta["seed"]), events,
                                                             "done", 0)])
        episodes = []
        for j, ep in enumerate(data["episodes"]):
            end = ep.get("end", "done")
            if end not in ENDS:
                raise RecordingError(f"{p}: episode {j} ends with {end!r}; expected one of "
                                     f"{', '.join(ENDS)}")
            episodes.append(EpisodeRecording(
                int(ep["seed"]), [_event(p, i, e) for i, e in enumerate(ep["events"])],
                end, int(ep.get("end_step", 0))))
        settings = data["settings"]
        if not isinstance(settings, dict):
            raise TypeError("settings is not a mapping")
        return Recording(settings, dict(data.get("env_config", {})), episodes)
    except RecordingError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise RecordingError(f"{p} is a damaged takeover recording ({err!r}); record "
                             "again") from None


# --- version-1 helpers, kept for callers of the old API ---------------------------------
def save_events(path: str | os.PathLike, events: list[KeyEvent], **meta: Any) -> None:
    """One episode's events as a recording (``meta`` must hold ``seed``; the rest are
    settings)."""
    seed = int(meta.pop("seed", 0))
    save_recording(path, Recording(dict(meta), {}, [EpisodeRecording(seed, list(events))]))


def load_events(path: str | os.PathLike) -> tuple[list[KeyEvent], dict[str, Any]]:
    """``(events, meta)`` of a recording's first episode (``meta``: settings + seed)."""
    rec = load_recording(path)
    if not rec.episodes:
        raise RecordingError(f"{path} holds no episode")
    ep = rec.episodes[0]
    return list(ep.events), {**rec.settings, "seed": ep.seed}


class ReplayHuman(KeyHuman):
    """A :class:`~takeover.types.Human` replaying recorded events, each at its step."""

    def __init__(self, events: list[KeyEvent], rates: KeyRates | None = None) -> None:
        super().__init__(events, rates)

    @classmethod
    def load(cls, path: str | os.PathLike, rates: KeyRates | None = None) -> ReplayHuman:
        events, _ = load_events(path)
        return cls(events, rates)
