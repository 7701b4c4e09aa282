"""Reading a run directory: recover what can be recovered, report the rest, never raise on
damage (see ``takeover.logio`` for the layout)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np

from takeover.logio import chunks as ck
from takeover.logio import v1
from takeover.logio.frames import LogError, SchemaVersionError, check_version, scan_frames
from takeover.records import RunMeta, StepRecord

SUFFIX = ".tkc"
OPEN_SUFFIX = ".tkc.open"
META_FILE = "meta.json"
JOURNAL_FILE = "journal"
EPISODES_DIR = "episodes"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_META_TYPES = {"run_id": str, "seed": int, "config": dict, "versions": dict, "git_rev": str,
               "git_dirty": bool, "created": str, "schema_version": str}


# ---------------------------------------------------------------- one episode file


@dataclass
class EpisodeFile:
    """What could be recovered from one episode file (either schema).

    Attributes:
        chunks: the intact chunks, in file order (a 1.0 file's records as one chunk).
        named: every episode id the file's frames name (a copied file names another).
        dropped: damaged stretches of bytes (each counts once), or 1 when frames are
            missing without a trace (the end frame's count is larger than what was found).
        ended: a valid end frame whose counts match what was recovered, and no damage.
        torn_tail: the file ends inside a damaged frame (what a kill mid-write leaves).
        run_id: the run the end frame names (2.0), ``None`` if unknown.
    """

    chunks: list[ck.Chunk] = field(default_factory=list)
    named: set[str] = field(default_factory=set)
    dropped: int = 0
    ended: bool = False
    torn_tail: bool = False
    run_id: str | None = None
    _v1: list[StepRecord] | None = None

    @property
    def n(self) -> int:
        return sum(c.n for c in self.chunks)

    @property
    def records(self) -> list[StepRecord]:
        if self._v1 is not None:
            return self._v1
        eid = next(iter(self.named), "")
        return [r for c in self.chunks for r in ck.chunk_records(c, eid)]


def _decode(payload: memoryview) -> tuple[str, Any]:
    head, blob = ck.parse_header(payload)
    kind = head.get("kind")
    if kind == "chunk":
        if not isinstance(head.get("episode"), str):
            raise ValueError("chunk names no episode")
        return "chunk", (head["episode"], ck.decode_chunk(head, blob))
    if kind == "step":
        return "step", v1.decode_record(head, blob)
    if kind == "end":
        if not (isinstance(head.get("episode"), str) and ck._is_len(head.get("records"),
                                                                    1 << 40)):
            raise ValueError("bad end frame")
        return "end", head
    raise ValueError(f"unknown frame kind {kind!r}")


def scan_bytes(data: bytes) -> EpisodeFile:
    """Recover every intact chunk (or 1.0 record) from the bytes of one episode file."""
    items, damaged, torn = scan_frames(data, _decode)
    out = EpisodeFile(dropped=damaged, torn_tail=torn)
    steps, end = [], None
    for kind, obj in items:
        if kind == "chunk":
            out.named.add(obj[0])
            out.chunks.append(obj[1])
        elif kind == "step":
            out.named.add(obj.episode)
            steps.append(obj)
        else:
            out.named.add(obj["episode"])
            end = obj
    if steps:
        out._v1 = steps
        out.chunks.extend(ck.chunks_from_records(steps))
    if end is not None:
        n = len(steps) if steps else out.n
        if end["records"] > n and not damaged:
            out.dropped = 1
        want_chunks = end.get("chunks", len(out.chunks) if steps else None)
        out.ended = bool(end["records"] == n and out.dropped == 0
                         and (steps or want_chunks == len(out.chunks)))
        rid = end.get("run_id")
        out.run_id = rid if isinstance(rid, str) else None
    return out


def read_episode_file(path: str | os.PathLike) -> EpisodeFile:
    return scan_bytes(Path(path).read_bytes())


# ---------------------------------------------------------------- a run


@dataclass
class LogReadResult:
    """A run directory as recovered by ``read_log``.

    Attributes:
        meta: the run's metadata (``None`` if ``meta.json`` is missing or unreadable).
        chunks: complete, intact episodes by id, as columnar chunks (safe to learn from).
        partial_chunks: what was recovered of incomplete or damaged episodes, by id.
        incomplete: ids of episodes that never ended (the writer was interrupted).
        damaged: ids of episodes that are corrupt, missing, fail their sha256, name another
            episode or run (a copied file), or hold a non-finite human or executed action.
        dropped: damaged frames skipped over all files.
        unlisted: complete, intact episodes the journal (or 1.0 manifest) does not list: the
            writer was killed between renaming the episode into place and journaling it. The
            file validates itself (per-chunk CRC, end frame naming the run), so it is kept;
            the run counts as interrupted.
        problems: one human-readable line per damage found.
        schema: ``"2"`` (journal), ``"1"`` (manifest.json) or ``""`` (neither found).
    """

    meta: RunMeta | None
    chunks: dict[str, list[ck.Chunk]] = field(default_factory=dict)
    partial_chunks: dict[str, list[ck.Chunk]] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    dropped: int = 0
    unlisted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    schema: str = ""

    @cached_property
    def episodes(self) -> dict[str, list[StepRecord]]:
        """Complete, intact episodes as ``StepRecord`` lists (built on first use)."""
        return {e: [r for c in cs for r in ck.chunk_records(c, e)] for e, cs in self.chunks.items()}

    @cached_property
    def partial(self) -> dict[str, list[StepRecord]]:
        """Records recovered from incomplete or damaged episodes, kept apart."""
        return {e: [r for c in cs for r in ck.chunk_records(c, e)]
                for e, cs in self.partial_chunks.items()}

    @property
    def complete(self) -> list[str]:
        return list(self.chunks)

    @property
    def records(self) -> int:
        return sum(c.n for cs in (*self.chunks.values(), *self.partial_chunks.values())
                   for c in cs)

    @property
    def ok(self) -> bool:
        """No damage and nothing incomplete."""
        return not (self.incomplete or self.unlisted or self.damaged or self.dropped
                    or self.problems)

    @property
    def status(self) -> str:
        """``"ok"``, ``"interrupted"`` (only an unfinished or unjournaled episode: every
        completed one is intact) or ``"damaged"``."""
        if self.damaged or self.dropped or self.problems:
            return "damaged"
        return "interrupted" if (self.incomplete or self.unlisted) else "ok"

    def columns(self, by_episode: bool = False):
        """The complete episodes as arrays; see ``takeover.logio.columns.episode_columns``."""
        from takeover.logio.columns import log_columns

        return log_columns(self.chunks, by_episode)

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.meta.run_id if self.meta else None,
            "schema": self.schema,
            "status": self.status,
            "complete": len(self.chunks),
            "incomplete": len(self.incomplete),
            "damaged": len(self.damaged),
            "records": self.records,
            "dropped": self.dropped,
            "unlisted": len(self.unlisted),
            "incomplete_ids": list(self.incomplete),
            "damaged_ids": list(self.damaged),
            "unlisted_ids": list(self.unlisted),
            "problems": list(self.problems),
            "ok": self.ok,
        }


def _meta_from(data: Any, where: str) -> RunMeta:
    if not isinstance(data, dict):
        raise LogError(f"{where} does not hold a JSON object")
    check_version(data.get("schema_version", ""), where)
    known = {f.name for f in fields(RunMeta)}
    kw = {k: v for k, v in data.items() if k in known}
    for k, t in _META_TYPES.items():
        if k in kw and not (isinstance(kw[k], t) and not (t is int and isinstance(kw[k], bool))):
            raise LogError(f"{where}: field {k!r} is a {type(kw[k]).__name__}, expected "
                           f"{t.__name__}")
    if "run_id" not in kw or "seed" not in kw:
        raise LogError(f"{where}: 'run_id' and 'seed' are required")
    return RunMeta(**kw)


def load_meta(run_dir: str | os.PathLike) -> RunMeta:
    """``meta.json`` of a run; ``LogError`` naming what is wrong with it."""
    return _read_meta(Path(run_dir))[0]


def _read_meta(run_dir: Path) -> tuple[RunMeta, bytes]:
    path = run_dir / META_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LogError(f"{path} not found: is {run_dir} a takeover log directory?") from None
    except OSError as e:
        raise LogError(f"{path} cannot be read ({e.strerror or e})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise LogError(f"{path} is not valid JSON ({e})") from None
    return _meta_from(data, str(path)), raw


def _journal(run_dir: Path, res: LogReadResult) -> tuple[dict[str, dict], dict | None]:
    """Entries by episode id and the header of a 2.0 journal; damage goes to ``res``."""
    path = run_dir / JOURNAL_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        res.problems.append(f"{JOURNAL_FILE} cannot be read ({e.strerror or e})")
        return {}, None
    res.schema = "2"

    def decode(p: memoryview) -> dict:
        d = json.loads(bytes(p))
        if not isinstance(d, dict):
            raise ValueError("not an object")
        return d

    items, damaged, torn = scan_frames(data, decode)
    if items and items[0].get("kind") == "journal":
        try:
            check_version(items[0].get("v", ""), str(path))  # a newer log: say so
        except SchemaVersionError:
            raise
        except LogError as e:
            res.problems.append(str(e))
    if damaged > int(torn):
        res.problems.append(f"{JOURNAL_FILE}: {damaged - int(torn)} damaged entr(y/ies)")
    header = items[0] if items and items[0].get("kind") == "journal" else None
    if header is None or not isinstance(header.get("run_id"), str):
        res.problems.append(f"{JOURNAL_FILE} has no valid header (run id, meta.json sha256)")
        header = None
    entries: dict[str, dict] = {}
    for d in items[1 if header else 0:]:
        eid = d.get("episode")
        good = (d.get("kind") == "episode" and isinstance(eid, str) and ID_RE.match(eid)
                and d.get("file") == f"{EPISODES_DIR}/{eid}{SUFFIX}"
                and isinstance(d.get("sha256"), str) and _SHA_RE.match(d["sha256"])
                and ck._is_len(d.get("records"), 1 << 40))
        if not good:
            res.problems.append(f"{JOURNAL_FILE}: malformed entry {json.dumps(d)[:120]}")
        elif eid in entries:
            res.problems.append(f"{JOURNAL_FILE}: episode {eid} journaled twice")
        else:
            entries[cast(str, eid)] = d  # good checked isinstance(eid, str)
    return entries, header


def _manifest(run_dir: Path, res: LogReadResult) -> tuple[dict[str, dict], str | None]:
    """Entries and run id of a 1.0 ``manifest.json``; structural damage goes to ``res``."""
    path = run_dir / v1.MANIFEST_FILE
    if not path.exists():
        return {}, None
    res.schema = res.schema or "1"
    try:
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("episodes", {}), dict):
            raise ValueError("not an object with an 'episodes' object")
        check_version(data.get("schema_version", ""), str(path))
    except SchemaVersionError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, LogError) as e:
        res.problems.append(f"manifest.json unreadable ({e}); checking episode files alone")
        return {}, None
    entries = {}
    for eid, d in data.get("episodes", {}).items():
        if isinstance(d, dict) and isinstance(d.get("sha256"), str):
            entries[eid] = d
        else:
            res.problems.append(f"manifest.json: malformed entry for episode {eid!r}")
    rid = data.get("run_id")
    return entries, rid if isinstance(rid, str) else None


def is_log_dir(path: Path) -> bool:
    """``path`` looks like a run directory of a log (meta, journal, manifest or episodes)."""
    return path.is_dir() and any((path / n).exists() for n in
                                 (META_FILE, JOURNAL_FILE, v1.MANIFEST_FILE, EPISODES_DIR))


def find_logs(folder: str | os.PathLike) -> list[Path]:
    """Every log directory at or under ``folder`` (a log's own folders are not searched)."""
    folder = Path(folder)
    if is_log_dir(folder):
        return [folder]
    out = []
    for root, dirs, _ in os.walk(folder):
        dirs.sort()
        for d in list(dirs):
            if is_log_dir(Path(root) / d):
                out.append(Path(root) / d)
                dirs.remove(d)
    return out


def _nonfinite_action(chunks: list[ck.Chunk]) -> str:
    for c in chunks:
        for f in ("human_action", "action"):
            a = c.cols.get(f)
            if a is not None and a.dtype.kind == "f" and not np.isfinite(a).all():
                return f"a non-finite {f.replace('_', ' ')} (never valid to learn from)"
    return ""


def read_log(run_dir: str | os.PathLike) -> LogReadResult:
    """Read a run directory (schema 2.x or 1.x), recovering what can be recovered.

    Raises ``LogError`` if ``run_dir`` is not a log and ``SchemaVersionError`` for a newer
    schema major version; damage of any kind never raises, it is reported in the result.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LogError(f"{run_dir} is not a directory; pass the run directory of a log")
    if not is_log_dir(run_dir):
        raise LogError(f"{run_dir} holds no log (no {META_FILE}, {JOURNAL_FILE} or "
                       f"{EPISODES_DIR}/); pass the run directory of a log")
    res = LogReadResult(meta=None)
    meta_raw = None
    try:
        res.meta, meta_raw = _read_meta(run_dir)
    except SchemaVersionError:
        raise
    except LogError as e:
        res.problems.append(str(e))
    listed, header = _journal(run_dir, res)
    old, old_run = _manifest(run_dir, res)
    run_id = header["run_id"] if header else old_run
    if res.meta is not None and run_id is not None and res.meta.run_id != run_id:
        res.problems.append(f"{META_FILE} names run {res.meta.run_id!r} but the "
                            f"{'journal' if header else 'manifest'} run {run_id!r}: "
                            f"{META_FILE} is from another run")
    elif header and meta_raw is not None and header.get("meta_sha256") != \
            hashlib.sha256(meta_raw).hexdigest():
        res.problems.append(f"{META_FILE} is not the one this log was written with (its sha256 "
                            "differs from the journal's): edited or copied from another run")
    run_id = run_id or (res.meta.run_id if res.meta else None)
    listed = {**{e: d for e, d in old.items()}, **listed}
    ep_dir = run_dir / EPISODES_DIR
    try:
        files = sorted(ep_dir.iterdir()) if ep_dir.is_dir() else []
    except OSError as e:
        files = []
        res.problems.append(f"{EPISODES_DIR}/ cannot be listed ({e.strerror or e})")
    if ep_dir.exists() and not ep_dir.is_dir():
        res.problems.append(f"{EPISODES_DIR} is not a directory")
    seen: dict[str, str] = {}  # eid -> sha256, to catch copies
    shas: dict[str, str] = {}
    for f in files:
        name = f.name
        suffix = next((s for s in (OPEN_SUFFIX, v1.OPEN_SUFFIX, SUFFIX, v1.SUFFIX)
                       if name.endswith(s)), None)
        if suffix is None:
            continue
        eid, is_open = name[: -len(suffix)], suffix.endswith(".open")
        if not f.is_file():
            res.damaged.append(eid)
            res.problems.append(f"episode {eid}: {EPISODES_DIR}/{name} is not a file")
            continue
        try:
            data = f.read_bytes()
        except OSError as e:
            res.damaged.append(eid)
            res.problems.append(f"episode {eid}: {name} cannot be read ({e.strerror or e})")
            continue
        got = scan_bytes(data)
        foreign = sorted(got.named - {eid})
        bad = []
        if foreign:
            bad.append(f"its records name episode {foreign[0]!r} (a copied file?)")
        if got.run_id is not None and run_id is not None and got.run_id != run_id:
            bad.append(f"it was written by run {got.run_id!r} (a copied file?)")
        if is_open and got.ended and not bad and eid not in seen:
            is_open = False  # finished and fsynced; only the rename was lost (power loss)
            listed.pop(eid, None)
            bad_rename = True
        else:
            bad_rename = False
        if is_open:
            res.incomplete.append(eid)
            res.partial_chunks[eid] = got.chunks
            res.dropped += got.dropped - int(got.torn_tail)  # the kill's torn frame: expected
            if bad:
                res.problems.append(f"episode {eid} (incomplete): " + "; ".join(bad))
            continue
        sha = hashlib.sha256(data).hexdigest()
        entry = listed.get(eid)
        res.dropped += got.dropped
        if eid in seen:
            bad.append(f"a second file for the same episode ({name})")
        if sha in shas and not foreign:
            bad.append(f"a byte-for-byte copy of episode {shas[sha]}")
        if entry is not None and entry.get("sha256") != sha:
            bad.append("sha256 mismatch with the " + ("journal" if header else "manifest"))
        if not got.ended:
            bad.append(f"{got.dropped} damaged frame(s)" if got.dropped else "no valid end frame")
        if not bad and (why := _nonfinite_action(got.chunks)):
            bad.append(why)
        if bad:
            res.damaged.append(eid)
            res.partial_chunks[eid] = got.chunks
            res.problems.append(f"episode {eid}: " + "; ".join(bad))
        else:
            res.chunks[eid] = got.chunks
            if entry is None or bad_rename:
                res.unlisted.append(eid)
        seen[eid] = sha
        shas.setdefault(sha, eid)
    for eid in listed:
        if eid not in seen and eid not in res.damaged:
            res.damaged.append(eid)
            res.problems.append(f"episode {eid}: listed but its file is missing")
    return res


def iter_records(path: str | os.PathLike):
    """Intact records of one episode file, or of every complete episode of a run dir."""
    path = Path(path)
    if path.is_dir():
        for recs in read_log(path).episodes.values():
            yield from recs
    else:
        yield from read_episode_file(path).records


def read_columns(path: str | os.PathLike, by_episode: bool = False):
    """Every complete, intact episode of the log at ``path`` as numpy arrays (the fast
    reader for training); see ``takeover.logio.columns`` for the keys. Damaged and
    incomplete episodes are left out, as in ``read_log(path).episodes``; check
    ``read_log(path).status`` to learn about them."""
    return read_log(path).columns(by_episode)


def load_journal(run_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The journal's valid entries by episode id (``file``, ``sha256``, ``records``); damage
    is skipped here and reported by ``read_log``."""
    return _journal(Path(run_dir), LogReadResult(meta=None))[0]
