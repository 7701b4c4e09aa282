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
        "train": {"rounds": 1, "episodes_per_round": 1, "epochs": 1, "batch_size": 32,
                  "seeds": 2},
        "eval": {"seeds": 2, "episodes": 1, "seed_start": 100, "round_seed_start": 200,
                 "calibration_episodes": 1, "calibration_seed_start": 300,
                 "humans": ["perfect"]},  # development seeds: no test uses the held-out block
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


FIGURES = ["timeline", "pareto", "headline", "learning_curves", "roc"]


@pytest.mark.parametrize("name", FIGURES)
def test_figures_exist_and_are_not_blank(run, name):
    res, _, _ = run
    path = res.run_dir / "figures" / f"{name}.png"
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].std()) > 0.02, f"{name} looks blank"


def test_metrics_file_has_every_metric_for_every_baseline(run):
    res, _, _ = run
    m = json.loads((res.run_dir / "metrics.json").read_text())
    assert set(m["conditions"]) == {"supervised", *BASELINES, "human_perfect"}
    for cond in m["conditions"]:
        assert set(m["conditions"][cond]) == set(METRICS), cond
        assert set(m["iqm"][cond]) == set(METRICS), cond
        assert set(m["ci"][cond]) == set(METRICS), cond
        for k, iv in m["ci"][cond].items():
            # the headline prints ci[...]["value"], --expect reads conditions: one number
            assert iv["value"] == m["conditions"][cond][k], (cond, k)
            if iv["value"] is not None:
                assert iv["lo"] <= iv["value"] + 1e-9 <= iv["hi"] + 2e-9, (cond, k, iv)
        assert set(TRIGGER_METRICS) <= set(m["triggers"][cond]), cond
    alone = m["conditions"]["agent_alone"]
    assert alone["interventions_per_episode"] == 0 and alone["human_share"] == 0
    assert m["conditions"]["always"]["interventions_per_episode"] > 0
    assert m["roc"] and all(r["n"] > 0 for r in m["roc"].values())
    assert len(m["rounds"]) == 2
    assert m["design"]["episodes_per_condition"] == 4 and not m["design"]["held_out"]
    assert "supervised - agent_alone" in m["comparisons"]
    assert "supervised - random" in m["comparisons"]
    d = m["comparisons"]["supervised - agent_alone"]["human_share"]
    assert d["diff"] == pytest.approx(m["conditions"]["supervised"]["human_share"])


def test_learning_curve_is_over_independent_fine_tuning_seeds(run):
    res, _, _ = run
    curve = res.metrics["learning_curve"]
    assert [r["round"] for r in curve] == [0, 1] and curve[0]["seeds"] == 2
    for r in curve:
        vals = r["agent_alone.success_rate.seeds"]
        assert len(vals) == 2 and r["agent_alone.success_rate"] == pytest.approx(sum(vals) / 2)
    # round 0 is the same shipped agent on the same seeds for both fine-tuning seeds
    assert curve[0]["agent_alone.success_rate.seeds"][0] == \
        curve[0]["agent_alone.success_rate.seeds"][1]
    assert (res.run_dir / "finetune-seed1" / "logs" / "train-round0").is_dir()
    # ... so it is played once, by seed 0, and seed 1 starts its curve at round 1
    assert (res.run_dir / "logs" / "round0-supervised").is_dir()
    assert sorted(p.name for p in (res.run_dir / "finetune-seed1" / "logs").glob("round*")
                  if p.is_dir()) == ["round1-agent_alone", "round1-supervised"]
    assert curve[0]["agent_alone.success_rate.ci"] == [curve[0]["agent_alone.success_rate"]] * 2


def test_every_condition_plays_the_same_seeds(run):
    from takeover.logio import read_log

    res, _, _ = run
    seeds = {}
    for cond in ("supervised", "agent_alone", "absent", "human_perfect"):
        log = read_log(res.run_dir / "logs" / cond)
        seeds[cond] = sorted(e.split("-", 1)[1] for e in log.complete)
    assert len(seeds["supervised"]) == 4
    assert all(v == seeds["supervised"] for v in seeds.values()), seeds
    assert all(int(e.rsplit("-", 1)[1]) in (100, 101) for e in seeds["supervised"])


def test_trigger_quality_has_cis_at_every_horizon(run):
    res, _, _ = run
    tq = res.metrics["trigger_quality"]
    assert set(tq) == {"ensemble", "ttc"}
    for est, per in tq.items():
        assert {"all", "cut_in", "stalled_car"} <= set(per), est
        for h in ("4s", "2s", "6s"):
            assert set(per["all"][h]) >= {"all_steps", "hazard_window"}, (est, h)
        assert set(per["all"]["lead"]) == {"lead_time", "detected", "threshold"}


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
    for fig in FIGURES:
        assert f"figures/{fig}.png" in md and f"figures/{fig}.png" in html
    for metric in ("success_rate", "interventions_per_km", "takeover_time", "rohe",
                   "false_alarm_rate", "missed_failures_per_episode"):
        assert metric in md and metric in html
    assert "| supervised | agent_alone | never | always | random | random_time | absent |" in md
    # what a reader needs first: the agent evaluated, then the invariants, then the numbers
    assert md.index("fine-tuned by hg-dagger for 1 round") < md.index("## Sanity invariants")
    assert md.index("## Sanity invariants") < md.index("## Headline")
    assert "NOT held-out" in md  # the test ran on development seeds and the report says so


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
    assert fmt_ci({"value": math.nan, "lo": math.nan, "hi": math.nan}) == "–"
    assert fmt_ci({"value": 0.5, "lo": 0.25, "hi": 0.75}) == "0.5 [0.25, 0.75]"
    assert fmt_ci({"iqm": 0.5, "lo": 0.5, "hi": 0.5}) == "0.5 [0.5, 0.5]"


def test_empty_axes_are_refused(tmp_path):
    with pytest.raises(plots.EmptyFigureError, match="no data"):
        plots.pareto({"a": (math.nan, 0.1)}, tmp_path / "p.png")
    rows = [{"round": 0, "supervised.success_rate": None}, {"round": 1}]
    with pytest.raises(plots.EmptyFigureError, match="success_rate"):
        plots.learning_curves(rows, tmp_path / "l.png", metrics=("success_rate",))
    with pytest.raises(plots.EmptyFigureError):
        plots.roc({}, tmp_path / "r.png", 4.0)  # the chance line alone is no data
    assert not (tmp_path / "p.png").exists()


def drawn_pareto(monkeypatch, *args, **kwargs):
    """The figure ``plots.pareto(*args, **kwargs)`` saved."""
    drawn = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, top=1.0: drawn.append(fig)
                        or save(fig, path, top))
    plots.pareto(*args, **kwargs)
    return drawn[0]


def test_pareto_draws_error_bars(tmp_path, monkeypatch):
    fig = drawn_pareto(monkeypatch, {"a": (1.0, 0.2), "b": (2.0, 0.1)}, tmp_path / "p.png",
                       errors={"a": ((0.5, 1.5), (0.1, 0.3)), "b": ((1.5, 2.5), (0.05, 0.2))})
    ax = fig.axes[0]
    assert len(ax.containers) == 2  # one ErrorbarContainer per condition


def test_pareto_labels_are_readable(tmp_path, monkeypatch):
    """absent / never / agent_alone land on one spot (no human time, the same failures):
    one label names them all, and no two labels overlap (the default run's layout on main
    84304ec stacked three labels on one point)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    pts = {"supervised": (10.5, 0.85), "agent_alone": (0.0, 0.97), "never": (0.0, 0.97),
           "absent": (0.0, 0.995), "random": (10.0, 0.86), "always": (40.0, 0.6),
           "human_perfect": (8.0, 0.5), "human_expert": (9.0, 0.78),
           "human_novice": (12.0, 0.9)}
    groups = plots.label_groups(pts)
    assert ["agent_alone", "never"] in groups and sum(map(len, groups)) == len(pts)
    fig = drawn_pareto(monkeypatch, pts, tmp_path / "p.png",
                       errors={k: ((x - 1, x + 1), (y - 0.04, y + 0.04))
                               for k, (x, y) in pts.items()})
    r = FigureCanvasAgg(fig).get_renderer()
    texts = list(fig.axes[0].texts)
    assert sorted(t.get_text() for t in texts) == sorted(", ".join(g) for g in groups)
    for t in texts:
        t.update_positions(r)
    boxes = [Text.get_window_extent(t, r) for t in texts]  # the text, not its leader line
    assert not [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes))
                for j in range(i) if boxes[i].overlaps(boxes[j])]


def _metrics(conds, comps):
    return {"conditions": conds, "comparisons": comps}


def _d(diff, lo, hi, p=0.5, metric="success_rate"):
    return {metric: {"diff": diff, "lo": lo, "hi": hi, "p": p}}


def test_the_random_gate_is_matched_on_requests_per_episode(tmp_path):
    """The random gate asks as often per episode as the configured gate, on the reported
    seeds, although it was matched on other (calibration) seeds; matched on the per-step
    share of request steps instead, it would ask several times as often."""
    from takeover.experiments.invariants import RANDOM_GATE, REQUEST_MATCH_TOLERANCE

    cfg = from_dict(ExperimentConfig, {
        "name": "matching", "env": {"scenarios": ["stalled_car", "sudden_brake", "cut_in"],
                                    "action_type": "discrete", "duration": 12.0, "vehicles": 6},
        "supervisor": {"gate": "threshold", "gate_kwargs": {"high": 0.08, "low": 0.05},
                       "gate_score": "ttc", "estimators": ["ttc"], "human": "perfect"},
        "train": {"rounds": 0},
        "eval": {"seeds": 1, "episodes": 40, "seed_start": 0, "baselines": ["random"],
                 "calibration_episodes": 40, "calibration_seed_start": 5000},
        "counterfactual": {"enabled": False}, "figures": False, "stats": {"bootstrap": 50},
    })
    m = run_experiment(cfg, tmp_path / "run", agent=tiny_agent()).metrics
    rg, conds = m["design"]["random_gate"], m["conditions"]
    sup, rnd = conds["supervised"]["tors_per_episode"], conds["random"]["tors_per_episode"]
    # measured: supervised 0.633, random 0.717 (13% apart) requests per episode
    assert sup > 0.5, "the configured gate must ask for the match to mean something"
    assert abs(rnd - sup) / sup <= REQUEST_MATCH_TOLERANCE, (sup, rnd, rg)
    assert rg["target"] == sup and len(rg["plays"]) == cfg.eval.calibration_plays
    assert rg["calibration_seeds"] == [5000, 5079]  # two plays, each on fresh seeds
    assert [p["first_seed"] for p in rg["plays"]] == [5000, 5040]
    # the configured gate's request is on for a whole takeover: its per-step share of
    # request steps is far above the random gate's matched per-step rate
    assert m["triggers"]["supervised"]["request_rate"] > 2 * rg["rate"]
    inv = {iv["name"]: iv for iv in m["invariants"]}[RANDOM_GATE]
    assert "not matched" not in inv["message"] and "matched tors_per_episode" in inv["message"]


def test_invariants_pass_fail_and_not_applicable():
    from takeover.experiments.invariants import RANDOM_GATE, check_invariants

    base = {"success_rate": 0.6, "safety_rate": 0.9, "unknown_outcome_rate": 0.0,
            "human_time_per_episode": 1.0, "self_initiated_per_episode": 0.0}
    conds = {c: dict(base) for c in ("supervised", "agent_alone", "never", "random", "absent")}
    conds["absent"]["success_rate"] = 0.8
    comps = {"never - agent_alone": {**_d(0.0, 0.0, 0.0, 1.0),
                                     **_d(0.0, 0.0, 0.0, 1.0, "safety_rate")},
             "supervised - absent": {**_d(-0.2, -0.3, -0.1, 0.002),
                                     **_d(0.0, -0.1, 0.1, 1.0, "safety_rate")},
             "supervised - random": _d(0.05, -0.02, 0.12)}
    got = {iv.name: iv for iv in check_invariants(_metrics(conds, comps), "average")}
    assert got["never equals agent alone (success)"].status == "pass"
    bad = got["a present human is not beaten by an absent one"]
    assert bad.status == "FAIL" and "absent 0.800" in bad.message and "-0.200" in bad.message
    gate = got[RANDOM_GATE]  # ahead, but its CI holds 0: not a pass
    assert gate.status == "unresolved" and "not resolved at this sample size" in gate.message
    assert got["human presets ordered perfect >= expert >= average >= novice"].status == "n/a"
    conds["random"]["unknown_outcome_rate"] = 0.4  # an old world: no outcome
    got = {iv.name: iv for iv in check_invariants(_metrics(conds, comps), "average")}
    assert got[RANDOM_GATE].status == "n/a"


@pytest.mark.parametrize(("diff", "lo", "hi", "beats", "at_least"), [
    (0.05, 0.01, 0.09, "pass", "pass"),              # significantly ahead
    (0.015, -0.035, 0.070, "unresolved", "pass"),    # the default run on main 84304ec
    (0.0, -0.05, 0.05, "FAIL", "pass"),              # no difference: does not beat
    (-0.01, -0.06, 0.04, "FAIL", "unresolved"),      # behind, CI holds 0
    (-0.08, -0.12, -0.03, "FAIL", "FAIL"),           # significantly behind
])
def test_a_relation_that_holds_only_for_lack_of_power_is_not_resolved(diff, lo, hi, beats,
                                                                       at_least):
    from takeover.experiments import invariants

    conds = {c: {"success_rate": 0.5, "unknown_outcome_rate": 0.0} for c in ("a", "b")}
    m = _metrics(conds, {"a - b": _d(diff, lo, hi)})
    got = (invariants.beats(m, "x", "a", "b", "success_rate"),
           invariants.at_least(m, "x", "a", "b", "success_rate"))
    assert (got[0].status, got[1].status) == (beats, at_least)
    for iv in got:
        assert iv.status in invariants.STATUSES
        assert ("not resolved at this sample size" in iv.message) == (iv.status == "unresolved")


@pytest.mark.parametrize(("random_tors", "diff", "status"), [
    (1.30, 0.05, "pass"),   # matched, the gate ahead
    (1.40, -0.05, "FAIL"),  # matched (8% apart), the gate behind
    (2.20, 0.05, "FAIL"),   # the gate ahead, but the random gate asked 69% more often
    (1.00, 0.05, "FAIL"),   # or 23% less: not the same rate either way
])
def test_the_random_gate_comparison_is_judged_only_when_requests_match(random_tors, diff,
                                                                      status):
    from takeover.experiments.invariants import (
        RANDOM_GATE,
        REQUEST_MATCH_TOLERANCE,
        check_invariants,
    )

    conds = {c: {"success_rate": 0.5, "unknown_outcome_rate": 0.0, "tors_per_episode": 1.3}
             for c in ("supervised", "random")}
    conds["random"]["tors_per_episode"] = random_tors
    got = {iv.name: iv for iv in check_invariants(
        _metrics(conds, {"supervised - random": _d(diff, diff - 0.03, diff + 0.03)}),
        "average")}[RANDOM_GATE]
    assert got.status == status, got.message
    matched = abs(random_tors - 1.3) / 1.3 <= REQUEST_MATCH_TOLERANCE
    assert ("not matched" in got.message) == (not matched), got.message
    assert got.numbers["tors_per_episode.random"] == random_tors


@pytest.mark.parametrize(("random_time", "diff", "status"), [
    (5.0, 0.05, "pass"),    # matched on human time (4% apart), the gate significantly ahead
    (5.0, -0.05, "FAIL"),   # matched, the gate behind
    (7.0, 0.05, "FAIL"),    # the random twin drove 46% more human time: not the same effort
])
def test_the_second_random_twin_is_judged_at_the_same_human_time(random_time, diff, status):
    from takeover.experiments.invariants import RANDOM_GATE_TIME, check_invariants

    conds = {c: {"success_rate": 0.5, "unknown_outcome_rate": 0.0, "tors_per_episode": 1.3,
                 "human_time_per_episode": 4.8} for c in ("supervised", "random_time")}
    conds["random_time"]["human_time_per_episode"] = random_time
    got = {iv.name: iv for iv in check_invariants(
        _metrics(conds, {"supervised - random_time": _d(diff, diff - 0.03, diff + 0.03)}),
        "average")}
    iv = got[RANDOM_GATE_TIME]
    assert iv.status == status, iv.message
    assert "human_time_per_episode" in iv.message
    assert ("not matched" in iv.message) == (random_time == 7.0), iv.message
    del conds["random_time"]  # a run without the twin does not list the check at all
    assert RANDOM_GATE_TIME not in {iv.name for iv in check_invariants(_metrics(conds, {}),
                                                                       "average")}


def test_never_differing_from_agent_alone_names_the_unasked_takeovers():
    from takeover.experiments.invariants import equals

    conds = {"never": {"success_rate": 0.7, "unknown_outcome_rate": 0.0,
                       "self_initiated_per_episode": 0.4},
             "agent_alone": {"success_rate": 0.5, "unknown_outcome_rate": 0.0}}
    iv = equals(_metrics(conds, {"never - agent_alone": _d(0.2, 0.1, 0.3, 0.01)}), "x",
                "never", "agent_alone", "success_rate")
    assert iv.status == "FAIL" and "unasked 0.400" in iv.message


def test_the_report_says_when_an_invariant_is_not_resolved():
    """The default run on main 84304ec: the gate +0.015 [-0.035, +0.070] over its matched
    random twin was printed as 'pass'; it is 'not resolved at this sample size'."""
    from takeover.experiments.invariants import check_invariants
    from takeover.experiments.report import _invariant_blocks, to_markdown

    conds = {c: {"success_rate": 0.15, "unknown_outcome_rate": 0.0, "tors_per_episode": 1.215}
             for c in ("supervised", "random")}
    conds["random"].update(success_rate=0.135, tors_per_episode=1.25)
    m = _metrics(conds, {"supervised - random": _d(0.015, -0.035, 0.070, 0.62)})
    m["invariants"] = [iv.as_dict() for iv in check_invariants(m, "average")]
    md = to_markdown(_invariant_blocks(m))
    assert "0 pass, 0 fail, 1 not resolved at this sample size" in md
    assert "NOT RESOLVED: the gate beats a random gate" in md and "+0.015" in md


def test_the_random_twins_rate_solves_for_what_a_request_costs():
    """Each request takes its takeover's steps out of the askable ones, so requests per
    episode saturate with the rate: T(r) = r L / (1 + r X). One play at any rate gives the
    rate that yields the wanted requests exactly; ``r = want / askable`` (the session-3 rule)
    stays above it (the twin asked 7-15% too often in every session-3 run)."""
    from takeover.experiments.runner import _next_rate, _rate, _secant_rate

    steps, busy = 200.0, 60.0

    def play(r):
        tors = r * steps / (1 + r * busy)
        return tors, steps - tors * busy  # requests and askable steps per episode

    want = 1.6
    for r0 in (0.01, 0.05, 0.3):
        got, askable = play(r0)
        r = _next_rate(want, got, askable, steps)
        assert play(r)[0] == pytest.approx(want, rel=1e-9), r0
    got, askable = play(0.05)
    assert play(_rate(want, askable))[0] > 1.05 * want  # the old rule over-asks
    assert _next_rate(want, 0.0, 150.0, steps) == want / 150.0  # nothing to learn from
    assert _next_rate(10.0, got, askable, steps) == 1.0  # more than a random gate can ask

    def human_time(r):  # saturating, slope 0.6 in log-log
        return 30.0 * r ** 0.6

    r1 = _secant_rate(8.0, [(0.02, human_time(0.02))])
    assert human_time(r1) == pytest.approx(8.0, rel=1e-9)
    assert _secant_rate(8.0, [(0.02, 0.0)]) == 0.04  # no human time at all: ask twice as often
