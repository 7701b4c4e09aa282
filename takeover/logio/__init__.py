"""Crash-safe storage of intervention logs (``StepRecord`` / ``RunMeta``), built for
throughput: columnar chunks per episode and an append-only manifest journal (schema 2.0).

A run directory holds::

    meta.json               RunMeta (written atomically once)
    journal                 append-only: a header frame (run id, sha256 of meta.json), then
                            one frame per completed episode (file, sha256, record count)
    episodes/<id>.tkc       a completed episode
    episodes/<id>.tkc.open  an episode being written (left behind by a crash)

Schema 1.0 directories (``manifest.json`` rewritten after every episode, one frame per record
in ``episodes/<id>.rec``) are read by the same functions (``takeover.logio.v1``).

Every file is a sequence of frames ``MAGIC | length u32 | CRC32 u32 | payload``
(``takeover.logio.frames``). An episode file is a run of **chunk** frames followed by an
**end** frame. A chunk holds up to ``LogWriter.chunk_records`` records of one episode as one
binary array per field, zstd-compressed, with a JSON header naming the episode, the dtype,
shape and byte range of each column (``takeover.logio.chunks``); floats are stored as their
bytes, so records round-trip bit for bit (NaN payloads, -0.0), never as text. The end frame
names the episode, the run and the record and chunk counts.

WHY: HACO keeps human data in memory until the end, HDF5 and Parquet files are unreadable
after a crash mid-write, and Minari buffers in a temp folder. Here an open episode is an
append-only stream of checksummed chunks, and a completed episode is durable the moment
``end_episode`` returns (end frame, fsync, atomic rename, directory fsync); its journal entry
is appended without an fsync (a lost entry leaves a self-validating episode the reader keeps
and reports as ``unlisted``). The journal replaces 1.0's manifest rewrite, which grew
quadratically. A reader resynchronises on the next ``MAGIC`` after a bad frame: it recovers
every intact chunk of a damaged file, counts the bad ones and never yields a torn, corrupted,
copied (naming another episode or run) or non-finite-action record as a complete episode.
Nothing read is executed (no pickle): logs may come from others.

Reading: ``read_log(dir)`` (a ``LogReadResult``: complete episodes as chunks, records built on
demand, everything else reported), ``read_columns(dir)`` (numpy arrays for training, see
``takeover.logio.columns``), ``iter_records(path)`` (records of a file or a run),
``find_logs(folder)`` (every log under a run folder).

Writing: ``LogWriter.write(record)`` (one ``StepRecord`` at a time), or the column path
``LogWriter.write_chunk(episode, chunk)`` / ``write_episodes([(episode, chunk), ...])`` with
a ``Chunk`` built from arrays (``chunk_from_columns``; the supervision engine's
``Episode.chunk``): no Python object per record, the same bytes on disk, the same records
read back.
"""

import os  # noqa: F401  (tests patch ``logio.os.write`` / ``logio.os.fsync``)

from takeover.logio.chunks import (
    Chunk,
    check_chunk,
    chunk_from_columns,
    chunks_from_records,
    decode_chunk,
    encode_chunk,
)
from takeover.logio.equality import records_equal
from takeover.logio.frames import (
    MAGIC,
    MAX_PAYLOAD,
    LogError,
    LogWriteError,
    SchemaVersionError,
    frame,
    scan_frames,
)
from takeover.logio.reader import (
    EPISODES_DIR,
    JOURNAL_FILE,
    META_FILE,
    OPEN_SUFFIX,
    SUFFIX,
    EpisodeFile,
    LogReadResult,
    find_logs,
    is_log_dir,
    iter_records,
    load_journal,
    load_meta,
    read_columns,
    read_episode_file,
    read_log,
    scan_bytes,
)
from takeover.logio.v1 import LogWriterV1, encode_record
from takeover.logio.writer import LogWriter

__all__ = [
    "EPISODES_DIR", "JOURNAL_FILE", "MAGIC", "MAX_PAYLOAD", "META_FILE", "OPEN_SUFFIX",
    "SUFFIX", "Chunk", "EpisodeFile", "check_chunk", "chunk_from_columns", "LogError", "LogReadResult", "LogWriteError",
    "LogWriter", "LogWriterV1", "SchemaVersionError", "chunks_from_records", "decode_chunk",
    "encode_chunk", "encode_record", "find_logs", "frame", "is_log_dir", "iter_records",
    "load_journal", "load_meta", "read_columns", "read_episode_file", "read_log", "records_equal",
    "scan_bytes", "scan_frames",
]
