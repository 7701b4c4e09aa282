"""Checksummed frames, the unit every log file is made of, and the errors of the log.

A frame is ``MAGIC (4 B) | payload length (u32 LE) | CRC32 of payload (u32 LE) | payload``.
A reader resynchronises on the next ``MAGIC`` after a bad frame, so one damaged frame costs
that frame only and a torn tail (what a kill mid-write leaves) costs the frame being written.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from takeover.records import SCHEMA_VERSION

MAGIC = b"\xa5TKR"
"""Frame marker; the reader resynchronises on it after a damaged frame."""
FRAME = struct.Struct("<4sII")
MAX_PAYLOAD = 64 << 20
"""Frames claiming a bigger payload are treated as damage (guards a corrupted length)."""

T = TypeVar("T")


class LogError(Exception):
    """A log cannot be written or read as asked; the message says why and what to do."""


class LogWriteError(LogError, OSError):
    """Writing failed (e.g. disk full); earlier completed episodes are intact."""


class SchemaVersionError(LogError):
    """The log was written by a newer, incompatible schema major version."""


def frame(payload: bytes) -> bytes:
    """``payload`` framed: magic, length, CRC32."""
    return FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def check_version(version: Any, what: str) -> None:
    """Raise ``SchemaVersionError`` for a newer major version than ours, ``LogError`` for an
    unreadable one (damage, not a newer format)."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise LogError(f"{what} has an unreadable schema version {version!r}") from None
    ours = int(SCHEMA_VERSION.split(".")[0])
    if major > ours:
        raise SchemaVersionError(
            f"{what} was written with log schema {version}, but this takeover reads schema "
            f"{ours}.x and older only; upgrade takeover to read it"
        )


def scan_frames(data: bytes, decode: Callable[[memoryview], T]) -> tuple[list[T], int, bool]:
    """Every frame of ``data`` whose CRC holds and which ``decode`` accepts, in order.

    Returns ``(items, damaged, torn_tail)``: ``damaged`` counts stretches of bad bytes (each
    once, however long), ``torn_tail`` says the data ends inside a bad stretch. A CRC-valid
    payload that ``decode`` rejects (any exception, a frame of a newer schema included: a
    writer never mixes versions in a file) is damage too: that frame only, never yielded.
    """
    items: list[T] = []
    view = memoryview(data)
    pos, n, damaged = 0, len(data), 0
    in_damage = False
    while pos < n:
        if data[pos:pos + 4] != MAGIC:
            damaged += not in_damage
            in_damage = True
            nxt = data.find(MAGIC, pos + 1)
            if nxt < 0:
                break
            pos = nxt
            continue
        if pos + FRAME.size > n:
            damaged += not in_damage
            in_damage = True
            break
        _, length, crc = FRAME.unpack_from(data, pos)
        start, stop = pos + FRAME.size, pos + FRAME.size + length
        if length > MAX_PAYLOAD or stop > n or zlib.crc32(view[start:stop]) != crc:
            damaged += not in_damage
            in_damage = True
            pos += 1
            continue
        try:
            items.append(decode(view[start:stop]))
        except Exception:  # a CRC-valid but malformed payload: count it, never yield it
            damaged += not in_damage
            in_damage = True
            pos += 1
            continue
        in_damage = False
        pos = stop
    return items, damaged, in_damage
