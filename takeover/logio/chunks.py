"""Columnar chunks: a run of one episode's records as one array per field, and their bytes.

A chunk payload is ``u32 header length | JSON header | zstd(blob)``. The header names the
episode, the row count, and for every column its dtype, shape and byte range in the
decompressed blob; strings are stored as a vocabulary in the header plus integer codes;
optional arrays (``member_actions``, ``human_action``, ``terminal_obs``, ``human_intent``) as
a presence mask plus the present rows only (a chunk written before ``human_intent`` existed
has no mask for it, which reads as no row present); the ``(n,)`` columns of one dtype (the
float fields, scores and float info values; the flags; ...) travel as one ``(n, k)`` group
array, listed by name in ``groups``. Floats are stored as their IEEE-754 bytes, so a record round-trips bit for bit
(NaN payloads, -0.0). Nothing read is executed: dtypes come from a fixed list, and every
size, offset and code is checked before use (a forged header is damage, never a crash).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from takeover.logio.frames import LogError, check_version
from takeover.logio.v1 import DTYPES, tag_scalar, untag_scalar
from takeover.records import SCHEMA_VERSION, StepRecord

F8 = ("time", "wall_time", "threshold", "tor_time", "takeover_time", "reward", "hazard_onset")
B1 = ("gate_request", "terminated", "truncated", "hazard_fired", "mrm", "score_nonfinite")
STR = ("controller", "phase", "transition", "reason", "outcome")
ARR = ("obs", "agent_action", "action")
OPT = ("member_actions", "human_action", "terminal_obs", "human_intent")
LATER = frozenset({"human_intent"})
"""Optional fields added after chunks were first written: a chunk without the field's
presence mask (an older log, or a caller that never heard of it) has no row of it."""
MAX_ROWS = 1 << 20
MAX_RAW = 256 << 20
"""Chunks claiming more rows or decompressed bytes are damage (guards a forged header)."""

_MISSING = object()
_FLOAT_T = frozenset({float, np.float64, np.float32, np.float16})
_BOOL_T = frozenset({bool, np.bool_})
_INT_T = frozenset({int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                    np.uint32, np.uint64})
_INFO_KINDS = frozenset("fbisnt")
_codec = None


def _zstd():
    """pyarrow's zstd (a dependency already): ~4x faster than zlib at a better ratio."""
    global _codec
    if _codec is None:
        import pyarrow as pa

        _codec = pa.Codec("zstd", compression_level=1)
    return _codec


@dataclass
class Chunk:
    """``n`` records of one episode as columns (see the module docstring).

    Attributes:
        n: rows.
        cols: name -> array; fixed fields ``(n, ...)``; an optional array ``name`` holds the
            present rows only and ``name + "?"`` is its ``(n,)`` presence mask; strings are
            ``(n,)`` codes into ``vocab[name]``; scores are ``"score." + key``, info values
            ``"info." + key`` (present rows only when ``"score?"``/``"info?" + key`` exists).
        vocab: string field -> its values.
        scores: ``(key, has_mask)`` in order.
        info: ``(key, kind, has_mask)`` in order; kind is ``f`` float, ``b`` bool, ``i``
            int, ``s`` string (codes into ``vocab["info." + key]``), ``n`` None, ``t`` mixed
            (tagged values in ``tagged[key]``).
    """

    n: int
    cols: dict[str, np.ndarray]
    vocab: dict[str, list[str]] = field(default_factory=dict)
    scores: list[tuple[str, bool]] = field(default_factory=list)
    info: list[tuple[str, str, bool]] = field(default_factory=list)
    tagged: dict[str, list] = field(default_factory=dict)


# ---------------------------------------------------------------- records -> chunks


def chunks_from_records(records: Sequence[StepRecord]) -> list[Chunk]:
    """Records (of one episode) as chunks; a new chunk starts where an array's shape or dtype
    changes, so every column of a chunk is one array."""
    if not records:
        return []
    for r in records:
        if not isinstance(r, StepRecord):
            raise LogError(f"expected a takeover.records.StepRecord, got {type(r).__name__}")
    try:
        return [_build(records)]
    except _NotUniform:
        pass
    recs = [_normalised(r) for r in records]
    sigs = [tuple(None if (a := getattr(r, f)) is None else (a.shape, a.dtype.str)
                  for f in ARR + OPT) for r in recs]
    out, start = [], 0
    for i in range(1, len(recs) + 1):
        if i == len(recs) or sigs[i] != sigs[start]:
            out.append(_build(recs[start:i]))
            start = i
    return out


class _NotUniform(Exception):
    """An array field changes shape or dtype within the records (split into chunks)."""


def _stack(vals: list) -> np.ndarray:
    """``vals`` (arrays of one shape and dtype) as one array, else ``_NotUniform``."""
    try:
        dtypes = set(map(attrgetter("dtype"), vals))
        out = np.stack(vals)
    except (AttributeError, ValueError):
        raise _NotUniform from None
    if len(dtypes) != 1 or out.dtype.str not in DTYPES:
        raise _NotUniform
    return out


def _normalised(r: StepRecord) -> StepRecord:
    change: dict[str, Any] = {}
    for f in ARR + OPT:
        a = getattr(r, f)
        if a is None:
            if f in ARR:
                raise LogError(f"record field {f!r} is None; it must be an array")
            continue
        b = np.asarray(a)
        if b.dtype.byteorder == ">":
            b = b.astype(b.dtype.newbyteorder("<"))
        if b.dtype.str not in DTYPES:
            raise LogError(f"record field {f!r} has dtype {b.dtype}; logs store numeric arrays "
                           "only (use float32 actions via takeover.records.as_action_array)")
        if b is not a:
            change[f] = b
    return replace(r, **change) if change else r


def _strings(vals: Sequence, where: str) -> tuple[np.ndarray, list[str]]:
    """``(codes, vocabulary)`` of a string column (str subclasses such as str enums are
    stored as their plain value)."""
    try:
        vocab = {v: i for i, v in enumerate(dict.fromkeys(vals))}
    except TypeError:
        vocab = {}
    if len(vocab) == 0 and len(vals) or not all(isinstance(k, str) for k in vocab):
        bad = next(v for v in vals if not isinstance(v, str))
        raise LogError(f"{where} is a {type(bad).__name__}; it must be a string")
    dt = np.uint8 if len(vocab) <= 256 else np.uint32
    codes = np.fromiter(map(vocab.__getitem__, vals), dt, len(vals))
    return codes, [str.__str__(k) for k in vocab]


def _matrix(rows: list, dtype, names: Sequence[str], where: str) -> np.ndarray:
    try:
        return np.array(rows, dtype).reshape(len(rows), len(names))
    except (TypeError, ValueError, OverflowError):
        for j, name in enumerate(names):
            col = [r[j] for r in rows] if len(names) > 1 else rows
            try:
                np.array(col, dtype)
            except (TypeError, ValueError, OverflowError):
                raise LogError(f"{where.format(name)} holds a value that is not a "
                               f"{np.dtype(dtype).name}") from None
        raise


def _build(recs: Sequence[StepRecord]) -> Chunk:
    """One chunk; ``_NotUniform`` if an array field changes shape or dtype."""
    n = len(recs)
    c = Chunk(n=n, cols={})
    cols = c.cols
    try:
        cols["step"] = np.array(list(map(attrgetter("step"), recs)), np.int64)
    except (TypeError, ValueError, OverflowError):
        raise LogError("record field 'step' must be an integer") from None
    m = _matrix(list(map(attrgetter(*F8), recs)), np.float64, F8, "record field {!r}")
    for j, f in enumerate(F8):
        cols[f] = m[:, j]
    m = np.array(list(map(attrgetter(*B1), recs)), np.bool_).reshape(n, len(B1))
    for j, f in enumerate(B1):
        cols[f] = m[:, j]
    for f, col in zip(STR, zip(*map(attrgetter(*STR), recs)), strict=True):
        cols[f], c.vocab[f] = _strings(col, f"record field {f!r}")
    for f in ARR:
        cols[f] = _stack(list(map(attrgetter(f), recs)))
    for f in OPT:
        vals = list(map(attrgetter(f), recs))
        mask = cols[f + "?"] = np.fromiter((a is not None for a in vals), np.bool_, n)
        if mask.all():
            cols[f] = _stack(vals)
        elif mask.any():
            cols[f] = _stack([a for a in vals if a is not None])
    _dicts(c, list(map(attrgetter("scores"), recs)), "score")
    _dicts(c, list(map(attrgetter("info"), recs)), "info")
    return c


def _dicts(c: Chunk, dicts: list[dict], prefix: str) -> None:
    """Scores or info dicts as columns, keys in first-seen order. Fast path: every dict has
    the first one's keys (one ``itemgetter`` pass); else per key with a presence mask."""
    keys = list(dicts[0])
    rows = None
    if keys and sum(map(len, dicts)) == len(keys) * len(dicts):
        try:
            rows = list(map(itemgetter(*keys), dicts))
        except KeyError:
            rows = None
    if not keys and not any(dicts):
        return
    if rows is None:  # keys differ between steps
        for k in dict.fromkeys(k for d in dicts for k in d):
            _dict_column(c, prefix, k, [d.get(k, _MISSING) for d in dicts], True)
        return
    if len(keys) == 1:
        rows = [(v,) for v in rows]
    if prefix == "score":
        m = _matrix(rows, np.float64, [str(k) for k in keys], "scores[{!r}]")
        for j, k in enumerate(keys):
            c.cols[f"score.{k}"] = m[:, j]
            c.scores.append((str(k), False))
        return
    for k, col in zip(keys, zip(*rows), strict=True):
        _dict_column(c, prefix, k, col, False)


def _dict_column(c: Chunk, prefix: str, key: Any, vals: Sequence, gaps: bool) -> None:
    """One key's column; ``gaps``: ``vals`` may hold ``_MISSING`` (the key is absent)."""
    key = str(key)
    where = f"{'scores' if prefix == 'score' else 'info'}[{key!r}]"
    present = [v for v in vals if v is not _MISSING] if gaps else vals
    masked = len(present) != len(vals)
    if masked:
        c.cols[f"{prefix}?{key}"] = np.fromiter((v is not _MISSING for v in vals), np.bool_,
                                                len(vals))
    name = f"{prefix}.{key}"
    if prefix == "score":
        c.cols[name] = _matrix(list(present), np.float64, [key], "scores[{!r}]")[:, 0]
        c.scores.append((key, masked))
        return
    ts = set(map(type, present))
    kind = "t"
    if ts <= _FLOAT_T:
        kind, c.cols[name] = "f", np.array(present, np.float64)
    elif ts <= _BOOL_T:
        kind, c.cols[name] = "b", np.array(present, np.bool_)
    elif ts <= _INT_T:
        try:
            kind, c.cols[name] = "i", np.array(present, np.int64)
        except OverflowError:
            pass
    elif all(issubclass(t, str) for t in ts):
        kind = "s"
        c.cols[name], c.vocab[name] = _strings(present, where)
    elif ts == {type(None)}:
        kind = "n"
    if kind == "t":
        c.tagged[key] = [tag_scalar(v, where) for v in present]
    c.info.append((key, kind, masked))


# ---------------------------------------------------------------- chunk <-> bytes


def encode_chunk(c: Chunk, episode: str) -> bytes:
    """The payload bytes of one chunk (see the module docstring). The ``(n,)`` columns of
    one dtype travel as one ``(n, k)`` array (a group), so a chunk has a dozen arrays, not
    sixty, whatever the number of info keys."""
    groups: dict[str, list[str]] = {}
    specs, blobs, off = {}, [], 0
    for name, a in c.cols.items():
        if a.ndim == 1 and len(a) == c.n:
            groups.setdefault(a.dtype.str, []).append(name)
    arrays = [(f"/{dt}", np.stack([c.cols[x] for x in names], axis=1))
              for dt, names in groups.items()]
    grouped = {x for names in groups.values() for x in names}
    arrays += [(name, a) for name, a in c.cols.items() if name not in grouped]
    for name, a in arrays:
        a = np.ascontiguousarray(a)
        specs[name] = [a.dtype.str, list(a.shape[1:]), off, a.nbytes]
        blobs.append(a.data.cast("B") if a.nbytes else b"")
        off += a.nbytes
    raw = b"".join(blobs)
    head = {"v": SCHEMA_VERSION, "kind": "chunk", "episode": episode, "rows": c.n,
            "codec": "zstd", "raw": len(raw), "cols": specs, "groups": groups,
            "vocab": c.vocab, "scores": c.scores, "info": c.info, "tagged": c.tagged}
    js = json.dumps(head, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return struct.pack("<I", len(js)) + js + _zstd().compress(raw, asbytes=True)


def parse_header(payload: memoryview) -> tuple[dict[str, Any], memoryview]:
    """A payload's JSON header (version-checked) and the bytes after it."""
    (n,) = struct.unpack_from("<I", payload, 0)
    if n > len(payload) - 4:
        raise ValueError("header length out of bounds")
    head = json.loads(bytes(payload[4:4 + n]))
    if not isinstance(head, dict):
        raise ValueError("payload header is not an object")
    check_version(head.get("v", ""), "record")
    return head, payload[4 + n:]


def _is_len(x: Any, hi: int) -> bool:
    return type(x) is int and 0 <= x <= hi


def decode_chunk(head: dict[str, Any], blob: memoryview) -> Chunk:
    """Inverse of ``encode_chunk``; every size and index is checked (``ValueError``)."""
    n, size = head["rows"], head["raw"]
    if not (_is_len(n, MAX_ROWS) and _is_len(size, MAX_RAW)) or head["codec"] != "zstd":
        raise ValueError("bad chunk header")
    raw = _zstd().decompress(bytes(blob), decompressed_size=size, asbytes=True)
    if len(raw) != size:
        raise ValueError("chunk blob has the wrong size")
    buf = bytearray(raw)  # writable arrays for the caller
    cols = {}
    for name, spec in head["cols"].items():
        dt, shape, off, nbytes = spec
        if dt not in DTYPES or not all(_is_len(x, MAX_RAW) for x in (*shape, off, nbytes)):
            raise ValueError(f"column {name}: bad spec")
        dtype = np.dtype(dt)
        per = math.prod(shape) * dtype.itemsize
        if off + nbytes > size or (per and nbytes % per) or (not per and nbytes):
            raise ValueError(f"column {name} out of bounds")
        rows = nbytes // per if per else n
        cols[name] = np.frombuffer(buf, dtype, rows * math.prod(shape), off).reshape(
            rows, *shape)
    for dt, names in head["groups"].items():
        g = cols.pop(f"/{dt}")
        if g.shape != (n, len(names)) or g.dtype.str != dt:
            raise ValueError(f"column group {dt} has the wrong shape")
        for j, name in enumerate(names):
            cols[str(name)] = g[:, j]
    for f in LATER:  # an older chunk: no row has the field
        if f + "?" not in cols and f not in cols:
            cols[f + "?"] = np.zeros(n, np.bool_)
    c = Chunk(n=n, cols=cols, vocab=head["vocab"], tagged=head["tagged"],
              scores=[(str(k), bool(m)) for k, m in head["scores"]],
              info=[(str(k), str(t), bool(m)) for k, t, m in head["info"]])
    _validate(c)
    return c


def presence(c: Chunk, f: str) -> np.ndarray:
    """The ``(n,)`` presence mask of optional field ``f`` (all False for a field of
    ``LATER`` the chunk has no mask for)."""
    m = c.cols.get(f + "?")
    return np.zeros(c.n, np.bool_) if m is None and f in LATER else c.cols[f + "?"]


def _rows(c: Chunk, name: str, rows: int) -> np.ndarray:
    a = c.cols.get(name)
    if a is None or len(a) != rows:
        raise ValueError(f"column {name} missing or of the wrong length")
    return a


def _codes(c: Chunk, name: str, rows: int) -> None:
    a, voc = _rows(c, name, rows), c.vocab.get(name)
    if not isinstance(voc, list) or not all(isinstance(s, str) for s in voc) or a.dtype.kind != "u":
        raise ValueError(f"strings {name}: bad vocabulary")
    if rows and int(a.max()) >= len(voc):
        raise ValueError(f"strings {name}: code out of range")


def _present(c: Chunk, mask_name: str, has_mask: bool) -> int:
    if not has_mask:
        return c.n
    m = _rows(c, mask_name, c.n)
    if m.dtype != np.bool_:
        raise ValueError(f"{mask_name} is not a mask")
    return int(m.sum())


def _validate(c: Chunk, decode_tagged: bool = True) -> None:
    """Every column a reader touches exists with the right length, every code is in range
    (``decode_tagged``: the tagged info values are read from a file, else they are the raw
    values of a chunk about to be written)."""
    n = c.n
    for f, kinds in (("step", "i"), *((f, "f") for f in F8), *((f, "b") for f in B1),
                     *((f, "fiub") for f in ARR)):
        if _rows(c, f, n).dtype.kind not in kinds:
            raise ValueError(f"column {f} has the wrong dtype")
    for f in STR:
        _codes(c, f, n)
    for f in OPT:
        if f in LATER and f + "?" not in c.cols and f not in c.cols:
            continue  # built before the field existed: no row has it
        m = _present(c, f + "?", True)
        if m:
            _rows(c, f, m)
        elif f in c.cols:
            raise ValueError(f"{f}: values without rows")
    for k, has in c.scores:
        _rows(c, f"score.{k}", _present(c, f"score?{k}", has))
    for k, kind, has in c.info:
        m = _present(c, f"info?{k}", has)
        if kind not in _INFO_KINDS:
            raise ValueError(f"info {k}: unknown kind {kind!r}")
        if kind in "fbi":
            _rows(c, f"info.{k}", m)
        elif kind == "s":
            _codes(c, f"info.{k}", m)
        elif kind == "t":
            vals = c.tagged.get(k)
            if not isinstance(vals, list) or len(vals) != m:
                raise ValueError(f"info {k}: tagged values missing")
            if decode_tagged:
                c.tagged[k] = [untag_scalar(v) for v in vals]


def check_chunk(c: Chunk) -> None:
    """``LogError`` naming the problem unless ``c`` is a well-formed chunk (what
    ``LogWriter.write_chunk`` accepts)."""
    if not isinstance(c, Chunk):
        raise LogError(f"expected a takeover.logio.Chunk, got {type(c).__name__}")
    if not (_is_len(c.n, MAX_ROWS) and c.n >= 1):
        raise LogError(f"a chunk holds 1..{MAX_ROWS} rows, got n={c.n!r}")
    for name, a in c.cols.items():
        if not isinstance(a, np.ndarray) or a.dtype.str not in DTYPES:
            raise LogError(f"chunk column {name!r} is not a numeric numpy array (dtype "
                           f"{getattr(a, 'dtype', type(a).__name__)})")
    try:
        _validate(c, decode_tagged=False)
    except (ValueError, KeyError, TypeError) as e:
        raise LogError(f"malformed chunk: {e}") from None


def _value_of(name: str) -> tuple[str, str] | None:
    """``(mask column, values column)`` when ``name`` is a presence mask, else ``None``."""
    if name.endswith("?"):
        return name, name[:-1]
    for prefix in ("score?", "info?"):
        if name.startswith(prefix):
            return name, prefix[:-1] + "." + name[len(prefix):]
    return None


def slice_chunk(c: Chunk, lo: int, hi: int) -> Chunk:
    """Rows ``lo:hi`` of ``c`` (masked columns keep their present rows in that range; the
    vocabularies are shared, their codes stay valid)."""
    cols: dict[str, np.ndarray] = {}
    ranges: dict[str, tuple[int, int]] = {}
    for name in c.cols:
        mv = _value_of(name)
        if mv is not None:
            m = c.cols[mv[0]]
            a0 = int(np.count_nonzero(m[:lo]))
            ranges[mv[1]] = (a0, a0 + int(np.count_nonzero(m[lo:hi])))
    for name, a in c.cols.items():
        a0, a1 = ranges.get(name, (lo, hi))
        if a1 > a0 or name not in OPT:  # an optional array without rows is absent
            cols[name] = a[a0:a1]
    tagged = {}
    for k, vals in c.tagged.items():
        a0, a1 = ranges.get(f"info.{k}", (lo, hi))
        tagged[k] = vals[a0:a1]
    return Chunk(n=hi - lo, cols=cols, vocab=c.vocab, scores=c.scores, info=c.info,
                 tagged=tagged)


def split_chunk(c: Chunk, rows: int, max_bytes: int) -> list[Chunk]:
    """``c`` as chunks of at most ``rows`` rows and about ``max_bytes`` of observations."""
    per = max(1, c.cols["obs"].nbytes // max(c.n, 1))
    step = max(1, min(rows, max_bytes // per))
    if c.n <= step:
        return [c]
    return [slice_chunk(c, lo, min(lo + step, c.n)) for lo in range(0, c.n, step)]


# ---------------------------------------------------------------- arrays -> a chunk


def plain_scalar(v: Any) -> Any:
    """A plain Python scalar or string, or ``None`` for anything else (what a record's
    ``info`` keeps)."""
    t = type(v)
    if t is float or t is int or t is bool or t is str:
        return v
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, str):
        return v
    return None


def coded(codes: np.ndarray, table: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Integer codes into ``table`` as a chunk's ``(codes, vocabulary)`` (the vocabulary
    holds the values that occur only)."""
    codes = np.asarray(codes, np.int64)
    used = np.zeros(len(table), np.bool_)
    used[codes] = True  # tables are short (a dozen names): no sort
    remap = np.cumsum(used) - 1
    u = np.flatnonzero(used).tolist()
    return remap[codes].astype(np.uint8 if len(u) <= 256 else np.uint32), [table[x] for x in u]


def _text(vals: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    if vals.dtype.kind == "U":
        u, inv = np.unique(vals, return_inverse=True)
        return inv.astype(np.uint8 if len(u) <= 256 else np.uint32), u.tolist()
    got = object_text(vals)
    return got if got is not None else _strings(vals.tolist(), where)


def object_text(vals: np.ndarray) -> tuple[np.ndarray, list[str]] | None:
    """``(codes, vocabulary)`` of an object array holding strings only (what a batched env's
    name columns are), sorted once per chunk rather than checked value by value; ``None``
    if it holds anything else."""
    if vals.dtype != object or vals.ndim != 1:
        return None
    items = vals.tolist()
    try:
        vocab = {v: i for i, v in enumerate(dict.fromkeys(items))}
    except TypeError:  # unhashable values
        return None
    if not all(isinstance(k, str) for k in vocab):
        return None
    dt = np.uint8 if len(vocab) <= 256 else np.uint32
    return np.fromiter(map(vocab.__getitem__, items), dt, len(items)), [str.__str__(k)
                                                                       for k in vocab]


def chunk_from_columns(cols: dict[str, Any], scores: dict[str, np.ndarray],
                       info: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> Chunk:
    """``n`` rows of one episode from arrays, field by field: the column path (no
    ``StepRecord`` per row). Its rows decode to the records ``chunks_from_records`` would
    store for the same values.

    Args:
        cols: ``step`` ``(n,)`` ints; every ``F8`` field ``(n,)`` float64; every ``B1``
            field ``(n,)`` bool; every ``STR`` field a ``(n,)`` str array or
            ``(codes (n,) ints, table)``; ``obs``, ``agent_action``, ``action``
            ``(n, ...)`` numeric; every ``OPT`` field as a chunk holds it: ``name + "?"``
            the ``(n,)`` presence mask, ``name`` the present rows (absent when none); a
            ``LATER`` field may be left out altogether (no row has it).
        scores: estimator name -> ``(n,)`` float64.
        info: key -> ``(values (n,), present (n,) bool or None)``; numeric, bool and str
            arrays are stored as such, object arrays value by value (``None`` = absent).
    """
    n = len(cols["step"])
    c = Chunk(n=n, cols={"step": np.asarray(cols["step"], np.int64)})
    out = c.cols
    for f in F8:
        out[f] = np.asarray(cols[f], np.float64)
    for f in B1:
        out[f] = np.asarray(cols[f], np.bool_)
    for f in STR:
        v = cols[f]
        out[f], c.vocab[f] = (coded(*v) if isinstance(v, tuple)
                              else _text(np.asarray(v), f"record field {f!r}"))
    for f in ARR:
        out[f] = np.asarray(cols[f])
    for f in OPT:
        mask = cols.get(f + "?") if f in LATER else cols[f + "?"]
        out[f + "?"] = (np.zeros(n, np.bool_) if mask is None
                        else np.asarray(mask, np.bool_))
        if f in cols and out[f + "?"].any():
            out[f] = np.asarray(cols[f])
    for k, v in scores.items():
        out[f"score.{k}"] = np.asarray(v, np.float64)
        c.scores.append((str(k), False))
    for k, (v, present) in info.items():
        _info_column(c, str(k), np.asarray(v), present)
    return c


def _info_column(c: Chunk, k: str, v: np.ndarray, present: np.ndarray | None) -> None:
    masked = present is not None and not present.all()
    if present is not None and not present.any():
        return  # never present: the records have no such key
    vals = v[present] if masked else v
    kind = v.dtype.kind
    if kind == "u" and len(vals) and int(vals.max()) > np.iinfo(np.int64).max:
        kind = "O"
    text = object_text(vals) if kind == "O" else None
    if text is not None:
        kind = "U"
    if kind in "fbiuU":
        if masked:
            assert present is not None  # masked implies present
            c.cols[f"info?{k}"] = present.astype(np.bool_)
        name = f"info.{k}"
        if kind == "f":
            c.cols[name] = vals.astype(np.float64)
        elif kind == "b":
            c.cols[name] = vals.astype(np.bool_)
        elif kind in "iu":
            c.cols[name] = vals.astype(np.int64)
        else:
            c.cols[name], c.vocab[name] = text or _text(vals, f"info[{k!r}]")
        c.info.append((k, "s" if kind == "U" else "i" if kind == "u" else kind, masked))
        return
    # anything else value by value, as the record path does (None: the key is absent)
    have = present if present is not None else np.ones(len(v), np.bool_)
    items = [plain_scalar(x) if h else None for x, h in zip(v.tolist(), have.tolist())]
    items = [_MISSING if x is None else x for x in items]
    if all(x is _MISSING for x in items):
        return
    _dict_column(c, "info", k, items, any(x is _MISSING for x in items))


# ---------------------------------------------------------------- chunk -> records / arrays

def _new_record(values: dict[str, Any]) -> StepRecord:
    """A ``StepRecord`` without its frozen ``__init__`` (28 ``object.__setattr__`` calls cost
    about 2 us a record); ``values`` holds every field, so the result is identical."""
    r = object.__new__(StepRecord)
    r.__dict__.update(values)
    return r


def _dict_rows(c: Chunk, prefix: str, entries: list[tuple[str, list, bool]]) -> list[dict]:
    """Per-row dicts from ``(key, present values, has_mask)`` columns."""
    if not entries:
        return [{} for _ in range(c.n)]
    names, cols, masked = [], [], False
    for k, vals, has in entries:
        if has:
            masked = True
            it = iter(vals)
            vals = [next(it) if m else _MISSING for m in c.cols[f"{prefix}?{k}"].tolist()]
        names.append(k)
        cols.append(vals)
    if masked:
        return [{k: v for k, v in zip(names, row) if v is not _MISSING} for row in zip(*cols)]
    return [dict(zip(names, row)) for row in zip(*cols)]


def info_values(c: Chunk, k: str, kind: str, has: bool) -> list:
    """The present values of info key ``k`` as Python scalars."""
    if kind in "fbi":
        return c.cols[f"info.{k}"].tolist()
    if kind == "s":
        voc = c.vocab[f"info.{k}"]
        return [voc[i] for i in c.cols[f"info.{k}"].tolist()]
    if kind == "n":
        return [None] * _present(c, f"info?{k}", has)
    return list(c.tagged[k])


def chunk_records(c: Chunk, episode: str) -> list[StepRecord]:
    """The chunk's rows as ``StepRecord``s (arrays are views into the chunk's columns)."""
    cols, n = c.cols, c.n
    lists: dict[str, list] = {"episode": [episode] * n, "step": cols["step"].tolist()}
    for f in F8 + B1:
        lists[f] = cols[f].tolist()
    for f in STR:
        voc = c.vocab[f]
        lists[f] = [voc[i] for i in cols[f].tolist()]
    for f in ARR:
        lists[f] = list(cols[f])
    for f in OPT:
        it = iter(cols[f]) if f in cols else iter(())
        lists[f] = [next(it) if m else None for m in presence(c, f).tolist()]
    lists["scores"] = _dict_rows(c, "score", [(k, cols[f"score.{k}"].tolist(), h)
                                              for k, h in c.scores])
    lists["info"] = _dict_rows(c, "info", [(k, info_values(c, k, kind, h), h)
                                           for k, kind, h in c.info])
    names = list(lists)
    return [_new_record(dict(zip(names, row))) for row in zip(*lists.values())]
