"""``takeover run`` end to end on a tiny config: run folder, determinism, re-run from the
folder, CI expectations and JUnit output."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
import yaml
from helpers import tiny_checkpoint
from typer.testing import CliRunner

from takeover.cli import app

runner = CliRunner()




def tiny_config(agent_path, **over) -> dict:
    """Two hazards, 12 s episodes, a TTC-threshold gate (fires whatever the agent does),
    the expert human, one round of HG-DAgger."""
    cfg = {
        "name": "tiny", "seed": 3,
        "env": {"scenarios": ["cut_in", "sudden_brake"], "action_type": "discrete",
                "duration": 12.0, "vehicles": 6},
        "agent": {"name": str(agent_path)},
        "supervisor": {"gate": "threshold", "gate_kwargs": {"high": 0.1, "min_dwell": 2},
                       "gate_score": "ttc", "estimators": ["ensemble", "ttc"],
                       "human": "expert", "handover_kwargs": {"timeout": 2.0}},
        "train": {"method": "hg-dagger", "rounds": 1, "episodes_per_round": 1, "epochs": 1,
                  "batch_size": 32},
        "eval": {"seeds": 2, "episodes": 1, "round_episodes": 1, "seed_start": 300,
                 "round_seed_start": 400, "calibration_episodes": 1,
                 "calibration_seed_start": 500},  # development seeds: never held out
        "counterfactual": {"horizon": 1.0, "sample_every": 5},
        "stats": {"bootstrap": 50},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
    return cfg


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    agent = tiny_checkpoint(root / "agent")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(agent)))
    return path


@pytest.fixture(scope="module")
def first_run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    res = runner.invoke(app, ["run", str(tiny), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return out, res


def test_run_writes_a_complete_run_folder(first_run):
    out, res = first_run
    assert str(out / "report.md") in res.output
    for name in ("config.yaml", "overrides.txt", "provenance.json", "metrics.json",
                 "metrics.csv", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0 or name == "overrides.txt", name
    prov = json.loads((out / "provenance.json").read_text())
    assert {"git_rev", "git_dirty", "versions", "machine", "seeds"} <= set(prov)
    assert prov["versions"]["torch"] != "-"
    logs = sorted(p.name for p in (out / "logs").iterdir())
    assert "supervised" in logs and "train-round0" in logs


def test_logs_are_readable_and_complete(first_run):
    from takeover.logio import read_log

    out, _ = first_run
    res = read_log(out / "logs" / "supervised")
    assert res.ok and len(res.complete) == 4  # 2 seeds x 2 scenarios x 1 episode


def test_same_config_and_seed_give_identical_metrics(first_run, tiny, tmp_path):
    out, _ = first_run
    res = runner.invoke(app, ["run", str(tiny), "--out", str(tmp_path / "b"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "metrics.json").read_bytes() == (out / "metrics.json").read_bytes()
    assert (tmp_path / "b" / "metrics.csv").read_bytes() == (out / "metrics.csv").read_bytes()


def test_one_process_gives_the_metrics_of_two(first_run, tiny, tmp_path, monkeypatch):
    """The final evaluation plays a condition's scenarios on two forked workers
    (``episodes.run_jobs``); in one process the metrics are the same, byte for byte."""
    from takeover.experiments import episodes as ep

    monkeypatch.setattr(ep, "PROCESSES", 1)
    out, _ = first_run
    res = runner.invoke(app, ["run", str(tiny), "--out", str(tmp_path / "one"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "one" / "metrics.json").read_bytes() == \
        (out / "metrics.json").read_bytes()


def test_rerun_from_its_own_folder_reproduces_it(first_run, tmp_path):
    out, _ = first_run
    res = runner.invoke(app, ["run", str(out), "--out", str(tmp_path / "c"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "metrics.json").read_bytes() == (out / "metrics.json").read_bytes()


def test_another_seed_changes_the_metrics(first_run, tiny, tmp_path):
    out, _ = first_run
    res = runner.invoke(app, ["run", str(tiny), "seed=4", "--set", "tensorboard=true",
                              "--out", str(tmp_path / "d"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "overrides.txt").read_text() == "seed=4\ntensorboard=true\n"
    assert list((tmp_path / "d" / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "d" / "metrics.json").read_bytes() != (out / "metrics.json").read_bytes()


def test_interrupted_run_resumes_to_the_uninterrupted_metrics(first_run, tiny, tmp_path,
                                                              monkeypatch):
    """Interrupted after the first condition of the final evaluation (and one episode of the
    second), ``takeover run --resume`` replays every completed episode (and its
    counterfactual labels) instead of playing it again and writes the same metrics.json as
    the uninterrupted run, byte for byte."""
    from takeover.experiments import episodes as ep
    from takeover.experiments.config import load_config
    from takeover.experiments.runner import n_episodes, run_experiment
    from takeover.folders import claimed

    out, _ = first_run
    cfg, _ = load_config(tiny)
    run_dir = tmp_path / "r"
    ticks: list[str] = []

    def stop_in_agent_alone(_total):
        def tick(msg: str) -> None:
            ticks.append(msg)
            if msg.startswith("eval agent_alone"):
                raise KeyboardInterrupt  # as a SIGINT reaching interrupt.check()
        return tick

    with pytest.raises(KeyboardInterrupt), claimed(run_dir):  # as `takeover run` claims it
        run_experiment(cfg, run_dir, progress=stop_in_agent_alone)
    assert not (run_dir / "metrics.json").exists()
    played_before = len(ticks)
    assert sum(t.startswith("eval supervised") for t in ticks) == 4  # 2 scenarios x 2 seeds

    played: list[int] = []
    run_batch = ep.Rollouts.run_batch

    def counting(self, condition, scenario, seeds, *a, **k):
        played.extend(seeds)
        return run_batch(self, condition, scenario, seeds, *a, **k)

    monkeypatch.setattr(ep.Rollouts, "run_batch", counting)
    monkeypatch.setattr(ep, "PROCESSES", 1)  # count in this process (workers are forks)
    res = runner.invoke(app, ["run", "--resume", str(run_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (run_dir / "metrics.json").read_bytes() == (out / "metrics.json").read_bytes()
    # every episode the first attempt completed was replayed, not played again: the
    # resumed run played only the rest
    assert len(played) == n_episodes(cfg) - played_before > 0
    assert json.loads((run_dir / "provenance.json").read_text())["resumed"]
    again = runner.invoke(app, ["run", "--resume", str(run_dir), "--quiet"])
    assert again.exit_code == 0 and "nothing to resume" in again.output


def test_expectations_and_junit(first_run, tiny, tmp_path):
    out, _ = first_run
    m = json.loads((out / "metrics.json").read_text())["conditions"]["supervised"]
    junit = tmp_path / "junit.xml"
    res = runner.invoke(app, [
        "run", str(tiny), "--out", str(tmp_path / "e"), "--quiet", "--junit", str(junit),
        "--expect", f"success_rate>={m['success_rate']}",
        "--expect", "agent_alone.interventions_per_episode<=0",
        "--expect", "human_share>1.5",
    ])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "1 expectation(s) failed" in text and "human_share>1.5" in text
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["human_share>1.5"]


def test_unknown_expectation_metric_is_named(tiny, tmp_path):
    res = runner.invoke(app, ["run", str(tiny), "--out", str(tmp_path / "f"), "--quiet",
                              "--expect", "sucess_rate>=0.5", "train.rounds=0",
                              "eval.seeds=1", "counterfactual.enabled=false"])
    assert res.exit_code == 2
    assert "Did you mean 'success_rate'" in " ".join(res.output.split())


def test_refuses_to_overwrite_a_finished_run(first_run, tiny):
    out, _ = first_run
    res = runner.invoke(app, ["run", str(tiny), "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "already" in res.output


def _human_records(n=64, seed=0):
    from takeover.records import StepRecord

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = np.array([float(rng.integers(0, 5))], np.float32)
        out.append(StepRecord(
            episode=f"e{i // 16}", step=i % 16, time=0.1 * (i % 16 + 1), wall_time=0.0,
            obs=rng.uniform(-1, 1, (9, 7)).astype(np.float32), agent_action=a * 0,
            member_actions=None, human_action=a, action=a, controller="human",
            phase="human", terminated=i % 16 == 15, reason="collision" if i % 16 == 15 else ""))
    return [out[k:k + 16] for k in range(0, n, 16)]


@pytest.mark.parametrize("method", ["hg-dagger", "thrifty"])
def test_finetune_updates_every_member(tmp_path, method):
    from takeover.agents import load_agent
    from takeover.experiments.rounds import finetune

    agent = load_agent(tiny_checkpoint(tmp_path / "a"))
    before = [[p.detach().clone() for p in pol.parameters()] for pol in agent.policies]
    losses = finetune(agent, _human_records(), method=method, epochs=2, batch_size=16,
                      lr=1e-2, seed=0)
    assert len(losses) == 2 and all(np.isfinite(losses))
    for b, pol in zip(before, agent.policies, strict=True):
        assert any(not torch.equal(x, y) for x, y in zip(b, pol.parameters(), strict=True))


def test_finetune_without_human_data(tmp_path):
    from takeover.agents import load_agent
    from takeover.experiments.rounds import finetune

    agent = load_agent(tiny_checkpoint(tmp_path / "a"))
    assert finetune(agent, [], method="hg-dagger", epochs=1, batch_size=8, lr=1e-3,
                    seed=0) == []
    assert finetune(agent, _human_records(), method="none", epochs=1, batch_size=8, lr=1e-3,
                    seed=0) == []


def test_default_config_has_the_sample_sizes_the_comparisons_need():
    """Issue 11: >= 200 held-out episodes per condition (half-width about 0.07 at p = 0.5),
    each round on >= 100, presets and the absent human for the invariants."""
    from takeover.experiments.config import HELD_OUT_SEED, load_config

    cfg, _ = load_config(None)
    per_condition = cfg.eval.seeds * cfg.eval.episodes * len(cfg.env.scenarios)
    assert per_condition >= 200
    assert cfg.eval.seeds * cfg.eval.round_episodes * len(cfg.env.scenarios) >= 100
    assert cfg.train.seeds >= 3  # the learning curve's CI is over fine-tuning seeds
    assert cfg.eval.seed_start >= HELD_OUT_SEED and cfg.eval.round_seed_start >= HELD_OUT_SEED
    assert {"agent_alone", "never", "random", "random_time", "absent"} <= set(cfg.eval.baselines)
    # the random gate is matched on the calibration block, never on the seeds it reports
    assert 200_000 <= cfg.eval.calibration_seed_start < cfg.eval.calibration_seed_start \
        + cfg.eval.calibration_episodes * cfg.eval.seeds * cfg.eval.calibration_plays <= 300_000
    assert {"perfect", "expert", "novice"} <= set(cfg.eval.humans)
    assert cfg.metrics.horizons[0] == 4.0


def test_default_run_with_the_shipped_novice(tmp_path):
    """The embedded default on the shipped agent, shrunk to 10 episodes per condition on
    development seeds (the full default plays 200 held-out episodes per condition; tests never
    use the held-out block): a full report with every metric for every condition."""
    from takeover.experiments.metrics import METRICS

    pytest.importorskip("takeover.agents.build_shipped")
    res = runner.invoke(app, ["run", "--out", str(tmp_path / "default"), "--quiet",
                              "eval.episodes=2", "eval.round_episodes=1", "eval.seed_start=10",
                              "eval.round_seed_start=20", "eval.humans=[expert]",
                              "eval.calibration_episodes=1", "eval.calibration_seed_start=30",
                              "counterfactual.sample_every=30", "train.seeds=2"])
    if res.exit_code == 2 and "missing" in res.output:
        pytest.skip("shipped checkpoints not built")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert set(m["conditions"]) == {"supervised", "agent_alone", "never", "always", "random",
                                    "random_time", "absent", "human_expert"}
    for cond, vals in m["conditions"].items():
        assert set(vals) == set(METRICS), cond
    assert len(m["rounds"]) == 3 and m["rounds"][0]["new_human_steps"] > 0
    assert [r["seeds"] for r in m["learning_curve"]] == [2, 2, 2]
    assert {"q_risk", "novelty", "ttc"} <= set(m["roc"])
    assert m["agent"]["evaluated"].startswith("`novice` fine-tuned by hg-dagger for 2")
    assert {iv["status"] for iv in m["invariants"]} <= {"pass", "unresolved", "FAIL", "n/a"}
    for fig in ("timeline", "pareto", "headline", "learning_curves", "roc"):
        assert (tmp_path / "default" / "figures" / f"{fig}.png").stat().st_size > 5000


def test_random_twins_draw_a_stream_per_scenario():
    """Every scenario plays the same episode seeds, so a random gate seeded only by the run
    seed would ask on the same steps in all of them (200 episodes, 40 streams); each
    scenario gets its own seed, and the same scenario always the same gate."""
    from takeover.experiments.config import ExperimentConfig
    from takeover.experiments.episodes import Condition, Rollouts

    roll = Rollouts(ExperimentConfig(), None, None)
    cond = Condition("random", "random", {"rate": 0.05, "seed": 0})
    seeds = {s: roll.gate(cond, s).seed for s in ("sudden_brake", "cut_in", "merge")}
    assert len(set(seeds.values())) == 3, seeds
    assert roll.gate(cond, "cut_in") is roll.gate(cond, "cut_in")
    assert roll.gate(Condition("random", "random", {"rate": 0.05, "seed": 1}),
                     "cut_in").seed != seeds["cut_in"]
