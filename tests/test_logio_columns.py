"""The log's column path (issue 12): the engine's episodes written as chunks built from arrays
(``Episode.chunk`` -> ``LogWriter.write_chunk`` / ``write_episodes``), with no
``StepRecord`` per row, keep every promise of the record path: the same records read back,
whatever the batch size, chunking and the per-episode atomic rename; a malformed chunk is
refused with a clear error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_logio import make_record, meta
from test_loop import _engine

from takeover.logio import (
    LogError,
    LogWriter,
    check_chunk,
    chunk_from_columns,
    chunks_from_records,
    read_columns,
    read_log,
    records_equal,
)
from takeover.logio import chunks as ck


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert records_equal(x, y), (x.episode, x.step)


def _no_wall(recs):
    return [dataclasses.replace(r, wall_time=0.0) for r in recs]


def test_engine_chunks_written_as_columns_read_back_as_its_records(tmp_path):
    """Two batch sizes, chunk_records 7 (episodes span several chunks): every episode read
    back equals the engine's records, and both logs hold the same records."""
    seeds = list(range(20, 25))
    logs = {}
    for n in (1, 3):
        eps = _engine(n).run(seeds)
        run = tmp_path / f"n{n}"
        with LogWriter(run, meta(), chunk_records=7) as log:
            paths = log.write_episodes([(e.name.replace("/", "-"), e.chunk) for e in eps])
        assert all(p.suffix == ".tkc" for p in paths)
        res = read_log(run)
        assert res.status == "ok" and len(res.episodes) == len(seeds)
        for e in eps:
            got = res.episodes[e.name.replace("/", "-")]
            assert len(got) > 7  # several chunks per episode
            _same([dataclasses.replace(r, episode=e.name) for r in got], e.records)
            assert got[-1].terminal_obs is not None and got[0].terminal_obs is None
        logs[n] = res
    for eid, recs in logs[1].episodes.items():
        _same(_no_wall(recs), _no_wall(logs[3].episodes[eid]))


def test_column_path_and_record_path_store_the_same_records(tmp_path):
    """Arrays -> chunk_from_columns gives what the records give (awkward values: NaN
    payloads, -0.0, missing human actions, member actions, a terminal observation)."""
    recs = [make_record("e0", k) for k in range(9)]
    c = chunks_from_records(recs)[0]
    cols = {f: c.cols[f] for f in ("step", *ck.F8, *ck.B1, *ck.ARR)}
    for f in ck.STR:
        cols[f] = np.asarray(c.vocab[f] or [""])[c.cols[f]]
    for f in ck.OPT:
        cols[f + "?"] = c.cols[f + "?"]
        if f in c.cols:
            cols[f] = c.cols[f]
    scores = {k: c.cols[f"score.{k}"] for k, _ in c.scores}
    info = {}
    for k, kind, masked in c.info:
        v = c.cols.get(f"info.{k}")
        if kind == "s":
            v = np.asarray(c.vocab[f"info.{k}"])[v]
        elif kind == "t":
            v = np.array(c.tagged[k] + [None], dtype=object)[:-1]
        if v is not None and not masked:
            info[k] = (v, None)
    with LogWriter(tmp_path / "run", meta()) as log:
        log.write_chunk("e0", chunk_from_columns(cols, scores, info))
        log.end_episode("e0")
    got = read_log(tmp_path / "run").episodes["e0"]
    want = [dataclasses.replace(r, info={k: v for k, v in r.info.items() if k in info})
            for r in recs]
    _same(got, want)


def test_an_unended_column_episode_is_incomplete_never_mixed_in(tmp_path):
    eps = _engine(2).run([30, 31])
    with LogWriter(tmp_path / "run", meta()) as log:
        log.write_episodes([("done", eps[0].chunk)])
        log.write_chunk("open", eps[1].chunk)  # the writer dies before end_episode
    res = read_log(tmp_path / "run")
    assert list(res.episodes) == ["done"] and res.incomplete == ["open"]
    assert res.status == "interrupted"
    _same(res.partial["open"], [dataclasses.replace(r, episode="open")
                                for r in eps[1].records])
    cols = read_columns(tmp_path / "run")
    assert len(cols["step"]) == len(eps[0].records)


def test_malformed_chunks_are_refused_naming_the_problem(tmp_path):
    eps = _engine(1).run([40])
    good = eps[0].chunk
    with LogWriter(tmp_path / "run", meta()) as log:
        with pytest.raises(LogError, match="expected a takeover.logio.Chunk"):
            log.write_chunk("a", eps[0].records)
        short = dataclasses.replace(good, cols={**good.cols, "time": good.cols["time"][:-1]})
        with pytest.raises(LogError, match="malformed chunk: column time"):
            log.write_chunk("b", short)
        text = dataclasses.replace(good, cols={**good.cols, "reward": np.array(["x"] * good.n)})
        with pytest.raises(LogError, match="'reward' is not a numeric numpy array"):
            log.write_chunk("c", text)
        check_chunk(good)
        log.write_chunk("d", good)  # the writer goes on after a refusal
        log.end_episode("d")
    assert list(read_log(tmp_path / "run").episodes) == ["d"]


def test_whole_episodes_of_records_are_written_as_the_record_path_writes_them(tmp_path):
    """``write_episodes`` with records (what the runner, rounds, live and study call) stores
    what ``write`` + ``end_episode`` store; an id that is not the records' episode, or an
    episode without records, is refused before anything is written."""
    eps = {f"e{j}": [make_record(f"e{j}", k) for k in range(5 + j)] for j in range(3)}
    with LogWriter(tmp_path / "whole", meta()) as log:
        paths = log.write_episodes(list(eps.items()))
    with LogWriter(tmp_path / "one", meta()) as log:
        for recs in eps.values():
            for r in recs:
                log.write(r)
            log.end_episode()
    assert [p.name for p in paths] == [f"{e}.tkc" for e in eps]
    whole, one = read_log(tmp_path / "whole"), read_log(tmp_path / "one")
    assert whole.status == "ok" and list(whole.episodes) == list(eps)
    for eid, recs in eps.items():
        _same(whole.episodes[eid], one.episodes[eid])
        _same(whole.episodes[eid], recs)
    with LogWriter(tmp_path / "bad", meta()) as log:
        with pytest.raises(LogError, match="holds a record of episode 'e0'"):
            log.write_episodes([("e1", eps["e1"]), ("other", eps["e0"])])
        with pytest.raises(LogError, match="no records"):
            log.write_episodes([("empty", [])])
        assert log.open_episodes == ()
