"""Crash-safe intervention logs: exact round trip, kill -9, corruption, disk full, versions."""

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
    )


def meta(run_id: str = "run-a") -> RunMeta:
    return RunMeta(run_id=run_id, seed=7, config={"env": "takeover/CutIn-v1", "gain": 0.5},
                   versions={"numpy": np.__version__}, git_rev="abc123", created="2025-01-01")


def write_run(run_dir: Path, episodes: int = 3, steps: int = 10) -> dict[str, list[StepRecord]]:
    out = {}
    with LogWriter(run_dir, meta()) as log:
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
    assert list(logio.iter_records(tmp_path / "run")) != []


def test_manifest_holds_sha256_per_episode(tmp_path):
    import hashlib

    write_run(tmp_path / "run", episodes=2)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(man["episodes"]) == 2
    for entry in man["episodes"].values():
        data = (tmp_path / "run" / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["records"] == 10


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
        with pytest.raises(LogError, match="call end_episode"):
            log.write(make_record("ep-2", 0))
        bad = make_record("ep-1", 1)
        object.__setattr__(bad, "info", {"arr": np.zeros(3)})
        with pytest.raises(LogError, match="info\\['arr'\\]"):
            log.write(bad)
    with pytest.raises(LogError, match="closed"):
        log.write(make_record("ep-3", 0))


def test_newer_schema_major_is_refused(tmp_path):
    write_run(tmp_path / "run", episodes=1)
    mpath = tmp_path / "run" / "meta.json"
    data = json.loads(mpath.read_text())
    data["schema_version"] = "2.0"
    mpath.write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError, match="schema 2.0.*upgrade takeover"):
        read_log(tmp_path / "run")
    # a newer minor is fine
    data["schema_version"] = "1.7"
    mpath.write_text(json.dumps(data))
    assert read_log(tmp_path / "run").ok
    # and a record from a newer major is refused, not silently dropped
    payload = logio.encode_record(make_record("e", 0)).replace(b'"v":"1.0"', b'"v":"3.0"')
    with pytest.raises(SchemaVersionError):
        scan_bytes(logio.frame(payload))


def _episode_bytes(steps: int = 4) -> tuple[bytes, list[StepRecord]]:
    recs = [make_record("e", k) for k in range(steps)]
    data = b"".join(logio.frame(logio.encode_record(r)) for r in recs)
    return data + logio.frame(logio._end_payload("e", steps)), recs


def _assert_only_intact(got, recs):
    by_step = {r.step: r for r in recs}
    for r in got.records:
        assert r.step in by_step and records_equal(r, by_step[r.step])


def test_truncation_anywhere_yields_an_intact_prefix():
    data, recs = _episode_bytes()
    for cut in range(len(data)):
        got = scan_bytes(data[:cut])
        _assert_only_intact(got, recs)
        assert [r.step for r in got.records] == list(range(len(got.records)))
        assert not got.ended


def test_flipping_any_byte_never_yields_a_corrupted_record():
    data, recs = _episode_bytes(3)
    for pos in range(len(data)):
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
                                st.sampled_from(["set", "insert", "delete"])), max_size=6))
def test_random_damage_never_crashes_the_reader(edits):
    data, recs = _episode_bytes(3)
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
    written = write_run(tmp_path / "run", episodes=2)
    f = tmp_path / "run" / "episodes" / "s0000-e0001.rec"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    res = read_log(tmp_path / "run")
    assert list(res.episodes) == ["s0000-e0000"]
    assert res.damaged == ["s0000-e0001"] and res.dropped >= 1
    assert 0 < len(res.partial["s0000-e0001"]) < 10
    by_step = {r.step: r for r in written["s0000-e0001"]}
    assert all(records_equal(r, by_step[r.step]) for r in res.partial["s0000-e0001"])
    (tmp_path / "run" / "episodes" / "s0000-e0000.rec").unlink()
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

    log = LogWriter(run, meta())
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
    res = read_log(run)
    assert not res.episodes and res.incomplete == ["ep0"]


# ----------------------------------------------------------------- kill -9

WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from test_logio import make_record, meta
from takeover.logio import LogWriter
log = LogWriter({run!r}, meta())
e = 0
print("ready", flush=True)
while True:
    eid = f"s0000-e{{e:04d}}"
    for k in range(10):
        log.write(make_record(eid, k, seed=e))
        time.sleep(0.0005)
    log.end_episode()
    e += 1
"""


def kill_writer_at_random(run: Path, rng: np.random.Generator) -> None:
    code = WRITER.format(tests=str(Path(__file__).parent), run=str(run))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.0, 0.15)))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def check_killed_run(run: Path) -> tuple[int, int]:
    res = read_log(run)
    assert not res.damaged and res.dropped == 0
    man = json.loads((run / "manifest.json").read_text())["episodes"]
    assert set(man) <= set(res.episodes)  # every manifest episode recovered
    for eid, recs in res.episodes.items():
        e = int(eid.split("-e")[1])
        want = [make_record(eid, k, seed=e) for k in range(10)]
        assert len(recs) == 10
        assert all(records_equal(a, b) for a, b in zip(want, recs, strict=True))
    assert len(res.incomplete) <= 1
    for eid, recs in res.partial.items():
        assert eid in res.incomplete and len(recs) <= 10  # killed before the rename
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
        kill_writer_at_random(run, rng)
        c, i = check_killed_run(run)
        totals[0] += c
        totals[1] += i
    assert totals[0] > 0 and totals[1] > 0  # kills did land both between and inside episodes
