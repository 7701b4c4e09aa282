"""The human-model calibration report and the sensitivity sweep (tiny sizes, dev seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from takeover.envs import OUTCOMES
from takeover.experiments.human_calibration import (
    TARGETS,
    check_targets,
    drive_alone,
    sensitivity,
    write_report,
)


def test_every_claimed_target_is_inside_the_scatter_of_a_26_driver_study():
    checks = check_targets(26, studies=500, seed=0)
    assert [c.target for c in checks] == list(TARGETS)
    for c in checks:
        assert c.lo <= c.value <= c.hi
        assert c.inside, c


def test_drive_alone_names_each_episodes_outcome():
    oc = drive_alone("novice", "takeover/CutIn-v1", [0, 1, 2, 3], "discrete")
    assert oc.shape == (4,) and set(oc) <= set(OUTCOMES)
    assert np.array_equal(oc, drive_alone("novice", "takeover/CutIn-v1", [0, 1, 2, 3],
                                          "discrete"))


def test_sensitivity_sweeps_one_parameter_at_a_time_and_validates_first():
    calls = []

    def result(skill, overrides):
        calls.append((skill, overrides))
        return (overrides["lapse_prob"], 0.0, 1.0) if "lapse_prob" in overrides else 2.0

    rows = sensitivity(result, grid={"lapse_prob": (0.0, 0.5), "headway": (1.0,)})
    assert [(r.parameter, r.value, r.result) for r in rows] == [
        ("lapse_prob", 0.0, 0.0), ("lapse_prob", 0.5, 0.5), ("headway", 1.0, 2.0)]
    assert math.isnan(rows[2].lo) and rows[0].hi == 1.0
    assert calls[0] == ("average", {"lapse_prob": 0.0})
    calls.clear()
    with pytest.raises(ValueError, match="danger_reaction"):  # below the 0.7 s floor
        sensitivity(result, grid={"headway": (1.0,), "danger_reaction": (0.3,)})
    assert calls == []  # refused before running anything


def test_report_writes_markdown_and_figure(tmp_path):
    md = write_report(tmp_path, n_samples=400, n_drive=3, env_ids=["takeover/Merge-v1"], seed=0)
    text = md.read_text()
    for needle in ("Eriksson & Stanton 2017", "Zhang et al. 2019", "Green 2000",
                   "| takeover/Merge-v1 | discrete | novice |", "![calibration]"):
        assert needle in text
    png = md.with_suffix(".png")
    assert png.stat().st_size > 10_000  # a drawn 3-panel figure (measured ~90 kB)


def test_cli_humans_report(tmp_path):
    from takeover.cli import app

    res = CliRunner().invoke(app, ["humans", "report", "--out", str(tmp_path), "--samples",
                                   "200", "--episodes", "1", "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "human_calibration.md").exists()
