"""The run report: non-empty figures, every metric for every baseline, Markdown and HTML
saying the same thing."""

from __future__ import annotations

import json
import math

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from gymnasium import spaces

from takeover.config import from_dict
from takeover.experiments import plots
from takeover.experiments.config import BASELINES, ExperimentConfig
from takeover.experiments.metrics import METRICS, TRIGGER_METRICS
from takeover.experiments.report import Block, to_html, to_markdown
from takeover.experiments.runner import run_experiment


def tiny_agent(seed: int = 0):
    from stable_baselines3.common.policies import ActorCriticPolicy

    from takeover.agents.policy import EnsembleAgent

    torch.manual_seed(seed)
    obs, act = spaces.Box(-1, 1, (9, 7), np.float32), spaces.Discrete(5)
    return EnsembleAgent([ActorCriticPolicy(obs, act, lambda _: 1e-3, net_arch=[8])
                          for _ in range(3)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = from_dict(ExperimentConfig, {
        "name": "report", "seed": 1,
        "env": {"scenarios": ["cut_in", "stalled_car"], "action_type": "discrete",
                "duration": 12.0, "vehicles": 6},
        "supervisor": {"gate": "threshold", "gate_kwargs": {"high": 0.1, "min_dwell": 2},
                       "gate_score": "ttc", "estimators": ["ensemble", "ttc"],
                       "human": "expert", "handover_kwargs": {"timeout": 2.0}},
        "train": {"rounds": 1, "episodes_per_round": 1, "epochs": 1, "batch_size": 32},
        "eval": {"seeds": 2, "episodes": 1},
        "counterfactual": {"horizon": 1.0, "sample_every": 4},
        "stats": {"bootstrap": 50},
    })
    out = tmp_path_factory.mktemp("report") / "run"
    ticks = []

    def progress(total):
        ticks.append(total)
        return lambda msg: ticks.append(msg)

    agent = tiny_agent()
    before = [p.detach().clone() for p in agent.policies[0].parameters()]
    res = run_experiment(cfg, out, agent=agent, progress=progress)
    changed = any(not torch.equal(a, b) for a, b in zip(before, agent.policies[0].parameters(),
                                                          strict=True))
    return res, ticks, changed


def test_progress_counts_every_episode(run):
    _res, ticks, _ = run
    assert ticks[0] == len(ticks) - 1  # the announced total matches the episodes played


@pytest.mark.parametrize("name", ["timeline", "pareto", "learning_curves", "roc"])
def test_figures_exist_and_are_not_blank(run, name):
    res, _, _ = run
    path = res.run_dir / "figures" / f"{name}.png"
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].std()) > 0.02, f"{name} looks blank"


def test_metrics_file_has_every_metric_for_every_baseline(run):
    res, _, _ = run
    m = json.loads((res.run_dir / "metrics.json").read_text())
    assert set(m["conditions"]) == {"supervised", *BASELINES}
    for cond in m["conditions"]:
        assert set(m["conditions"][cond]) == set(METRICS), cond
        assert set(m["iqm"][cond]) == set(METRICS), cond
        assert set(TRIGGER_METRICS) <= set(m["triggers"][cond]), cond
    alone = m["conditions"]["agent_alone"]
    assert alone["interventions_per_episode"] == 0 and alone["human_share"] == 0
    assert m["conditions"]["always"]["interventions_per_episode"] > 0
    assert m["roc"] and all(r["n"] > 0 for r in m["roc"].values())
    assert len(m["rounds"]) == 2


def test_rounds_collect_human_data_and_fine_tune_the_agent(run):
    res, _, changed = run
    first = res.metrics["rounds"][0]
    assert first["new_human_steps"] > 0 and first["bc_loss_first"] is not None
    assert changed, "HG-DAgger must update the agent's policies in place"
    assert res.metrics["rounds"][1]["human_steps_total"] == first["new_human_steps"]


def test_csv_matches_json(run):
    res, _, _ = run
    m = json.loads((res.run_dir / "metrics.json").read_text())
    rows = (res.run_dir / "metrics.csv").read_text().strip().splitlines()[1:]
    got = {(r.split(",")[0], r.split(",")[1]): r.split(",")[2] for r in rows}
    for cond, vals in m["conditions"].items():
        for k, v in vals.items():
            assert got[(cond, k)] == ("" if v is None else repr(v))


def test_report_has_tables_and_figures(run):
    res, _, _ = run
    md = res.report.read_text()
    html = (res.run_dir / "report.html").read_text()
    for fig in ("timeline", "pareto", "learning_curves", "roc"):
        assert f"figures/{fig}.png" in md and f"figures/{fig}.png" in html
    for metric in ("success_rate", "interventions_per_km", "takeover_time", "rohe",
                   "false_alarm_rate", "missed_failures_per_episode"):
        assert metric in md and metric in html
    assert "| supervised | agent_alone | never | always | random |" in md


def test_markdown_and_html_render_the_same_blocks():
    blocks = [Block("h1", "T"), Block("p", "a < b"), Block("table", (["x", "y"], [["1", "2"]])),
              Block("img", ("f.png", "cap"))]
    md, html = to_markdown(blocks), to_html(blocks, "T")
    assert "| x | y |" in md and "![cap](f.png)" in md
    assert "<td>1</td>" in html and "a &lt; b" in html and "src='f.png'" in html


def test_pareto_front_keeps_only_non_dominated_points(tmp_path):
    pts = {"a": (0.0, 0.5), "b": (1.0, 0.1), "c": (1.0, 0.6), "d": (2.0, 0.1),
           "e": (math.nan, 0.0)}
    assert plots.pareto_front(pts) == ["a", "b"]
    assert plots.pareto(pts, tmp_path / "p.png").stat().st_size > 1000


def test_undefined_values_print_as_a_dash():
    from takeover.experiments.report import fmt, fmt_ci

    assert fmt(None) == fmt(math.nan) == "–"
    assert fmt_ci({"iqm": math.nan, "lo": math.nan, "hi": math.nan}) == "–"
    assert fmt_ci({"iqm": 0.5, "lo": 0.25, "hi": 0.75}) == "0.5 [0.25, 0.75]"
