"""Crash-safe storage of intervention logs (``StepRecord`` / ``RunMeta``).

A run directory holds::

    meta.json              RunMeta (written atomically once)
    manifest.json          sha256, size and record count of every completed episode
                           (rewritten atomically after each episode)
    episodes/<id>.rec      a completed episode
    episodes/<id>.rec.open the episode being written (left behind by a crash)

WHY this layout: HACO keeps human data in memory until the end, HDF5 and Parquet files are
unreadable after a crash mid-write, and Minari buffers in a temp folder. Here the open
episode is an append-only stream: every record is one ``os.write`` of a frame::

    MAGIC (4 B) | payload length (u32 LE) | CRC32 of payload (u32 LE) | payload

and a completed episode is durable the moment ``end_episode`` returns (end frame, fsync,
atomic rename, directory fsync). A kill loses at most the record being written; the reader
resynchronises on the next ``MAGIC`` after any bad frame, so it recovers every intact record
of a damaged file, counts the dropped ones and never yields a torn or corrupted record.

The payload is a JSON header followed by the raw bytes of the arrays (dtype, shape and
offset in the header). Every float scalar is stored as its 8 IEEE-754 bytes in hex, so
records round-trip bit for bit (NaN payloads, -0.0). No pickle: logs may come from others.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from takeover.atomic import atomic_write_text, fsync_dir
from takeover.records import SCHEMA_VERSION, RunMeta, StepRecord

MAGIC = b"\xa5TKR"
"""Frame marker; the reader resynchronises on it after a damaged frame."""
_FRAME = struct.Struct("<4sII")
MAX_PAYLOAD = 64 << 20
"""Frames claiming a bigger payload are treated as damage (guards a corrupted length)."""
EPISODE_SUFFIX = ".rec"
OPEN_SUFFIX = ".rec.open"
META_FILE = "meta.json"
MANIFEST_FILE = "manifest.json"
EPISODES_DIR = "episodes"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DTYPES = frozenset(
    ["<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "|b1"]
)
_ARRAYS = ("obs", "agent_action", "member_actions", "human_action", "action")
_FLOATS = ("time", "wall_time", "threshold", "tor_time", "takeover_time", "reward")
_PLAIN = ("episode", "step", "controller", "phase", "transition", "gate_request",
          "terminated", "truncated", "reason")


class LogError(Exception):
    """A log cannot be written or read as asked; the message says why and what to do."""


class LogWriteError(LogError, OSError):
    """Writing failed (e.g. disk full); earlier completed episodes are intact."""


class SchemaVersionError(LogError):
    """The log was written by a newer, incompatible schema major version."""


# ---------------------------------------------------------------- encoding


def _fhex(x: float) -> str:
    return struct.pack("<d", x).hex()


def _unfhex(s: str) -> float:
    return struct.unpack("<d", bytes.fromhex(s))[0]


def _scalar(v: Any, where: str) -> list:
    """A tagged scalar: floats keep their exact bits, everything else is plain JSON."""
    if isinstance(v, (bool, np.bool_)):
        return ["b", bool(v)]
    if isinstance(v, (int, np.integer)):
        return ["i", int(v)]
    if isinstance(v, (float, np.floating)):
        return ["f", _fhex(float(v))]
    if isinstance(v, str):
        return ["s", v]
    if v is None:
        return ["n", None]
    raise LogError(
        f"{where} is a {type(v).__name__}; logs hold only bool/int/float/str/None scalars "
        "there (convert it, or drop it from the info dict)"
    )


def _unscalar(t: list) -> Any:
    tag, v = t
    if tag == "f":
        return _unfhex(v)
    if tag == "b":
        return bool(v)
    if tag == "i":
        return int(v)
    if tag in ("s", "n"):
        return v
    raise ValueError(f"unknown scalar tag {tag!r}")


def encode_record(rec: StepRecord) -> bytes:
    """The payload bytes of one record (see the module docstring)."""
    if not isinstance(rec, StepRecord):
        raise LogError(f"expected a takeover.records.StepRecord, got {type(rec).__name__}")
    head: dict[str, Any] = {"v": SCHEMA_VERSION, "kind": "step"}
    for name in _PLAIN:
        head[name] = getattr(rec, name)
    head["step"] = int(rec.step)
    for name in ("gate_request", "terminated", "truncated"):
        head[name] = bool(head[name])
    for name in _FLOATS:
        head[name] = _fhex(float(getattr(rec, name)))
    head["scores"] = {str(k): _fhex(float(v)) for k, v in rec.scores.items()}
    head["info"] = {str(k): _scalar(v, f"info[{k!r}]") for k, v in rec.info.items()}
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
        if dt.str not in _DTYPES:
            raise LogError(
                f"record field {name!r} has dtype {a.dtype}; logs store numeric arrays only "
                "(use float32 actions via takeover.records.as_action_array)"
            )
        raw = np.ascontiguousarray(a, dtype=dt).tobytes()
        arrays[name] = [dt.str, list(a.shape), offset, len(raw)]
        blobs.append(raw)
        offset += len(raw)
    head["arrays"] = arrays
    js = json.dumps(head, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return struct.pack("<I", len(js)) + js + b"".join(blobs)


def decode_record(payload: bytes) -> StepRecord:
    """Inverse of ``encode_record``; raises ``ValueError``-like errors on malformed input and
    ``SchemaVersionError`` on a newer schema major version."""
    (n,) = struct.unpack_from("<I", payload, 0)
    head = json.loads(payload[4:4 + n].decode("utf-8"))
    _check_version(head.get("v", ""), "record")
    if head.get("kind") != "step":
        raise ValueError("not a step record")
    blob = memoryview(payload)[4 + n:]
    kw: dict[str, Any] = {name: head[name] for name in _PLAIN}
    for name in _FLOATS:
        kw[name] = _unfhex(head[name])
    kw["scores"] = {k: _unfhex(v) for k, v in head["scores"].items()}
    kw["info"] = {k: _unscalar(v) for k, v in head["info"].items()}
    for name in _ARRAYS:
        spec = head["arrays"][name]
        if spec is None:
            kw[name] = None
            continue
        dt, shape, off, nbytes = spec
        if dt not in _DTYPES:
            raise ValueError(f"dtype {dt!r} not allowed")
        dtype = np.dtype(dt)
        if off < 0 or off + nbytes > len(blob) or math.prod(shape) * dtype.itemsize != nbytes:
            raise ValueError(f"array {name} out of bounds")
        kw[name] = np.frombuffer(blob[off:off + nbytes], dtype=dtype).reshape(shape).copy()
    return StepRecord(**kw)


def _check_version(version: str, what: str) -> None:
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise SchemaVersionError(f"{what} has an unreadable schema version {version!r}") from None
    ours = int(SCHEMA_VERSION.split(".")[0])
    if major > ours:
        raise SchemaVersionError(
            f"{what} was written with log schema {version}, but this takeover reads schema "
            f"{ours}.x only; upgrade takeover to read it"
        )


def frame(payload: bytes) -> bytes:
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _end_payload(episode: str, records: int) -> bytes:
    js = json.dumps({"v": SCHEMA_VERSION, "kind": "end", "episode": episode, "records": records})
    b = js.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def records_equal(a: StepRecord, b: StepRecord) -> bool:
    """Bit-exact equality of two records (``==`` on dataclasses with arrays is ambiguous)."""
    return encode_record(a) == encode_record(b)


# ---------------------------------------------------------------- reading one file


@dataclass
class EpisodeFile:
    """What could be recovered from one episode file.

    Attributes:
        records: every intact step record, in file order.
        dropped: records lost to damage: each stretch of bad bytes counts once, or the
            shortfall against the end frame's count when that is larger.
        ended: the file carries a valid end frame whose count matches ``records``.
        torn_tail: the file ends in a partial frame (what a kill mid-write leaves); it is
            included in ``dropped``.
    """

    records: list[StepRecord]
    dropped: int = 0
    ended: bool = False
    torn_tail: bool = False


def scan_bytes(data: bytes) -> EpisodeFile:
    """Recover every intact record from the bytes of one episode file."""
    out = EpisodeFile(records=[])
    pos, n = 0, len(data)
    end_count: int | None = None
    damaged_run = False  # count a stretch of garbage between good frames once

    def damage() -> None:
        nonlocal damaged_run
        if not damaged_run:
            out.dropped += 1
            damaged_run = True

    while pos < n:
        if data[pos:pos + 4] != MAGIC:
            damage()
            nxt = data.find(MAGIC, pos + 1)
            if nxt < 0:
                break
            pos = nxt
            continue
        if pos + _FRAME.size > n:
            damage()
            break
        _, length, crc = _FRAME.unpack_from(data, pos)
        start, stop = pos + _FRAME.size, pos + _FRAME.size + length
        if length > MAX_PAYLOAD or stop > n or zlib.crc32(data[start:stop]) != crc:
            damage()
            pos += 1
            continue
        payload = data[start:stop]
        try:
            kind = _payload_kind(payload)
            if kind == "end":
                end_count = _end_count(payload)
            else:
                out.records.append(decode_record(payload))
        except SchemaVersionError:
            raise
        except Exception:  # a CRC-valid but malformed payload: count it, never yield it
            damage()
            pos += 1
            continue
        damaged_run = False
        pos = stop
    out.torn_tail = damaged_run
    if end_count is not None:
        out.dropped = max(out.dropped, end_count - len(out.records))
    out.ended = end_count is not None and end_count == len(out.records) and out.dropped == 0
    return out


def _payload_kind(payload: bytes) -> str:
    (n,) = struct.unpack_from("<I", payload, 0)
    head = json.loads(payload[4:4 + n].decode("utf-8"))
    if not isinstance(head, dict):
        raise ValueError("payload header is not an object")
    _check_version(head.get("v", ""), "record")
    return head.get("kind", "")


def _end_count(payload: bytes) -> int:
    (n,) = struct.unpack_from("<I", payload, 0)
    return int(json.loads(payload[4:4 + n].decode("utf-8"))["records"])


def read_episode_file(path: str | os.PathLike) -> EpisodeFile:
    return scan_bytes(Path(path).read_bytes())


def iter_records(path: str | os.PathLike) -> Iterator[StepRecord]:
    """Intact records of one episode file, or of every complete episode of a run dir."""
    path = Path(path)
    if path.is_dir():
        for recs in read_log(path).episodes.values():
            yield from recs
    else:
        yield from read_episode_file(path).records


# ---------------------------------------------------------------- reading a run


@dataclass
class LogReadResult:
    """A run directory as recovered by ``read_log``.

    Attributes:
        meta: the run's metadata (``None`` if ``meta.json`` is missing or unreadable).
        episodes: complete, intact episodes by id (safe to learn from).
        partial: records recovered from incomplete or damaged episodes, by id; kept apart
            so they are never silently mixed in with complete ones.
        incomplete: ids of episodes that never ended (the writer was interrupted).
        damaged: ids of ended episodes whose file is corrupt, missing or fails its sha256.
        dropped: damaged frames skipped over all files.
        unlisted: complete, intact episodes missing from ``manifest.json``: the writer was
            killed between renaming the episode into place and rewriting the manifest. The
            episode validates itself (per-record CRC and end frame), so it is kept; the run
            counts as interrupted.
        problems: one human-readable line per problem found.
    """

    meta: RunMeta | None
    episodes: dict[str, list[StepRecord]] = field(default_factory=dict)
    partial: dict[str, list[StepRecord]] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    dropped: int = 0
    unlisted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> list[str]:
        return list(self.episodes)

    @property
    def records(self) -> int:
        return sum(len(r) for r in self.episodes.values()) + sum(
            len(r) for r in self.partial.values())

    @property
    def ok(self) -> bool:
        """No damage and nothing incomplete."""
        return not (self.incomplete or self.unlisted or self.damaged or self.dropped
                    or self.problems)

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.meta.run_id if self.meta else None,
            "complete": len(self.episodes),
            "incomplete": len(self.incomplete),
            "damaged": len(self.damaged),
            "records": self.records,
            "dropped": self.dropped,
            "unlisted": len(self.unlisted),
            "incomplete_ids": list(self.incomplete),
            "damaged_ids": list(self.damaged),
            "problems": list(self.problems),
            "ok": self.ok,
        }


def load_meta(run_dir: str | os.PathLike) -> RunMeta:
    path = Path(run_dir) / META_FILE
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise LogError(f"{path} not found: is {run_dir} a takeover log directory?") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise LogError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise LogError(f"{path} does not hold a JSON object")
    _check_version(data.get("schema_version", ""), str(path))
    known = {f.name for f in fields(RunMeta)}
    return RunMeta(**{k: v for k, v in data.items() if k in known})


def load_manifest(run_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    path = Path(run_dir) / MANIFEST_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text("utf-8"))
    _check_version(data.get("schema_version", ""), str(path))
    return dict(data.get("episodes", {}))


def read_log(run_dir: str | os.PathLike) -> LogReadResult:
    """Read a run directory, recovering what can be recovered and flagging the rest.

    Raises ``LogError`` if ``run_dir`` is not a log, ``SchemaVersionError`` for a newer
    schema major version; damage never raises, it is reported in the result.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LogError(f"{run_dir} is not a directory; pass the run directory of a log")
    res = LogReadResult(meta=None)
    try:
        res.meta = load_meta(run_dir)
    except SchemaVersionError:
        raise
    except LogError as e:
        if not (run_dir / EPISODES_DIR).is_dir():
            raise
        res.problems.append(str(e))
    try:
        manifest = load_manifest(run_dir)
    except SchemaVersionError:
        raise
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        manifest = {}
        res.problems.append(f"manifest.json unreadable ({e}); checking episode files alone")
    ep_dir = run_dir / EPISODES_DIR
    files = sorted(ep_dir.iterdir()) if ep_dir.is_dir() else []
    seen: set[str] = set()
    for f in files:
        name = f.name
        if name.endswith(OPEN_SUFFIX):
            eid = name[: -len(OPEN_SUFFIX)]
            got = read_episode_file(f)
            res.incomplete.append(eid)
            res.partial[eid] = got.records
            # the one record a kill was writing is expected loss, not damage
            res.dropped += got.dropped - int(got.torn_tail)
            continue
        if not name.endswith(EPISODE_SUFFIX):
            continue
        eid = name[: -len(EPISODE_SUFFIX)]
        seen.add(eid)
        data = f.read_bytes()
        got = scan_bytes(data)
        res.dropped += got.dropped
        entry = manifest.get(eid)
        bad = []
        if entry is not None and entry.get("sha256") != hashlib.sha256(data).hexdigest():
            bad.append("sha256 mismatch with manifest.json")
        if not got.ended:
            bad.append(f"{got.dropped} damaged frame(s)" if got.dropped else "no valid end frame")
        if bad:
            res.damaged.append(eid)
            res.partial[eid] = got.records
            res.problems.append(f"episode {eid}: " + "; ".join(bad))
        else:
            res.episodes[eid] = got.records
            if entry is None:  # crash between rename and manifest rewrite: still complete
                res.unlisted.append(eid)
    for eid in manifest:
        if eid not in seen:
            res.damaged.append(eid)
            res.problems.append(f"episode {eid}: listed in manifest.json but its file is missing")
    return res


# ---------------------------------------------------------------- writing


class LogWriter:
    """Append ``StepRecord``s to a run directory, one durable file per completed episode.

    Usage::

        with LogWriter(run_dir, meta) as log:
            for rec in episode_records:
                log.write(rec)
            log.end_episode()

    An episode opens with its first record; ``end_episode`` makes it durable. An episode
    still open at ``close()`` (or when the block raises) stays on disk as ``*.rec.open`` and
    is reported as incomplete, never mixed in. Opening an existing run directory appends to
    it (same ``run_id`` required). Any ``OSError`` (e.g. disk full) raises ``LogWriteError``
    and leaves earlier episodes intact; the writer then refuses further writes.
    """

    def __init__(self, run_dir: str | os.PathLike, meta: RunMeta) -> None:
        if not isinstance(meta, RunMeta):
            raise LogError(f"meta must be a takeover.records.RunMeta, got {type(meta).__name__}")
        self.run_dir = Path(run_dir)
        self.meta = meta
        self._fd: int | None = None
        self._episode: str | None = None
        self._count = 0
        self._sha = hashlib.sha256()
        self._failed: str | None = None
        self._closed = False
        self._guard("create the log directory", self._open_run)

    # -- setup
    def _open_run(self) -> None:
        (self.run_dir / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        meta_path = self.run_dir / META_FILE
        if meta_path.exists():
            old = load_meta(self.run_dir)
            if old.run_id != self.meta.run_id:
                raise LogError(
                    f"{self.run_dir} already holds run {old.run_id!r}, not {self.meta.run_id!r}; "
                    "pick a new directory to start a new run"
                )
            self.manifest = load_manifest(self.run_dir)
        else:
            atomic_write_text(meta_path, json.dumps(asdict(self.meta), indent=2, default=str))
            self.manifest = {}
            self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write_text(
            self.run_dir / MANIFEST_FILE,
            json.dumps({"schema_version": SCHEMA_VERSION, "run_id": self.meta.run_id,
                        "episodes": self.manifest}, indent=1, sort_keys=True),
        )

    def _guard(self, what: str, fn, *args):
        """Run ``fn``; turn an ``OSError`` into a clear ``LogWriteError`` and stop writing."""
        try:
            return fn(*args)
        except OSError as e:
            self._failed = f"could not {what} in {self.run_dir}: {e.strerror or e}"
            self._abort_fd()
            hint = (" (disk full: free space, then start a new run directory)"
                    if e.errno == errno.ENOSPC else "")
            raise LogWriteError(
                e.errno or errno.EIO,
                f"{self._failed}{hint}; completed episodes already on disk are intact",
            ) from e

    def _abort_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _check_usable(self) -> None:
        if self._closed:
            raise LogError("this LogWriter is closed; open a new one to write more")
        if self._failed:
            raise LogError(f"this LogWriter failed earlier ({self._failed}); start a new one")

    # -- API
    @property
    def episode(self) -> str | None:
        """Id of the open episode, or ``None``."""
        return self._episode

    def write(self, record: StepRecord) -> None:
        """Append one record; its ``episode`` field opens a new episode if none is open."""
        self._check_usable()
        payload = encode_record(record)
        if self._episode is None:
            self._guard("start an episode file", self._start, record.episode)
        elif record.episode != self._episode:
            raise LogError(
                f"record belongs to episode {record.episode!r} but {self._episode!r} is still "
                "open; call end_episode() first"
            )
        self._guard("write a record", self._append, frame(payload))
        self._count += 1

    def end_episode(self) -> Path:
        """Make the open episode durable (end frame, fsync, rename, manifest); return its path."""
        self._check_usable()
        if self._episode is None:
            raise LogError("no episode is open: write() at least one record first")
        return self._guard("finish an episode", self._finish)

    def close(self) -> None:
        """Close the file; an episode still open stays on disk flagged incomplete."""
        self._abort_fd()
        self._closed = True

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals
    def _paths(self, eid: str) -> tuple[Path, Path]:
        d = self.run_dir / EPISODES_DIR
        return d / (eid + OPEN_SUFFIX), d / (eid + EPISODE_SUFFIX)

    def _start(self, eid: str) -> None:
        if not isinstance(eid, str) or not _ID_RE.match(eid):
            raise LogError(
                f"episode id {eid!r} is not usable as a file name; use letters, digits, "
                "'.', '_' and '-' (e.g. 's0007-e0003')"
            )
        open_path, final = self._paths(eid)
        if final.exists() or eid in self.manifest:
            raise LogError(f"episode {eid!r} already exists in {self.run_dir}; ids must be unique")
        if open_path.exists():
            raise LogError(
                f"{open_path} exists (an interrupted earlier write); use a new episode id"
            )
        self._fd = os.open(open_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fsync_dir(open_path.parent)
        self._episode, self._count, self._sha = eid, 0, hashlib.sha256()

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._sha.update(data)

    def _finish(self) -> Path:
        eid = self._episode
        assert eid is not None and self._fd is not None
        self._append(frame(_end_payload(eid, self._count)))
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        open_path, final = self._paths(eid)
        os.replace(open_path, final)
        fsync_dir(final.parent)
        self.manifest[eid] = {"file": f"{EPISODES_DIR}/{final.name}",
                              "sha256": self._sha.hexdigest(), "records": self._count,
                              "bytes": final.stat().st_size}
        self._episode = None
        self._write_manifest()
        return final
