"""Sweeps: every cell written atomically, resume skips finished cells, a failing cell is
recorded and the sweep goes on, and the backend (inline, process pool, Ray) never changes a
result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml
from helpers import tiny_checkpoint
from typer.testing import CliRunner

from takeover.cli import app
from takeover.config import ConfigError, from_dict
from takeover.experiments.config import ExperimentConfig
from takeover.experiments.sweep import grid, run_cell, run_sweep

runner = CliRunner()




@pytest.fixture(scope="module")
def cfg_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    agent = tiny_checkpoint(root / "agent")
    return {
        "name": "tinysweep", "seed": 0,
        "env": {"action_type": "discrete", "duration": 8.0, "vehicles": 6},
        "agent": {"name": str(agent)},
        "supervisor": {"gate": "threshold", "gate_kwargs": {"high": 0.1, "min_dwell": 2},
                       "gate_score": "ttc", "estimators": ["ttc"], "human": "expert",
                       "handover_kwargs": {"timeout": 2.0}},
        "counterfactual": {"horizon": 1.0, "sample_every": 5},
        "stats": {"bootstrap": 50},
        "sweep": {"gates": ["threshold", "never"], "estimators": ["ttc"],
                  "humans": ["expert"], "scenarios": ["cut_in", "sudden_brake"],
                  "seeds": [0, 1], "episodes": 1, "workers": 1},
    }


@pytest.fixture(scope="module")
def cfg(cfg_data):
    return from_dict(ExperimentConfig, cfg_data)


@pytest.fixture(scope="module")
def full(cfg, tmp_path_factory):
    root = tmp_path_factory.mktemp("full") / "sw"
    res = run_sweep(cfg, root, workers=1)
    return root, res


def test_every_cell_is_written_and_summarized(full, cfg):
    root, res = full
    assert res.total == 8 and res.ran == 8 and res.failed == 0
    cells = sorted(p.name for p in (root / "cells").glob("*.json"))
    assert cells == sorted(f"{c.id}.json" for c in grid(cfg))
    assert not list((root / "cells").glob(".*.tmp")), "no temp file may remain"
    summary = json.loads((root / "summary.json").read_text())
    assert set(summary["methods"]) == {"threshold/ttc/expert", "never/ttc/expert"}
    never = summary["methods"]["never/ttc/expert"]["mean"]
    assert never["interventions_per_episode"] == 0.0
    assert (root / "report.md").read_text().count("/ttc/expert") == 2
    assert (root / "figures" / "pareto.png").stat().st_size > 1000


def test_resume_runs_only_missing_cells_and_matches(full, cfg, tmp_path):
    root, _ = full
    copy = tmp_path / "sw"
    shutil.copytree(root, copy)
    removed = sorted((copy / "cells").glob("*.json"))[::3]
    for p in removed:
        p.unlink()
    (copy / "summary.json").unlink()
    (copy / "cells" / ".x.json.123.tmp").write_text("{torn")  # a write cut off by a kill
    res = run_sweep(cfg, copy, workers=1)
    assert (res.ran, res.skipped) == (len(removed), 8 - len(removed))
    for p in (root / "cells").glob("*.json"):
        assert (copy / "cells" / p.name).read_bytes() == p.read_bytes(), p.name
    assert (copy / "summary.json").read_bytes() == (root / "summary.json").read_bytes()


def _fails_on_never_cut_in_s1(cfg_data, cell):
    if cell.id == "never__ttc__expert__cut_in__s1":
        raise RuntimeError("simulated crash in this cell")
    return run_cell(cfg_data, cell)


def test_failing_cell_is_recorded_and_the_sweep_goes_on(full, cfg, tmp_path):
    root, _ = full
    copy = tmp_path / "sw"
    shutil.copytree(root, copy)
    bad = copy / "cells" / "never__ttc__expert__cut_in__s1.json"
    bad.unlink()
    (copy / "cells" / "threshold__ttc__expert__cut_in__s0.json").unlink()
    res = run_sweep(cfg, copy, workers=1, cell_fn=_fails_on_never_cut_in_s1)
    assert res.ran == 2 and res.failed == 1
    err = json.loads((copy / "cells" / "never__ttc__expert__cut_in__s1.error.json").read_text())
    assert err["status"] == "error" and "simulated crash" in err["error"]
    assert (copy / "cells" / "threshold__ttc__expert__cut_in__s0.json").exists()
    assert "simulated crash" in (copy / "report.md").read_text()
    assert res.summary["methods"]["never/ttc/expert"]["missing_cells"] == 1
    again = run_sweep(cfg, copy, workers=1)  # the failed cell is retried, and now succeeds
    assert again.ran == 1 and again.failed == 0 and not again.summary["errors"]
    assert (copy / "summary.json").read_bytes() == (root / "summary.json").read_bytes()


def test_resuming_with_another_config_is_refused(full, cfg_data, tmp_path):
    root, _ = full
    copy = tmp_path / "sw"
    shutil.copytree(root, copy)
    other = from_dict(ExperimentConfig, {**cfg_data, "seed": 9})
    with pytest.raises(ConfigError, match="another config"):
        run_sweep(other, copy)


def test_cli_resumes_a_sweep_folder(full, tmp_path):
    root, _ = full
    copy = tmp_path / "sw"
    shutil.copytree(root, copy)
    res = runner.invoke(app, ["sweep", str(copy), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "8 cells: 0 run, 8 already done, 0 failed" in " ".join(res.output.split())


def test_process_pool_matches_inline(full, cfg, tmp_path):
    root, _ = full
    res = run_sweep(cfg, tmp_path / "pool", workers=2)
    assert res.ran == 8 and res.failed == 0
    assert (tmp_path / "pool" / "summary.json").read_bytes() == \
        (root / "summary.json").read_bytes()


def test_ray_backend_matches_local(full, cfg, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    # Ray's session files go to a short private dir (its unix socket paths must stay under
    # 108 bytes, which tmp_path can exceed), removed afterwards
    ray_tmp = tempfile.mkdtemp(prefix="ray-")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    root, _ = full
    try:
        res = run_sweep(cfg, tmp_path / "ray", backend="ray", workers=1)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res.ran == 8 and res.failed == 0
    for p in (root / "cells").glob("*.json"):
        assert (tmp_path / "ray" / "cells" / p.name).read_bytes() == p.read_bytes()
    assert (tmp_path / "ray" / "summary.json").read_bytes() == \
        (root / "summary.json").read_bytes()


def test_killed_sweep_resumes_and_matches(full, cfg_data, tmp_path):
    root, _ = full
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg_data))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "takeover.cli", "sweep", str(path), "--out", str(out),
           "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "cells").glob("*.json")):
        time.sleep(0.01)  # kill right after the first cell lands, well before the last
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "cells").glob("*.json")))
    assert 1 <= done < 8, "kill the sweep mid-way"
    res = runner.invoke(app, ["sweep", str(path), "--out", str(out), "--workers", "1",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert f"8 cells: {8 - done} run, {done} already done" in " ".join(res.output.split())
    assert (out / "summary.json").read_bytes() == (root / "summary.json").read_bytes()
