"""Schema 1.0: one JSON-headed frame per record, a ``manifest.json`` rewritten after every
episode. Kept so 1.0 logs stay readable, and as the reference the log benchmark measures the
2.0 format against (``LogWriterV1``); new logs are written by ``takeover.logio.LogWriter``.

A 1.0 record payload is ``u32 header length | JSON header | raw array bytes``; every float
scalar is its 8 IEEE-754 bytes in hex.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np

from takeover.atomic import atomic_write_text, fsync_dir
from takeover.logio.frames import LogError, check_version, frame
from takeover.records import RunMeta, StepRecord

VERSION = "1.0"
SUFFIX = ".rec"
OPEN_SUFFIX = ".rec.open"
MANIFEST_FILE = "manifest.json"
DTYPES = frozenset(
    ["<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "|b1"]
)
_ARRAYS = ("obs", "agent_action", "member_actions", "human_action", "action")
_FLOATS = ("time", "wall_time", "threshold", "tor_time", "takeover_time", "reward")
_PLAIN = ("episode", "step", "controller", "phase", "transition", "gate_request",
          "terminated", "truncated", "reason")


def _fhex(x: float) -> str:
    return struct.pack("<d", x).hex()


def _unfhex(s: str) -> float:
    return struct.unpack("<d", bytes.fromhex(s))[0]


def tag_scalar(v: Any, where: str) -> list:
    """A tagged scalar: floats keep their exact bits, everything else is plain JSON."""
    if isinstance(v, (bool, np.bool_)):
        return ["b", bool(v)]
    if isinstance(v, (int, np.integer)):
        return ["i", int(v)]
    if isinstance(v, (float, np.floating)):
        return ["f", _fhex(float(v))]
    if isinstance(v, str):
        return ["s", str.__str__(v)]
    if v is None:
        return ["n", None]
    raise LogError(
        f"{where} is a {type(v).__name__}; logs hold only bool/int/float/str/None scalars "
        "there (convert it, or drop it from the info dict)"
    )


def untag_scalar(t: Any) -> Any:
    tag, v = t
    if tag == "f":
        return _unfhex(v)
    if tag == "b" and isinstance(v, bool):
        return v
    if tag == "i" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if (tag == "s" and isinstance(v, str)) or (tag == "n" and v is None):
        return v
    raise ValueError(f"bad tagged scalar {t!r}")


def encode_record(rec: StepRecord) -> bytes:
    """The 1.0 payload of one record (the 2.0-only fields are not stored)."""
    head: dict[str, Any] = {"v": VERSION, "kind": "step"}
    for name in _PLAIN:
        head[name] = getattr(rec, name)
    head["step"] = int(rec.step)
    for name in ("gate_request", "terminated", "truncated"):
        head[name] = bool(head[name])
    for name in _FLOATS:
        head[name] = _fhex(float(getattr(rec, name)))
    head["scores"] = {str(k): _fhex(float(v)) for k, v in rec.scores.items()}
    head["info"] = {str(k): tag_scalar(v, f"info[{k!r}]") for k, v in rec.info.items()}
    blobs: list[bytes] = []
    offset = 0
    arrays: dict[str, Any] = {}
    for name in _ARRAYS:
        a = getattr(rec, name)
        if a is None:
            arrays[name] = None
            continue
        a = np.asarray(a)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt.str not in DTYPES:
            raise LogError(f"record field {name!r} has dtype {a.dtype}; logs store numeric "
                           "arrays only")
        raw = np.ascontiguousarray(a, dtype=dt).tobytes()
        arrays[name] = [dt.str, list(a.shape), offset, len(raw)]
        blobs.append(raw)
        offset += len(raw)
    head["arrays"] = arrays
    js = json.dumps(head, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return struct.pack("<I", len(js)) + js + b"".join(blobs)


def decode_record(head: dict[str, Any], blob: memoryview) -> StepRecord:
    """A 1.0 record from its parsed header and the bytes after it; raises on malformed input."""
    kw: dict[str, Any] = {name: head[name] for name in _PLAIN}
    for name in ("episode", "controller", "phase", "transition", "reason"):
        if not isinstance(kw[name], str):
            raise ValueError(f"{name} is not a string")
    if not isinstance(kw["step"], int):
        raise ValueError("step is not an integer")
    for name in ("gate_request", "terminated", "truncated"):
        kw[name] = bool(kw[name])
    for name in _FLOATS:
        kw[name] = _unfhex(head[name])
    kw["scores"] = {str(k): _unfhex(v) for k, v in head["scores"].items()}
    kw["info"] = {str(k): untag_scalar(v) for k, v in head["info"].items()}
    for name in _ARRAYS:
        spec = head["arrays"][name]
        if spec is None:
            if name not in ("member_actions", "human_action"):
                raise ValueError(f"{name} missing")
            kw[name] = None
            continue
        dt, shape, off, nbytes = spec
        if dt not in DTYPES or not all(isinstance(x, int) and x >= 0 for x in shape):
            raise ValueError(f"array {name}: bad dtype or shape")
        dtype = np.dtype(dt)
        if off < 0 or off + nbytes > len(blob) or math.prod(shape) * dtype.itemsize != nbytes:
            raise ValueError(f"array {name} out of bounds")
        kw[name] = np.frombuffer(blob[off:off + nbytes], dtype=dtype).reshape(shape).copy()
    return StepRecord(**kw)


def end_payload(episode: str, records: int) -> bytes:
    b = json.dumps({"v": VERSION, "kind": "end", "episode": episode,
                    "records": records}).encode("utf-8")
    return struct.pack("<I", len(b)) + b


class LogWriterV1:
    """The schema-1.0 writer, unchanged in behaviour: one ``os.write`` per record, and after
    each episode an fsync, a rename and a whole ``manifest.json`` rewrite (with its fsync).
    For tests of 1.0 readability and as the benchmark's reference; one episode at a time."""

    def __init__(self, run_dir: str | os.PathLike, meta: RunMeta) -> None:
        self.run_dir = Path(run_dir)
        self.meta = meta
        (self.run_dir / "episodes").mkdir(parents=True, exist_ok=True)
        meta_dict = asdict(meta) | {"schema_version": VERSION}
        atomic_write_text(self.run_dir / "meta.json", json.dumps(meta_dict, indent=2,
                                                                 default=str))
        self.manifest: dict[str, Any] = {}
        self._write_manifest()
        self._fd: int | None = None
        self._episode: str | None = None

    def _write_manifest(self) -> None:
        atomic_write_text(self.run_dir / MANIFEST_FILE, json.dumps(
            {"schema_version": VERSION, "run_id": self.meta.run_id, "episodes": self.manifest},
            indent=1, sort_keys=True))

    def write(self, rec: StepRecord) -> None:
        if self._episode is not None and rec.episode != self._episode:
            raise LogError(f"episode {self._episode!r} is still open: the 1.0 writer holds one "
                           f"episode at a time, so end_episode() it before writing "
                           f"{rec.episode!r}")
        if self._episode is None:
            self._episode, self._count, self._sha = rec.episode, 0, hashlib.sha256()
            path = self.run_dir / "episodes" / (rec.episode + OPEN_SUFFIX)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            fsync_dir(path.parent)
        self._append(frame(encode_record(rec)))
        self._count += 1

    def _append(self, data: bytes) -> None:
        os.write(cast(int, self._fd), data)
        self._sha.update(data)

    def end_episode(self) -> Path:
        """Make the open episode durable and return its path."""
        eid, fd = self._episode, self._fd
        if eid is None or fd is None:
            raise LogError("no episode is open: write() at least one record before "
                           "end_episode()")
        self._append(frame(end_payload(eid, self._count)))
        os.fsync(fd)
        os.close(fd)
        d = self.run_dir / "episodes"
        final = d / (eid + SUFFIX)
        os.replace(d / (eid + OPEN_SUFFIX), final)
        fsync_dir(d)
        self.manifest[eid] = {"file": f"episodes/{final.name}", "sha256": self._sha.hexdigest(),
                              "records": self._count, "bytes": final.stat().st_size}
        self._episode = self._fd = None
        self._write_manifest()
        return final

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LogWriterV1:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_payload_version(head: dict[str, Any]) -> None:
    check_version(head.get("v", ""), "record")
