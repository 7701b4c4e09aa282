"""``takeover log check / show / export`` on real log directories."""

from __future__ import annotations

import errno
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from test_logio import kill_writer_at_random, make_record, meta, write_run
from typer.testing import CliRunner

from takeover import logio
from takeover.cli import app
from takeover.logio import LogWriter, read_log
from takeover.records import StepRecord

runner = CliRunner()


def supervised_episode(eid: str, n: int = 30, discrete: bool = False) -> list[StepRecord]:
    """Agent drives, a TOR at 1.0 s, the human takes over at 2.5 s for 1 s, agent again."""
    out = []
    for k in range(n):
        t = 0.1 * (k + 1)
        human = 25 <= k + 1 < 35 and k < n
        tor = t >= 1.0
        act = np.array([k % 5], np.float32) if discrete else np.array([0.1, -0.2], np.float32)
        out.append(StepRecord(
            episode=eid, step=k, time=t, wall_time=1e9 + t,
            obs=np.full((9, 7), k / n, np.float32), agent_action=act,
            member_actions=None, human_action=act + 1 if human else None,
            action=act + 1 if human else act, controller="human" if human else "agent",
            phase="human" if human else ("tor" if tor else "agent"),
            scores={"risk": 0.1 * k}, tor_time=1.0 if tor else math.nan,
            takeover_time=2.5 if t >= 2.5 else math.nan, reward=1.0,
            truncated=k == n - 1, reason="time_limit" if k == n - 1 else "",
            info={"speed": 20.0 + k, "hazard": "cut_in", "lane": 1},
        ))
    return out


def write_supervised(run, episodes=2, discrete=False):
    eps = {}
    with LogWriter(run, meta()) as log:
        for e in range(episodes):
            eid = f"ep{e}"
            eps[eid] = supervised_episode(eid, 30 + 5 * e, discrete)
            for r in eps[eid]:
                log.write(r)
            log.end_episode()
    return eps


def check_json(path) -> tuple[int, dict]:
    r = runner.invoke(app, ["log", "check", str(path), "--json"])
    return r.exit_code, json.loads(r.stdout)


def test_check_clean_log(tmp_path):
    write_run(tmp_path / "run", episodes=3, steps=10)
    code, out = check_json(tmp_path / "run")
    assert code == 0
    assert (out["complete"], out["incomplete"], out["records"], out["dropped"]) == (3, 0, 30, 0)
    r = runner.invoke(app, ["log", "check", str(tmp_path / "run")])
    assert r.exit_code == 0 and "3 complete" in r.stdout


def test_check_flags_damage_and_incomplete(tmp_path):
    run = tmp_path / "run"
    write_run(run, episodes=2, steps=10)
    with LogWriter(run, meta()) as log:
        log.write(make_record("late", 0))
    code, out = check_json(run)
    assert code == 2 and out["logs"]["."]["incomplete_ids"] == ["late"] and out["complete"] == 2
    assert out["status"] == "interrupted"
    f = run / "episodes" / "s0000-e0000.tkc"
    data = bytearray(f.read_bytes())
    data[100] ^= 0x55
    f.write_bytes(bytes(data))
    code, out = check_json(run)
    assert code == 2 and out["status"] == "damaged" and out["dropped"] >= 1
    assert out["logs"]["."]["damaged_ids"] == ["s0000-e0000"]


def test_check_refuses_non_log_and_newer_schema(tmp_path):
    r = runner.invoke(app, ["log", "check", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "not a directory" in r.output
    write_run(tmp_path / "run", episodes=1)
    m = tmp_path / "run" / "meta.json"
    m.write_text(m.read_text().replace('"schema_version": "2.0"', '"schema_version": "9.0"'))
    r = runner.invoke(app, ["log", "check", str(tmp_path / "run")])
    assert r.exit_code == 2 and "upgrade takeover" in r.output
    r = runner.invoke(app, ["log", "check", str(tmp_path / "empty-folder")])
    assert r.exit_code == 2


def test_check_a_run_folder_checks_every_log(tmp_path):
    run = tmp_path / "run"
    write_run(run / "logs" / "gate", episodes=2, steps=5)
    write_run(run / "logs" / "never", episodes=1, steps=5)
    (run / "metrics.json").write_text("{}")
    code, out = check_json(run)
    assert code == 0 and out["status"] == "ok"
    assert sorted(out["logs"]) == ["logs/gate", "logs/never"]
    assert out["complete"] == 3 and out["logs"]["logs/gate"]["records"] == 10
    f = run / "logs" / "never" / "episodes" / "s0000-e0000.tkc"
    f.write_bytes(f.read_bytes()[:-3])
    code, out = check_json(run)
    assert code == 2 and out["status"] == "damaged"
    assert out["logs"]["logs/gate"]["status"] == "ok"
    assert out["logs"]["logs/never"]["damaged_ids"] == ["s0000-e0000"]
    r = runner.invoke(app, ["log", "check", str(run)])
    assert r.exit_code == 2 and "logs/never" in r.output and "2 logs: damaged" in r.output
    (tmp_path / "nothing").mkdir()
    r = runner.invoke(app, ["log", "check", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no log under" in r.output


@pytest.mark.parametrize("trial", range(3))
def test_check_json_after_kill_9(tmp_path, trial):
    run = tmp_path / "run"
    kill_writer_at_random(run, np.random.default_rng(100 + trial))
    code, out = check_json(run)
    finished = [p for p in (run / "episodes").glob("*.tkc*")
                if logio.read_episode_file(p).ended]
    assert out["complete"] == len(finished) and out["dropped"] == 0 and out["damaged"] == 0
    assert out["incomplete"] <= 1
    assert code == (2 if out["incomplete"] or out["unlisted"] else 0)
    assert out["status"] == ("interrupted" if code else "ok")


def test_show_reports_who_drove_and_takeover_times(tmp_path):
    write_supervised(tmp_path / "run")
    r = runner.invoke(app, ["log", "show", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "ep0" in r.output and "ep1" in r.output and "time_limit" in r.output
    from takeover.commands.log import episode_summary

    s = episode_summary(supervised_episode("x", 30))
    assert s["human_steps"] == 6 and s["agent_steps"] == 24
    assert math.isclose(s["human_s"], 0.6) and s["interventions"] == 1 and s["tors"] == 1
    assert np.allclose(s["takeover_times"], [1.5])


def test_interventions_are_segments_the_human_held():
    from takeover.commands.log import episode_summary
    from takeover.control import count_interventions, fallback_segments, human_segments

    ctrl = ["agent", "human", "human", "agent", "fallback", "fallback", "human", "agent"]
    assert human_segments(ctrl) == [(1, 3), (6, 7)] and count_interventions(ctrl) == 2
    assert fallback_segments(ctrl) == [(4, 6)]  # a MRM is not a human intervention
    assert count_interventions([]) == 0 and count_interventions(["human"]) == 1
    # a key press with no control change: the agent kept driving, no intervention
    recs = supervised_episode("x", 20)
    pressed = [r if r.step != 5 else replace(r, human_action=r.action + 1) for r in recs]
    s = episode_summary(pressed)
    assert s["interventions"] == 0 and s["mrm"] == 0
    mrm = [replace(r, controller="fallback", mrm=True) if 10 <= r.step < 15 else r
           for r in recs]
    s = episode_summary(mrm)
    assert s["interventions"] == 0 and s["mrm"] == 1


def test_export_parquet_one_row_per_step(tmp_path):
    import pyarrow.parquet as pq

    eps = write_supervised(tmp_path / "run")
    out = tmp_path / "steps.parquet"
    r = runner.invoke(app, ["log", "export", str(tmp_path / "run"), "--to", "parquet",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    recs = [x for e in eps.values() for x in e]
    assert t.num_rows == len(recs)
    df = t.to_pandas()
    assert list(df["step"]) == [x.step for x in recs]
    assert list(df["controller"]) == [x.controller for x in recs]
    obs = np.stack(df["obs"].to_numpy()).reshape(-1, 9, 7)
    assert np.array_equal(obs, np.stack([x.obs for x in recs]))
    assert json.loads(t.schema.metadata[b"obs_shape"]) == [9, 7]
    assert df["has_human_action"].sum() == sum(x.human_action is not None for x in recs)


def test_export_fails_cleanly_when_disk_is_full(tmp_path, monkeypatch):
    import takeover.atomic as atomic

    write_supervised(tmp_path / "run")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    out = tmp_path / "steps.parquet"
    r = runner.invoke(app, ["log", "export", str(tmp_path / "run"), "--to", "parquet",
                            "--out", str(out)])
    assert r.exit_code == 1 and "No space left" in r.output and not out.exists()
    assert read_log(tmp_path / "run").ok


def test_export_minari_writes_under_root_and_says_where(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    write_supervised(tmp_path / "run", discrete=True)
    r = runner.invoke(app, ["log", "export", str(tmp_path / "run"), "--to", "minari",
                            "--out", "takeover/where-v0", "--root", str(tmp_path / "ds")])
    assert r.exit_code == 0, r.output
    where = tmp_path / "ds" / "takeover" / "where-v0"
    assert where.is_dir() and str(where) in r.output.replace("\n", "")


@pytest.mark.parametrize("bad", ["../escape-v0", "/abs-v0", "a/../../b-v0", "a/b/c-v0", ""])
def test_export_minari_refuses_an_id_that_would_leave_the_root(tmp_path, bad):
    write_supervised(tmp_path / "run", discrete=True)
    r = runner.invoke(app, ["log", "export", str(tmp_path / "run"), "--to", "minari",
                            "--out", bad, "--root", str(tmp_path / "ds")])
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "ds").exists() and not (tmp_path / "escape-v0").exists()


@pytest.mark.parametrize("discrete", [False, True])
def test_export_minari_loads_and_matches_the_log(tmp_path, monkeypatch, discrete):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    import minari

    eps = write_supervised(tmp_path / "run", discrete=discrete)
    r = runner.invoke(app, ["log", "export", str(tmp_path / "run"), "--to", "minari",
                            "--out", "takeover/test-v0"])
    assert r.exit_code == 0, r.output
    ds = minari.load_dataset("takeover/test-v0")
    assert ds.total_episodes == 2 and ds.total_steps == sum(len(e) for e in eps.values())
    for ep, recs in zip(ds.iterate_episodes(), eps.values(), strict=True):
        n = len(recs)
        assert np.array_equal(ep.observations[:n], np.stack([x.obs for x in recs]))
        acts = np.stack([x.action for x in recs])
        assert np.array_equal(ep.actions, acts[:, 0] if discrete else acts)
        assert np.array_equal(ep.rewards, [x.reward for x in recs])
        assert np.array_equal(ep.truncations, [x.truncated for x in recs])
        assert list(ep.infos["controller"][1:]) == [x.controller for x in recs]
        assert list(ep.infos["step"][1:]) == list(range(n))
        assert np.allclose(ep.infos["score.risk"][1:], [x.scores["risk"] for x in recs])
        assert list(ep.infos["has_human_action"][1:]) == [x.human_action is not None
                                                          for x in recs]


def test_log_benchmark_reports_both_formats():
    from takeover.experiments.benchmarks.log import main

    out = main(records=600, repeats=1, n_episodes=2)
    for k in ("v2_write_per_s", "v1_write_per_s", "v2_read_columns_per_s",
              "v2_bytes_per_record", "v1_bytes_per_record", "write_speedup"):
        assert out[k] > 0, k
    assert out["records"] >= 600
