"""Issue 6 acceptance: HG-DAgger with the expert scripted human makes the shipped novice
fail less on held-out seeds and need fewer interventions, without buying safety by
crawling (distance per episode stays near the novice's).

The learning curve comes from ``run_rounds``: every round is evaluated on the same held-out
seeds (``round`` stream), disjoint from the training episodes' seeds (``train`` stream).
"""

from __future__ import annotations

import pytest
import torch

from takeover.experiments.config import load_config
from takeover.experiments.rounds import run_rounds
from takeover.experiments.runner import Experiment

BASE = [
    "agent.name=novice",  # the single shipped PPO novice
    "supervisor.gate=human", "supervisor.human=expert",
    "supervisor.estimators=[q_risk,ttc]", "supervisor.gate_score=ttc",
    "eval.baselines=[agent_alone]", "counterfactual.enabled=false",
    "eval.round_seed_start=2000",  # development seeds: tests never use the held-out block
]


def curve(tmp_path, overrides: list[str]) -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg, _ = load_config("hg_dagger", BASE + overrides)
        exp = Experiment(cfg, tmp_path)
        try:
            return run_rounds(exp)
        finally:
            exp.close()
    finally:
        torch.set_num_threads(threads)


def assert_learned(rows: list[dict], *, fail_drop: float, km_keep: float = 0.8) -> None:
    first, last = rows[0], rows[-1]
    f0, f1 = first["agent_alone.failure_rate"], last["agent_alone.failure_rate"]
    assert f1 <= f0 - fail_drop, f"agent-alone failure {f0:.2f} -> {f1:.2f}: {rows}"
    i0 = first["supervised.interventions_per_episode"]
    i1 = last["supervised.interventions_per_episode"]
    assert i1 < i0, f"interventions per episode {i0:.2f} -> {i1:.2f}: {rows}"
    s0, s1 = first["supervised.human_share"], last["supervised.human_share"]
    assert s1 < s0, f"human-driven share {s0:.3f} -> {s1:.3f}"
    # safer, not slower: the anchor keeps the novice's progress
    k0, k1 = first["agent_alone.km_per_episode"], last["agent_alone.km_per_episode"]
    assert k1 >= km_keep * k0, f"agent-alone km/episode {k0:.3f} -> {k1:.3f}"
    assert all(r["aggregate_size"] > 0 for r in rows[:-1])


@pytest.mark.xfail(strict=True, reason=(
    "issue 17: with the teachers rebuilt on the careful driver (the expert alone arrives in "
    "0.93 of StalledCar dev seeds 0-59, discrete) agent-alone failure measured 0.85 -> 1.00 "
    "-> 1.00 over the rounds (dev seeds 2000-2039; supervised success 0.875 -> 0.875 -> "
    "0.775; 0.85 -> 0.675 -> 0.80 with the old teachers), short of the 0.2 drop asserted. "
    "What blocks it, measured on 12 supervised episodes: 848 of 1191 raw labels are 'idle' "
    "(a human presses 'slower' once per 5 m/s and holds 'idle'; the target speed it moves "
    "is not in the observation), so the memoryless clone's argmax is 'idle' from TTC 6.2 s "
    "to the crash; executed labels ('slower' while braking) make it stop instead; class-"
    "balanced resampling leaves arrival at the novice's 0.125. Still failing in v2, where "
    "the setpoint is observed: 78% of the expert's labels are 'idle', and a net fitted to "
    "1,325 labels finds its 'slower' presses in only 10-43% of held-out cases"))
def test_hg_dagger_improves_the_novice_on_one_hazard(tmp_path):
    """Fast variant: one scenario, 40 evaluation episodes per round (development seeds
    2000-2039), 2 rounds. Measured on seed blocks 2000 and 3000: agent-alone failure drops
    0.53 -> 0.15 and 0.78 -> 0.38, km/episode keeps 0.89 and 0.86 of the novice's (10
    episodes per round were too few: the km check failed on both blocks)."""
    rows = curve(tmp_path, ["env.scenarios=[stalled_car]", "train.rounds=2",
                            "train.episodes_per_round=6", "eval.seeds=1",
                            "eval.round_episodes=40"])
    assert len(rows) == 3
    assert_learned(rows, fail_drop=0.2)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "issue 17: with the session-3 novice and teachers, agent-alone failure measured 0.90 -> "
    "0.88 -> 0.98 -> 0.98 over 3 rounds (supervised success 0.40 -> 0.48), short of the 0.15 "
    "drop asserted; it passed with the session-3 novice and the old teachers. Observing "
    "the setpoint (v2) did not fix it: see the one-hazard xfail"))
def test_hg_dagger_improves_the_novice_on_every_hazard(tmp_path):
    """The acceptance run: all five hazards, 10 held-out seeds, 3 rounds (the numbers of
    the closing note)."""
    rows = curve(tmp_path, ["train.rounds=3", "eval.seeds=10", "eval.round_episodes=1"])
    assert len(rows) == 4
    assert_learned(rows, fail_drop=0.15)
