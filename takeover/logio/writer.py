"""``LogWriter``: crash-safe, columnar, journaled writing of a run (layout in
``takeover.logio``)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from takeover.atomic import atomic_write_bytes, atomic_write_text, fsync_dir
from takeover.logio import chunks as ck
from takeover.logio import v1
from takeover.logio.frames import LogError, LogWriteError, frame
from takeover.logio.reader import (
    EPISODES_DIR,
    ID_RE,
    JOURNAL_FILE,
    META_FILE,
    OPEN_SUFFIX,
    SUFFIX,
    LogReadResult,
    _journal,
    _read_meta,
)
from takeover.records import SCHEMA_VERSION, RunMeta, StepRecord

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

CHUNK_BYTES = 16 << 20
"""A chunk is also written once its observations reach this size (image observations)."""


@dataclass
class _Open:
    """An episode being written: records not yet flushed, and the file once it exists."""

    eid: str
    buf: list[StepRecord] = field(default_factory=list)
    fd: int | None = None
    sha: hashlib._Hash = field(default_factory=hashlib.sha256)
    records: int = 0
    chunks: int = 0
    nbytes: int = 0  # observation bytes buffered
    flushed: float = field(default_factory=time.monotonic)


class LogWriter:
    """Append ``StepRecord``s to a run directory, one durable file per completed episode.

    Usage::

        with LogWriter(run_dir, meta) as log:
            for rec in episode_records:      # records of several episodes may interleave
                log.write(rec)               # (one open episode per world of a batch)
            log.end_episode(rec.episode)

    An episode opens with its first record. Records are buffered and written as a columnar
    chunk every ``chunk_records`` records or ``flush_seconds`` of wall time, whichever comes
    first, so a kill loses at most that much of an *open* episode (which is reported as
    incomplete, never mixed in). ``end_episode`` completes an episode: last chunk and end
    frame, fsync (``durable=True``), atomic rename, one journal entry; ``end_episodes`` does
    the same for several with one journal write. A kill -9 never loses a completed episode
    (the data is in the kernel); ``durable=True`` (default) also survives a power loss: the
    fsynced file is complete even if its rename or journal entry was not yet on disk (the
    directory and the journal are fsynced at ``close``), and the reader keeps a ``.open``
    file whose end frame is valid as a complete, unlisted episode. ``durable=False`` skips
    the per-episode fsync (0.3-8 ms on a shared disk): after a power loss the last episodes
    may be reported damaged, never read as intact. An episode still
    open at ``close()`` stays on disk as ``*.tkc.open``. Opening an existing 2.x run directory
    appends to it (same ``run_id`` required). Any ``OSError`` (e.g. disk full) raises
    ``LogWriteError`` and leaves earlier episodes intact; the writer then refuses writes.
    A record the log cannot hold (an array in ``info``, a non-string ``controller``) raises
    ``LogError`` when its chunk is encoded; that episode is abandoned, the writer goes on.
    """

    def __init__(self, run_dir: str | os.PathLike, meta: RunMeta, *, chunk_records: int = 1024,
                 flush_seconds: float = 1.0, durable: bool = True) -> None:
        if not isinstance(meta, RunMeta):
            raise LogError(f"meta must be a takeover.records.RunMeta, got {type(meta).__name__}")
        if not (isinstance(chunk_records, int) and chunk_records >= 1):
            raise LogError(f"chunk_records must be an integer >= 1, got {chunk_records!r}")
        if not (flush_seconds >= 0):
            raise LogError(f"flush_seconds must be >= 0, got {flush_seconds!r}")
        self.run_dir = Path(run_dir)
        self.meta = meta
        self.chunk_records = chunk_records
        self.flush_seconds = float(flush_seconds)
        self.durable = bool(durable)
        self._open: dict[str, _Open] = {}
        self._listed: set[str] = set()
        self._jfd: int | None = None
        self._failed: str | None = None
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None
        self._guard("create the log directory", self._open_run)

    # -- setup
    def _open_run(self) -> None:
        (self.run_dir / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        journal = self.run_dir / JOURNAL_FILE
        if (self.run_dir / META_FILE).exists():
            old, _ = _read_meta(self.run_dir)
            if old.run_id != self.meta.run_id:
                raise LogError(
                    f"{self.run_dir} already holds run {old.run_id!r}, not {self.meta.run_id!r}; "
                    "pick a new directory to start a new run"
                )
            if not journal.exists():
                raise LogError(f"{self.run_dir} holds a schema 1.x log (no {JOURNAL_FILE}); "
                               "write new episodes to a new directory")
            res = LogReadResult(meta=None)
            listed, _ = _journal(self.run_dir, res)
            self._listed = set(listed)
        else:
            meta = asdict(self.meta) | {"schema_version": SCHEMA_VERSION}
            text = json.dumps(meta, indent=2, default=str)
            atomic_write_text(self.run_dir / META_FILE, text)
            head = {"v": SCHEMA_VERSION, "kind": "journal", "run_id": self.meta.run_id,
                    "meta_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
            atomic_write_bytes(journal, frame(json.dumps(head).encode("utf-8")))
        self._jfd = os.open(journal, os.O_WRONLY | os.O_APPEND)

    def _guard(self, what: str, fn, *args):
        """Run ``fn``; turn an ``OSError`` into a clear ``LogWriteError`` and stop writing."""
        try:
            return fn(*args)
        except OSError as e:
            self._failed = f"could not {what} in {self.run_dir}: {e.strerror or e}"
            self._abort_fds()
            hint = (" (disk full: free space, then start a new run directory)"
                    if e.errno == errno.ENOSPC else "")
            raise LogWriteError(
                e.errno or errno.EIO,
                f"{self._failed}{hint}; completed episodes already on disk are intact",
            ) from e

    def _abort_fds(self) -> None:
        for ep in self._open.values():
            if ep.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(ep.fd)
                ep.fd = None
        if self._jfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._jfd)
            self._jfd = None

    def _check_usable(self) -> None:
        if self._closed:
            raise LogError("this LogWriter is closed; open a new one to write more")
        if self._failed:
            raise LogError(f"this LogWriter failed earlier ({self._failed}); start a new one")

    # -- API
    @property
    def episode(self) -> str | None:
        """Id of the open episode when exactly one is open, else ``None``."""
        return next(iter(self._open)) if len(self._open) == 1 else None

    @property
    def open_episodes(self) -> tuple[str, ...]:
        return tuple(self._open)

    def write(self, record: StepRecord) -> None:
        """Buffer one record; its ``episode`` field opens that episode if it is not open."""
        self._check_usable()
        if type(record) is not StepRecord:
            raise LogError(f"expected a takeover.records.StepRecord, got {type(record).__name__}")
        ep = self._open.get(record.episode)
        if ep is None:
            ep = self._begin(record.episode)
        ep.buf.append(record)
        ep.nbytes += getattr(record.obs, "nbytes", 0)
        if len(ep.buf) >= self.chunk_records or ep.nbytes >= CHUNK_BYTES or \
                time.monotonic() - ep.flushed >= self.flush_seconds:
            self._guard("write records", self._flush, ep, b"")

    def write_chunk(self, episode: str, chunk: ck.Chunk) -> None:
        """Append ``chunk`` (rows of ``episode`` as columns, e.g. the engine's
        ``Episode.chunk``) to that episode, opening it if it is not open: the column path,
        no ``StepRecord`` per row. Records buffered for the episode are written first, so
        rows stay in order; a chunk longer than ``chunk_records`` is written as several."""
        self._check_usable()
        ck.check_chunk(chunk)
        ep = self._open.get(episode)
        if ep is None:
            ep = self._begin(episode)
        parts = ck.split_chunk(chunk, self.chunk_records, CHUNK_BYTES)
        self._guard("write records", self._flush, ep, b"", parts)

    def write_episodes(self, episodes) -> list[Path]:
        """Write whole episodes given as ``(episode id, chunk)`` pairs (the engine's
        ``Episode.chunk``) or ``(episode id, records)`` (a list of ``StepRecord``), and make
        them durable at once (``write_chunk`` then ``end_episodes``: one journal write, the
        fsyncs run together; no per-record ``write`` call)."""
        todo = []  # every episode checked before any is written
        for eid, rows in episodes:
            if isinstance(rows, ck.Chunk):
                todo.append((eid, [rows]))
                continue
            rows = list(rows)
            chunks = ck.chunks_from_records(rows)
            if not chunks:
                raise LogError(f"episode {eid!r} has no records; an episode holds at least one")
            other = next((r.episode for r in rows if r.episode != eid), None)
            if other is not None:
                raise LogError(f"episode {eid!r} holds a record of episode {other!r}; give "
                               "each episode's records under its own id")
            todo.append((eid, chunks))
        for eid, chunks in todo:
            for c in chunks:
                self.write_chunk(eid, c)
        return self.end_episodes([eid for eid, _ in todo])

    def end_episode(self, episode: str | None = None) -> Path:
        """Make an open episode durable and return its path (``episode`` may be omitted
        when only one is open)."""
        self._check_usable()
        if episode is None:
            if len(self._open) != 1:
                raise LogError("no episode is open: write() at least one record first"
                               if not self._open else
                               f"{len(self._open)} episodes are open; name the one to end")
            episode = next(iter(self._open))
        return self.end_episodes([episode])[0]

    def end_episodes(self, episodes) -> list[Path]:
        """Make several open episodes durable at once (one directory fsync, one journal
        write: what a batch of worlds finishing together wants)."""
        self._check_usable()
        eps = []
        for eid in episodes:
            if eid not in self._open:
                raise LogError(f"episode {eid!r} is not open; write() its records first")
            eps.append(self._open[eid])
        return self._guard("finish an episode", self._finish, eps)

    def close(self) -> None:
        """Flush what is buffered (open episodes stay ``*.tkc.open``, reported incomplete),
        fsync the journal and close every file. Never raises."""
        if self._closed:
            return
        self._closed = True
        if not self._failed:
            for ep in list(self._open.values()):
                with contextlib.suppress(OSError, LogError):
                    if ep.buf:
                        self._flush(ep, b"")
            with contextlib.suppress(OSError):
                fsync_dir(self.run_dir / EPISODES_DIR)
                if self._jfd is not None:
                    os.fsync(self._jfd)
        self._abort_fds()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals
    def _paths(self, eid: str) -> tuple[Path, Path]:
        d = self.run_dir / EPISODES_DIR
        return d / (eid + OPEN_SUFFIX), d / (eid + SUFFIX)

    def _begin(self, eid: str) -> _Open:
        if not isinstance(eid, str) or not ID_RE.match(eid):
            raise LogError(
                f"episode id {eid!r} is not usable as a file name; use letters, digits, "
                "'.', '_' and '-' (e.g. 's0007-e0003'), at most 128 characters"
            )
        open_path, final = self._paths(eid)
        d = self.run_dir / EPISODES_DIR
        if eid in self._listed or final.exists() or (d / (eid + v1.SUFFIX)).exists():
            raise LogError(f"episode {eid!r} already exists in {self.run_dir}; ids must be unique")
        if open_path.exists():
            raise LogError(f"{open_path} exists (an interrupted earlier write); use a new "
                           "episode id")
        ep = self._open[eid] = _Open(eid)
        return ep

    def _append(self, ep: _Open, data: bytes) -> None:
        if ep.fd is None:
            ep.fd = os.open(self._paths(ep.eid)[0],
                            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(ep.fd, view):]
        ep.sha.update(data)

    def _flush(self, ep: _Open, tail, extra: Sequence[ck.Chunk] = ()) -> None:
        """Write the buffered records, then the ``extra`` chunks, as chunk frames (plus
        ``tail``) in one ``os.write``."""
        recs, ep.buf, ep.nbytes = ep.buf, [], 0
        try:
            chunks = ck.chunks_from_records(recs) + list(extra)
            data = b"".join([frame(ck.encode_chunk(c, ep.eid)) for c in chunks])
        except LogError as e:
            self._abandon(ep)
            raise LogError(f"episode {ep.eid}: {e}; the episode was abandoned (its file stays "
                           "incomplete)") from None
        ep.records += sum(c.n for c in chunks)
        ep.chunks += len(chunks)
        if data or tail:
            self._append(ep, data + (tail(ep) if callable(tail) else tail))
        ep.flushed = time.monotonic()

    def _fsync(self, fds: list[int]) -> None:
        """fsync every file; several at once from threads (fsync releases the GIL, and a
        journaling file system commits concurrent fsyncs together: one disk flush for a
        batch of worlds ending in the same step, not one each)."""
        if len(fds) == 1:
            os.fsync(fds[0])
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="takeover-fsync")
        for f in [self._pool.submit(os.fsync, fd) for fd in fds]:
            f.result()  # re-raises the first OSError (disk full, I/O error)

    def _abandon(self, ep: _Open) -> None:
        if ep.fd is not None:
            with contextlib.suppress(OSError):
                os.close(ep.fd)
        del self._open[ep.eid]

    def _end_frame(self, ep: _Open) -> bytes:
        head = {"v": SCHEMA_VERSION, "kind": "end", "episode": ep.eid,
                "run_id": self.meta.run_id, "records": ep.records, "chunks": ep.chunks}
        js = json.dumps(head).encode("utf-8")
        return frame(len(js).to_bytes(4, "little") + js)

    def _finish(self, eps: list[_Open]) -> list[Path]:
        entries, paths = [], []
        for ep in eps:
            self._flush(ep, self._end_frame)
        if self.durable:
            self._fsync([cast(int, ep.fd) for ep in eps])
        for ep in eps:
            os.close(cast(int, ep.fd))
            ep.fd = None
            open_path, final = self._paths(ep.eid)
            os.replace(open_path, final)
            entries.append({"v": SCHEMA_VERSION, "kind": "episode", "episode": ep.eid,
                            "file": f"{EPISODES_DIR}/{final.name}",
                            "sha256": ep.sha.hexdigest(), "records": ep.records})
            paths.append(final)
        data = b"".join(frame(json.dumps(e).encode("utf-8")) for e in entries)
        view = memoryview(data)
        while view:
            view = view[os.write(cast(int, self._jfd), view):]
        for ep in eps:
            del self._open[ep.eid]
            self._listed.add(ep.eid)
        return paths
