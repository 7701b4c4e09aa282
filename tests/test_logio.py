"""Crash-safe intervention logs: exact round trip, kill -9, corruption, disk full, versions
(schema 2.0 columnar logs, and 1.0 logs read by the same reader)."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from takeover import logio
from takeover.logio import (
    LogError,
    LogWriteError,
    LogWriter,
    SchemaVersionError,
    read_log,
    records_equal,
    scan_bytes,
    v1,
)
from takeover.records import RunMeta, StepRecord

NAN_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
NAN32 = np.frombuffer(struct.pack("<I", 0x7FC0_1234), dtype=np.float32)[0]


def make_record(episode: str, step: int, seed: int = 0) -> StepRecord:
    """A deterministic record with awkward values (NaN payloads, -0.0, inf, None fields)."""
    rng = np.random.default_rng([seed, step, len(episode)])
    obs = rng.uniform(-1, 1, (9, 7)).astype(np.float32)
    obs[0, 0] = -0.0
    obs[1, 1] = NAN32
    human = step % 3 == 0
    return StepRecord(
        episode=episode,
        step=step,
        time=0.1 * (step + 1),
        wall_time=1.7e9 + step * 0.0137,
        obs=obs,
        agent_action=rng.uniform(-1, 1, 2).astype(np.float32),
        member_actions=rng.uniform(-1, 1, (5, 2)).astype(np.float32) if step % 2 else None,
        human_action=np.array([-0.0, 0.5], np.float32) if human else None,
        action=np.array([0.25, -1.0], np.float32),
        controller="human" if human else "agent",
        phase="human" if human else "agent",
        transition="human_takeover" if step == 3 else "",
        scores={"ensemble": float(rng.uniform()), "risk": NAN_PAYLOAD, "neg": -0.0},
        threshold=math.nan if step % 4 else 0.125,
        gate_request=step % 5 == 0,
        tor_time=NAN_PAYLOAD,
        takeover_time=-0.0,
        reward=float(rng.normal()),
        terminated=False,
        truncated=step == 9,
        reason="time_limit" if step == 9 else "",
        info={"ttc": math.inf, "speed": 24.5, "lane": 2, "hazard_active": True,
              "hazard": "cut_in", "x": NAN_PAYLOAD, "none": None},
        outcome="timeout" if step == 9 else "",
        hazard_fired=step >= 4,
        hazard_onset=0.5 if step >= 4 else math.nan,
        mrm=step == 7,
        score_nonfinite=step == 2,
        terminal_obs=(obs + 1) if step == 9 else None,
    )


def as_v1(r: StepRecord) -> StepRecord:
    """``r`` as a 1.0 log returns it: the 2.0 fields at their defaults."""
    return replace(r, outcome="", hazard_fired=False, hazard_onset=math.nan, mrm=False,
                   score_nonfinite=False, terminal_obs=None)


def meta(run_id: str = "run-a") -> RunMeta:
    return RunMeta(run_id=run_id, seed=7, config={"env": "takeover/CutIn-v2", "gain": 0.5},
                   versions={"numpy": np.__version__}, git_rev="abc123", created="2025-01-01")


def write_run(run_dir: Path, episodes: int = 3, steps: int = 10, writer=LogWriter,
              **kw) -> dict[str, list[StepRecord]]:
    out = {}
    with writer(run_dir, meta(), **kw) as log:
        for e in range(episodes):
            eid = f"s0000-e{e:04d}"
            out[eid] = [make_record(eid, k, seed=e) for k in range(steps)]
            for r in out[eid]:
                log.write(r)
            log.end_episode()
    return out


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_round_trip_is_bit_exact(tmp_path):
    written = write_run(tmp_path / "run")
    res = read_log(tmp_path / "run")
    assert res.ok and res.dropped == 0 and not res.partial
    assert res.meta == meta()
    assert list(res.episodes) == list(written)
    for eid, recs in written.items():
        got = res.episodes[eid]
        assert len(got) == len(recs)
        for a, b in zip(recs, got, strict=True):
            assert records_equal(a, b)
            assert a.obs.tobytes() == b.obs.tobytes() and b.obs.dtype == np.float32
            assert bits(b.tor_time) == bits(NAN_PAYLOAD)  # NaN payload kept
            assert bits(b.takeover_time) == bits(-0.0)
            assert bits(b.scores["risk"]) == bits(NAN_PAYLOAD)
            assert bits(b.info["x"]) == bits(NAN_PAYLOAD)
            assert b.info["lane"] == 2 and isinstance(b.info["lane"], int)
            assert b.info["hazard_active"] is True and b.info["none"] is None
            assert (a.human_action is None) == (b.human_action is None)
            assert (a.member_actions is None) == (b.member_actions is None)
            assert (b.outcome, b.hazard_fired, b.mrm) == (a.outcome, a.hazard_fired, a.mrm)
        assert got[-1].terminal_obs.tobytes() == (recs[-1].obs + 1).tobytes()
    assert len(list(logio.iter_records(tmp_path / "run"))) == 30


@pytest.mark.parametrize("chunk_records", [1, 3, 1024])
def test_round_trip_any_chunking(tmp_path, chunk_records):
    written = write_run(tmp_path / "run", chunk_records=chunk_records)
    res = read_log(tmp_path / "run")
    assert res.ok
    for eid, recs in written.items():
        assert all(records_equal(a, b) for a, b in zip(recs, res.episodes[eid], strict=True))


def test_journal_holds_sha256_per_episode(tmp_path):
    import hashlib

    write_run(tmp_path / "run", episodes=2)
    entries = logio.load_journal(tmp_path / "run")
    assert len(entries) == 2
    for entry in entries.values():
        data = (tmp_path / "run" / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["records"] == 10
    assert not (tmp_path / "run" / "manifest.json").exists()  # no whole-manifest rewrite


def test_open_episode_is_flagged_incomplete_not_mixed_in(tmp_path):
    write_run(tmp_path / "run", episodes=1)
    with LogWriter(tmp_path / "run", meta()) as log:  # reopening appends
        for k in range(4):
            log.write(make_record("s0000-e0009", k))
    res = read_log(tmp_path / "run")
    assert list(res.episodes) == ["s0000-e0000"]
    assert res.incomplete == ["s0000-e0009"]
    assert len(res.partial["s0000-e0009"]) == 4
    assert not res.ok and res.dropped == 0


def test_writer_refuses_misuse_with_clear_errors(tmp_path):
    write_run(tmp_path / "run", episodes=1)
    with pytest.raises(LogError, match="already holds run"):
        LogWriter(tmp_path / "run", meta("other"))
    with LogWriter(tmp_path / "run", meta()) as log:
        with pytest.raises(LogError, match="already exists"):
            log.write(make_record("s0000-e0000", 0))
        with pytest.raises(LogError, match="not usable as a file name"):
            log.write(make_record("../evil", 0))
        with pytest.raises(LogError, match="no episode is open"):
            log.end_episode()
        log.write(make_record("ep-1", 0))
        log.write(make_record("ep-2", 0))  # a second world's episode may be open too
        with pytest.raises(LogError, match="2 episodes are open; name the one"):
            log.end_episode()
        with pytest.raises(LogError, match="'ep-9' is not open"):
            log.end_episodes(["ep-9"])
    with LogWriter(tmp_path / "run", meta(), chunk_records=1) as log:
        bad = make_record("ep-4", 1)
        object.__setattr__(bad, "info", {"arr": np.zeros(3)})
        with pytest.raises(LogError, match="episode ep-4: info\\['arr'\\].*abandoned"):
            log.write(bad)
        log.write(make_record("ep-5", 0))  # the writer goes on
        log.end_episode()
    with pytest.raises(LogError, match="closed"):
        log.write(make_record("ep-3", 0))
    assert "ep-5" in read_log(tmp_path / "run").episodes


def test_newer_schema_major_is_refused(tmp_path):
    write_run(tmp_path / "run", episodes=1)
    mpath = tmp_path / "run" / "meta.json"
    data = json.loads(mpath.read_text())
    data["schema_version"] = "3.0"
    mpath.write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError, match="schema 3.0.*upgrade takeover"):
        read_log(tmp_path / "run")
    # a newer minor is fine, apart from meta.json no longer matching the journal's sha256
    data["schema_version"] = "2.7"
    mpath.write_text(json.dumps(data))
    res = read_log(tmp_path / "run")
    assert res.complete == ["s0000-e0000"] and "sha256 differs" in " ".join(res.problems)
    # a frame of a newer major or with an unreadable version string costs that frame only
    for v in (b'"v":"3.0"', b'"v":"x.y"'):
        payload = logio.encode_record(make_record("e", 1)).replace(b'"v":"1.0"', v)
        good = logio.frame(logio.encode_record(make_record("e", 0)))
        got = scan_bytes(good + logio.frame(payload))
        assert len(got.records) == 1 and got.dropped == 1


def _episode_bytes(steps: int = 4, schema: str = "2") -> tuple[bytes, list[StepRecord]]:
    """One episode file's bytes, one record per frame (a 2.0 chunk of one record)."""
    recs = [make_record("e", k) for k in range(steps)]
    if schema == "1":
        data = b"".join(logio.frame(logio.encode_record(r)) for r in recs)
        return data + logio.frame(v1.end_payload("e", steps)), [as_v1(r) for r in recs]
    data = b"".join(logio.frame(logio.encode_chunk(c, "e"))
                    for r in recs for c in logio.chunks_from_records([r]))
    end = json.dumps({"v": "2.0", "kind": "end", "episode": "e", "run_id": "run-a",
                      "records": steps, "chunks": steps}).encode()
    return data + logio.frame(struct.pack("<I", len(end)) + end), recs


def _assert_only_intact(got, recs):
    by_step = {r.step: r for r in recs}
    for r in got.records:
        assert r.step in by_step and records_equal(r, by_step[r.step])


@pytest.mark.parametrize("schema", ["1", "2"])
def test_truncation_anywhere_yields_an_intact_prefix(schema):
    data, recs = _episode_bytes(schema=schema)
    assert scan_bytes(data).ended and len(scan_bytes(data).records) == 4
    for cut in range(0, len(data), 1 if schema == "1" else 7):
        got = scan_bytes(data[:cut])
        _assert_only_intact(got, recs)
        assert [r.step for r in got.records] == list(range(len(got.records)))
        assert not got.ended


@pytest.mark.parametrize("schema", ["1", "2"])
def test_flipping_any_byte_never_yields_a_corrupted_record(schema):
    data, recs = _episode_bytes(3, schema)
    for pos in range(0, len(data), 1 if schema == "1" else 3):
        for mask in (0x01, 0x80):
            bad = bytearray(data)
            bad[pos] ^= mask
            got = scan_bytes(bytes(bad))
            _assert_only_intact(got, recs)
            assert not got.ended or len(got.records) == 3
            # one damaged frame costs at most that record
            assert len(got.records) >= 2
            if len(got.records) < 3:
                assert got.dropped >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255),
                                st.sampled_from(["set", "insert", "delete"])), max_size=6),
       schema=st.sampled_from(["1", "2"]))
def test_random_damage_never_crashes_the_reader(edits, schema):
    data, recs = _episode_bytes(3, schema)
    bad = bytearray(data)
    for pos, val, op in edits:
        pos %= len(bad) + 1
        if op == "insert":
            bad[pos:pos] = bytes([val])
        elif pos < len(bad):
            if op == "set":
                bad[pos] = val
            else:
                del bad[pos]
    got = scan_bytes(bytes(bad))
    _assert_only_intact(got, recs)


def test_damaged_complete_file_is_flagged_and_recovered(tmp_path):
    written = write_run(tmp_path / "run", episodes=2, chunk_records=2)
    f = tmp_path / "run" / "episodes" / "s0000-e0001.tkc"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    res = read_log(tmp_path / "run")
    assert list(res.episodes) == ["s0000-e0000"]
    assert res.damaged == ["s0000-e0001"] and res.dropped >= 1
    assert 0 < len(res.partial["s0000-e0001"]) < 10
    by_step = {r.step: r for r in written["s0000-e0001"]}
    assert all(records_equal(r, by_step[r.step]) for r in res.partial["s0000-e0001"])
    (tmp_path / "run" / "episodes" / "s0000-e0000.tkc").unlink()
    res = read_log(tmp_path / "run")
    assert "s0000-e0000" in res.damaged and "missing" in " ".join(res.problems)


def test_disk_full_mid_write_keeps_earlier_episodes(tmp_path, monkeypatch):
    run = tmp_path / "run"
    written = {}
    real_write = os.write
    calls = {"n": 0}

    def full_after_4(fd, data):
        calls["n"] += 1
        if calls["n"] > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    log = LogWriter(run, meta(), chunk_records=1)  # one os.write per record
    for e in range(2):
        eid = f"ep{e}"
        written[eid] = [make_record(eid, k, seed=e) for k in range(10)]
    for r in written["ep0"]:
        log.write(r)
    log.end_episode()
    monkeypatch.setattr(logio.os, "write", full_after_4)
    with pytest.raises(LogWriteError, match="disk full.*intact") as exc:
        for r in written["ep1"]:
            log.write(r)
    assert exc.value.errno == errno.ENOSPC and isinstance(exc.value, OSError)
    with pytest.raises(LogError, match="failed earlier"):
        log.write(written["ep1"][0])
    log.close()
    monkeypatch.setattr(logio.os, "write", real_write)
    res = read_log(run)
    assert list(res.episodes) == ["ep0"]
    pairs = zip(written["ep0"], res.episodes["ep0"], strict=True)
    assert all(records_equal(a, b) for a, b in pairs)
    assert res.incomplete == ["ep1"] and len(res.partial["ep1"]) == 4


def test_disk_full_on_fsync_at_episode_end(tmp_path, monkeypatch):
    run = tmp_path / "run"
    log = LogWriter(run, meta())
    log.write(make_record("ep0", 0))

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(logio.os, "fsync", no_space)
    with pytest.raises(LogWriteError, match="finish an episode"):
        log.end_episode()
    monkeypatch.undo()
    res = read_log(run)  # never renamed or journaled: not a completed, listed episode
    assert res.status == "interrupted" and "ep0" not in logio.load_journal(run)


# ----------------------------------------------------------------- kill -9

WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from test_logio import make_record, meta
from takeover.logio import LogWriter
log = LogWriter({run!r}, meta(), chunk_records=3)
e = 0
print("ready", flush=True)
while True:
    eid = f"s0000-e{{e:04d}}"
    for k in range(10):
        log.write(make_record(eid, k, seed=e))
        time.sleep(0.0005)
    log.end_episode()
    if e == 0:
        print("ended", flush=True)
    e += 1
"""


def kill_writer_at_random(run: Path, rng: np.random.Generator, *,
                          after_first: bool = False) -> None:
    """SIGKILL the writer 0-0.15 s after it is ready (or, with ``after_first``, after its
    first episode has ended: on a loaded machine 0.15 s may pass before anything is written,
    and a kill that lands before the first episode tests nothing about completed ones)."""
    code = WRITER.format(tests=str(Path(__file__).parent), run=str(run))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        if after_first:
            assert proc.stdout.readline().strip() == b"ended"
        time.sleep(float(rng.uniform(0.0, 0.15)))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def check_killed_run(run: Path) -> tuple[int, int]:
    res = read_log(run)
    assert not res.damaged and res.dropped == 0
    man = logio.load_journal(run)
    assert set(man) <= set(res.episodes)  # every journaled episode recovered
    for eid, recs in res.episodes.items():
        e = int(eid.split("-e")[1])
        want = [make_record(eid, k, seed=e) for k in range(10)]
        assert len(recs) == 10
        assert all(records_equal(a, b) for a, b in zip(want, recs, strict=True))
    assert len(res.incomplete) <= 1
    for eid, recs in res.partial.items():
        assert eid in res.incomplete and len(recs) <= 9 and len(recs) % 3 == 0  # whole chunks
        e = int(eid.split("-e")[1])
        assert all(records_equal(make_record(eid, k, seed=e), r) for k, r in enumerate(recs))
    return len(res.episodes), len(res.incomplete)


@pytest.mark.parametrize("trial", range(6))
def test_kill_9_keeps_every_completed_episode(tmp_path, trial):
    rng = np.random.default_rng(trial)
    run = tmp_path / "run"
    kill_writer_at_random(run, rng)
    check_killed_run(run)


def test_kill_9_many_times(tmp_path):
    rng = np.random.default_rng(123)
    totals = [0, 0]
    for trial in range(40):
        run = tmp_path / f"run{trial}"
        kill_writer_at_random(run, rng, after_first=trial % 2 == 1)
        c, i = check_killed_run(run)
        totals[0] += c
        totals[1] += i
    assert totals[0] > 0 and totals[1] > 0  # kills did land both between and inside episodes
