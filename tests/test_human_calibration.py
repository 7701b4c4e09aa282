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
    oc = drive_alone("novice", "takeover/CutIn-v2", [0, 1, 2, 3], "discrete")
    assert oc.shape == (4,) and set(oc) <= set(OUTCOMES)
    assert np.array_equal(oc, drive_alone("novice", "takeover/CutIn-v2", [0, 1, 2, 3],
                                          "discrete"))



@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_the_expert_drives_well_and_far_better_than_the_novice(action_type):
    """Issue 10 item 8 / issue 17: the teachers must drive well for cloning them to help.
    Pooled over the five hazards, development seeds 0-19 each (100 episodes), measured:
    expert 0.90 vs novice 0.45 (continuous), 0.84 vs 0.35 (discrete); the discrete
    expert crashed in 6 of 40 SuddenBrake episodes (seeds 0-39; 102 of 200 before the
    driving was rebuilt on the careful driver's algorithm). Thresholds: arrival 0.1
    below the measured values, the gap (0.45, 0.49) 0.15 below, and at most 12 crashes."""
    from takeover.envs import HAZARD_IDS

    seeds = list(range(20))
    arrived = {s: np.mean(np.concatenate([drive_alone(s, e, seeds, action_type)
                                          for e in HAZARD_IDS]) == "arrived")
               for s in ("expert", "novice")}
    assert arrived["expert"] >= (0.8 if action_type == "continuous" else 0.74), arrived
    assert arrived["expert"] - arrived["novice"] >= 0.3, arrived
    crashes = drive_alone("expert", "takeover/SuddenBrake-v2", list(range(40)), action_type)
    assert np.sum(crashes == "collision") <= 12

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
    md = write_report(tmp_path, n_samples=400, n_drive=3, env_ids=["takeover/Merge-v2"], seed=0)
    text = md.read_text()
    for needle in ("Eriksson & Stanton 2017", "Zhang et al. 2019", "Green 2000",
                   "| takeover/Merge-v2 | discrete | novice |", "![calibration]"):
        assert needle in text
    png = md.with_suffix(".png")
    assert png.stat().st_size > 10_000  # a drawn 3-panel figure (measured ~90 kB)


def test_cli_humans_report(tmp_path):
    from takeover.cli import app

    res = CliRunner().invoke(app, ["humans", "report", "--out", str(tmp_path), "--samples",
                                   "200", "--episodes", "1", "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "human_calibration.md").exists()
