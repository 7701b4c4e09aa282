"""Each learner improves the agent alone in a small stalled-car setting, measured on a
held-out-style block of development seeds (5000..5019; collection seeds from 0), through
the same round loop as ``takeover run learning`` (``rounds.run_arm``).

In the v1 world success is ``arrived``, so the tests judge arrival (a policy that learns to
stop in front of the stalled car is safe but does not deliver: a do-nothing policy must not
pass). Thresholds: measured values with the margins stated at each assertion; the runs are
deterministic (torch on one thread, fixed seeds). Where a method does not yet improve
arrival, the test is a strict xfail whose reason carries the measured values.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from takeover.config import ConfigError, from_dict
from takeover.experiments.rounds import LearningConfig, held_out_seeds, resolve_agent_path, run_arm

Q_AGENT = "agents/pretrained/novice-dqn"


def arm(tmp_path: Path, method: str, rounds: int = 1, episodes: int = 4,
        learning: dict | None = None, **kwargs) -> list:
    cfg = from_dict(LearningConfig, {
        "name": "t", "env": {"scenarios": ["stalled_car"], "action_type": "discrete"},
        "supervisor": {"gate": "human", "gate_score": "ttc", "estimators": ["ttc"],
                       "human": "expert", "handover_kwargs": {"timeout": 5.0}},
        "learning": {"methods": [method], "humans": ["expert"], "rounds": rounds,
                     "episodes_per_round": episodes, "eval_episodes": 20, "plain_episodes": 0,
                     "eval_seed": 5000, "train_seed": 0, "bc_agent": "novice",
                     "q_agent": Q_AGENT, "learner_kwargs": {method: kwargs},
                     **(learning or {})},
        "stats": {"bootstrap": 50}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_arm(cfg, method, "expert", 0, tmp_path, held_out_seeds(cfg))
    finally:
        torch.set_num_threads(threads)


def gains(rows: list) -> tuple[float, float, float, float]:
    """(arrival gain, safety gain, distance ratio, human-minutes) from round 0 to the last."""
    first, last = rows[0], rows[-1]
    a0, a1 = first["arrived"]["stalled_car"], last["arrived"]["stalled_car"]
    s0, s1 = first["safe"]["stalled_car"], last["safe"]["stalled_car"]
    k0, k1 = first["km"]["stalled_car"], last["km"]["stalled_car"]
    return a1 - a0, s1 - s0, k1 / k0, last["human_minutes"]


# v2 (main 8d06d64, session 4): 0.15 -> 0.10 (gain -0.05), safe 0.15 -> 0.10, km x0.96.
# measured on v1 (main 9863aa8: novice, expert human, 4 supervised episodes, 20 dev seeds
# 5000..5019): arrival 0.10 -> 0.00, safe 0.10 -> 0.95, km/episode 0.254 -> 0.167 (x0.66),
# 0.56 human-min: the labels teach stopping, not passing. The expert driving alone (gate
# always) arrives in 0.35 of 100 held-out stalled-car episodes and collides in 0.36, the
# novice alone 0.19: cloning cannot add 0.25. With labels="delivered" (only arrived
# episodes cloned; 2 rounds of 6): 0.10 -> 0.10 -> 0.05, km x0.90 (no longer stops)
@pytest.mark.xfail(strict=True, reason=(
    "v1: HG-DAgger lowers stalled-car arrival 0.10 -> 0.00 (safe 0.10 -> 0.95: it learns to "
    "stop) on dev seeds 5000..5019; the expert alone arrived in 0.35 of held-out episodes. "
    "With the teachers rebuilt on the careful driver (expert alone 0.86 discrete held-out) "
    "the arrival gain is still -0.05. v2 (setpoint observed, session 4): 0.15 -> 0.10, safe "
    "0.15 -> 0.10, km x0.96, 0.30 human-min: observing the setpoint did not fix cloning (78% "
    "of the expert's labels are idle; a fresh 256x256 net fitted to 1325 of them predicts "
    "held-out episodes' 'slower' with recall 0.1-0.43)"))
def test_hg_dagger_improves_the_novice(tmp_path):
    gain, _, dist, minutes = gains(arm(tmp_path, "hg-dagger", epochs=10))
    assert gain >= 0.10  # the smallest gain 20 episodes resolve (2 arrivals)
    assert dist >= 0.8  # not bought by stopping early
    assert 0.0 < minutes < 2.0


# measured on v1 (main 9863aa8): arrival 0.10 -> 0.00, safe 0.10 -> 0.80, km x0.67
# (the refit itself is checked in test_bc)
@pytest.mark.xfail(strict=True, reason=(
    "v1: Thrifty lowers stalled-car arrival 0.10 -> 0.00 (safe 0.10 -> 0.80) on dev seeds "
    "5000..5019, the same labels as HG-DAgger; gain -0.05 with the rebuilt teachers"))
def test_thrifty_improves_the_novice(tmp_path):
    gain, _, dist, _ = gains(arm(tmp_path, "thrifty", epochs=10, risk_epochs=20))
    assert gain >= 0.10  # as for HG-DAgger
    assert dist >= 0.8


NO_DQN = not resolve_agent_path(Q_AGENT).exists()
PVP_REASON = ("v1, shipped novice-dqn (plain arrival 0.725 held-out): PVP on dev seeds "
              "5000..5019, 2 rounds of 4 expert-supervised episodes: arrival 0.15 -> 0.00, "
              "safe 0.15 -> 0.75, km x0.55 (it learns to stop: the expert's driving it "
              "values stops or collides behind the stalled car); gain -0.20 with the rebuilt "
              "teachers")
RLIF_REASON = ("v1, shipped novice-dqn: RLIF (task_reward=0.05, conservative=0, 8000 prior "
               "plain-traffic steps) on dev seeds 5000..5019, 2 rounds: arrival 0.15 -> "
               "0.15 -> 0.10, km x1.01; the paper's reward-free form (lr=1e-3, 1000 steps, "
               "CQL 1): 0.15 -> 0.00, km x0.67; gain -0.05 with the rebuilt teachers")


@pytest.mark.skipif(NO_DQN, reason="the DQN starting agent is not built")
def test_the_shipped_dqn_drives_plain_traffic():
    """The off-policy start of PVP / RLIF arrives in plain traffic (the previous recipe
    collided in every episode)."""
    import numpy as np

    from takeover.agents.learners.offpolicy import load_q_agent
    from takeover.agents.rollout import run_episodes

    agent = load_q_agent(resolve_agent_path(Q_AGENT))
    eps = run_episodes(agent.predict, "takeover/Plain-v2", list(range(6000, 6050)),
                       action_type="discrete")
    # measured 0.76 on these 50 dev seeds (0.725 [0.665, 0.785] on 200 held-out ones);
    # 0.6 is 2.5 binomial standard errors (0.06) below
    assert np.mean([e.outcome == "arrived" for e in eps]) >= 0.6


@pytest.mark.skipif(NO_DQN, reason="the DQN starting agent is not built")
@pytest.mark.xfail(strict=True, reason=PVP_REASON)
def test_pvp_improves_the_dqn(tmp_path):
    gain, _, dist, _ = gains(arm(tmp_path, "pvp", rounds=2, lr=3e-4))
    assert gain >= 0.10
    assert dist >= 0.8


@pytest.mark.skipif(NO_DQN, reason="the DQN starting agent is not built")
@pytest.mark.xfail(strict=True, reason=RLIF_REASON)
def test_rlif_improves_the_dqn(tmp_path):
    gain, _, dist, _ = gains(arm(tmp_path, "rlif", rounds=2, gradient_steps=500,
                                 task_reward=0.05, conservative=0.0, prior_steps=8000))
    assert gain >= 0.10
    assert dist >= 0.8


def test_intent_dagger_improves_the_novice_intent(tmp_path):
    """HG-DAgger on the expert's logged intent, from the shipped novice-intent, one round
    of 8 supervised stalled-car episodes (its arms observe the lane rows)."""
    # keep_plain off: this judges the learner on the hazard, not the plain-traffic
    # safeguard (measured: this update's plain validation is 0.70, so keep_plain 0.95 puts
    # it back; test_arm_keeps_a_rounds_update_only_if_it_wins_on_validation checks that)
    rows = arm(tmp_path, "intent-dagger", episodes=8, anchor=False,
               learning={"keep_plain": 0.0})
    gain, safe, dist, minutes = gains(rows)
    # measured (dev seeds 5000..5019; the shipped setting: the novice-intent accepting the
    # expert's gaps, no anchors; session 13): arrival gain +0.25, safe +0.20, km x1.10,
    # 1.0 human-min; every label the human's logged intent (with the anchors +0.20; before
    # the gap check, with them, +0.35). 0.15 is the measured 0.25 less two arrivals of 20
    assert gain >= 0.15
    assert dist >= 0.9  # arriving, not stopping: the distance grows
    assert 0.0 < minutes < 2.0
    update = rows[-2]["update"]  # the stats of the last round's fine-tuning
    assert update["logged_intent"] == update["samples"] > 0 and update["anchors"] == 0


def test_intent_dagger_plain_anchors_keep_plain_driving(tmp_path):
    """The same update with the starting agent's own plain-traffic states as its only
    anchors (``plain_anchors``, ``anchor=False``): plain driving holds, so keep_plain (0.95)
    keeps the update."""
    rows = arm(tmp_path, "intent-dagger", episodes=8, anchor=False, plain_anchors=30)
    update = rows[-2]["update"]
    # measured (session 13): 6397 anchors, all plain; plain validation 0.95 (0.70 without
    # them), kept, stalled-car arrival gain +0.10 (hazard validation 0.30, 0.50 without).
    # Margins: none on plain (the keep_plain line itself), one arrival of 20 on the hazard
    assert update["anchors"] > 0 and update["validation_plain"] >= 0.95
    assert update["kept"]
    assert gains(rows)[0] >= 0.05


CLONE_REASON = (
    "session 6: behaviour cloning of the expert's full demonstrations (gate 'always', 30 "
    "stalled-car episodes, ~4300 labels, plain BC) gives a clone that cannot drive: the "
    "expert's meta-action labels are not a function of the observation (a 256x256 net "
    "fitted to 24 episodes recalls held-out 'slower' 0.27-0.41, lane changes 0.0-0.17); "
    "continuous labels fare no better (an MSE clone of 4200 steers/accelerations left the "
    "road in 21 of 40 plain episodes). The clone collapses to idle (97% of its actions on "
    "the 'perfect' human's 6189 training states, 87% label accuracy, class-balanced or not) "
    "and rear-ends slower leaders. Measured here: plain 1.0 -> 0.50, stalled car 0.10 -> "
    "0.00")


@pytest.mark.xfail(strict=True, reason=CLONE_REASON)
def test_cloning_the_teachers_full_demonstrations_keeps_plain_driving(tmp_path):
    """The ceiling of every cloning learner (``rounds.teacher_clone``): with labels on every
    step the expert drove (no intervention gating at all), the clone must still drive
    plain traffic and arrive behind the stalled car at least as often as the novice."""
    from takeover.agents import load_agent
    from takeover.experiments.rounds import evaluate_alone, teacher_clone

    cfg = from_dict(LearningConfig, {
        "name": "t", "env": {"scenarios": ["stalled_car"], "action_type": "discrete"},
        "supervisor": {"gate": "human", "gate_score": "ttc", "estimators": ["ttc"],
                       "human": "expert", "handover_kwargs": {"timeout": 5.0}},
        "learning": {"methods": ["hg-dagger"], "humans": ["expert"], "eval_episodes": 20,
                     "plain_episodes": 20, "eval_seed": 5000, "train_seed": 0,
                     "teacher_clone": 30, "clone_epochs": 30},
        "stats": {"bootstrap": 50}})
    seeds = held_out_seeds(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        novice = evaluate_alone(load_agent("novice"), cfg, seeds, 2.0)["arrived"]
        clone = teacher_clone(cfg, "expert", seeds, tmp_path)["arrived"]
    finally:
        torch.set_num_threads(threads)
    # measured (dev seeds 5000..5019): the novice 1.0 plain, 0.10 stalled car; the clone
    # 0.50 and 0.00. 0.9 allows two plain failures in 20
    assert clone["plain"] >= 0.9
    assert clone["stalled_car"] >= novice["stalled_car"]


def test_takeover_run_learning_quick(tmp_path):
    """``takeover run learning-quick`` end to end (two methods, one fine-tuning seed, to
    stay fast): metrics per method and round with human-minutes, and the report."""
    import json

    from typer.testing import CliRunner

    from takeover.cli import app

    out = tmp_path / "run"
    args = ["run", "learning-quick", "learning.methods=[hg-dagger,thrifty]",
            "learning.finetune_seeds=1", "learning.eval_episodes=3",
            "learning.teacher_clone=2", "--out", str(out), "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["curves"]) == {"hg-dagger/average", "thrifty/average"}
    for c in m["curves"].values():
        assert [e["round"] for e in c["rounds"]] == [0, 1]
        assert c["rounds"][0]["human_minutes"] == 0 < c["rounds"][1]["human_minutes"]
        assert 0.0 <= c["rounds"][1]["arrived"]["iqm"] <= 1.0
    assert m["clones"]["average"]["labels"] > 0
    assert set(m["clones"]["average"]["arrived"]) == {"stalled_car"}
    text = (out / "report.md").read_text()
    assert "Human-minutes to reach arrival" in text and "arrival_vs_minutes.png" in text
    assert "Arrival and safety vs human-minutes" in text
    assert "Cloning the teachers' full demonstrations" in text
    assert (out / "figures" / "arrival_vs_minutes.png").stat().st_size > 0


def test_a_round_that_loses_on_validation_is_dropped(monkeypatch, tmp_path):
    """``run_rounds`` keeps a round's update only if the agent alone arrives more often on
    the validation block than the best agent so far (DAgger's best policy over rounds; a
    tie is dropped); a dropped round's weights are put back exactly, and the rows say which
    round the agent holds."""
    from types import SimpleNamespace

    from takeover.experiments import rounds as R
    from takeover.experiments.config import load_config

    cfg, _ = load_config("default", ["train.rounds=3", "train.seeds=1", "train.anchor_weight=0"])
    policy = torch.nn.Linear(3, 2)
    agent = SimpleNamespace(policies=[policy], risk_critic=None)
    validation = iter([0.5, 0.3, 0.6, 0.6])  # start, then after rounds 1, 2, 3

    class Result(dict):
        def __missing__(self, key):
            return 0.0

        def metrics(self):
            return self

    def evaluate(cond, purpose, *, episodes, runs=None, log_dir=None, keep=None):
        if purpose == "train" and runs == [R.VALIDATION_RUN]:
            assert episodes == cfg.train.validation_episodes
            return Result(success_rate=next(validation))
        return Result()

    weights = []

    def finetune(agent, episodes, **kw):
        with torch.no_grad():
            policy.weight.add_(1.0)
        weights.append(policy.weight.detach().clone())
        return [1.0]

    monkeypatch.setattr(R, "finetune", finetune)
    exp = SimpleNamespace(cfg=cfg, agent=agent, evaluate=evaluate, run_dir=tmp_path)
    rows = R.run_rounds(exp)
    assert [r.get("kept") for r in rows] == [False, True, False, None]
    assert [r["agent_round"] for r in rows] == [0, 0, 2, 2]
    # round 1 (0.3 < 0.5) and round 3 (0.6, a tie with round 2) were undone
    assert torch.equal(weights[1], weights[0])  # round 2 started from the exact start again
    assert torch.equal(policy.weight, weights[1])


def test_arms_on_forked_workers_give_the_same_rows(tmp_path):
    """``learning.processes`` runs arms at once; each arm is seeded by itself, so the rows
    are the same as one by one (and in the same order)."""
    import json

    from typer.testing import CliRunner

    from takeover.cli import app

    rows = []
    for p in (1, 2):
        out = tmp_path / f"p{p}"
        res = CliRunner().invoke(app, [
            "run", "learning-quick", "learning.methods=[hg-dagger,intent-dagger]",
            "learning.finetune_seeds=1", "learning.eval_episodes=3",
            f"learning.processes={p}", "--out", str(out), "--quiet"])
        assert res.exit_code == 0, res.output
        rows.append(json.loads((out / "metrics.json").read_text())["rows"])
    assert [r["method"] for r in rows[0]] == ["hg-dagger"] * 2 + ["intent-dagger"] * 2
    assert rows[0] == rows[1]


def _nudged_arm_config(monkeypatch, weights: list, **learning) -> LearningConfig:
    """A one-scenario intent-dagger arm config whose learner is replaced by one that moves
    the intent net's first weight by +1 per update (appending the weights to ``weights``)."""
    from takeover.agents.learners import LEARNERS

    class Nudge:
        agent_kind = "intent"

        def start(self, agent):
            pass

        def update(self, agent, episodes, *, seed):
            p = next(agent.net.parameters())
            with torch.no_grad():
                p.add_(1.0)
            weights.append(p.detach().clone())
            return {"samples": 1.0}

    monkeypatch.setitem(LEARNERS._items, "intent-dagger", Nudge)
    return from_dict(LearningConfig, {
        "name": "t", "env": {"scenarios": ["stalled_car"], "action_type": "discrete"},
        "supervisor": {"gate": "human", "gate_score": "ttc", "estimators": ["ttc"],
                       "human": "expert"},
        "learning": {"methods": ["intent-dagger"], "humans": ["expert"], "rounds": 3,
                     "episodes_per_round": 1, "eval_episodes": 1, "plain_episodes": 0,
                     "eval_seed": 5000, "train_seed": 0, "keep_plain": 0.95, **learning}})


def test_arm_keeps_a_rounds_update_only_if_it_wins_on_validation(monkeypatch, tmp_path):
    """``learning.keep_best``: an update that does not raise agent-alone hazard arrival on
    the validation block (training-stream seeds), or that raises it but drops plain-traffic
    arrival below ``keep_plain``, is put back, exactly; one that does neither is kept."""
    from takeover.experiments import rounds as R

    V = R.Validation
    # the start, then after rounds 0, 1 and 2's updates
    scores = iter([V(0.3, 1.0), V(0.2, 1.0), V(0.5, 0.9), V(0.5, 0.95)])
    monkeypatch.setattr(R, "validation_score", lambda agent, cfg, env, block=0: next(scores))
    weights: list = []
    cfg = _nudged_arm_config(monkeypatch, weights)
    agent_seen = []
    real = R.starting_agent

    def start(cfg, method, env):
        agent_seen.append(real(cfg, method, env))
        return agent_seen[-1]

    monkeypatch.setattr(R, "starting_agent", start)
    rows = R.run_arm(cfg, "intent-dagger", "expert", 0, tmp_path, held_out_seeds(cfg))
    assert [r["update"]["kept"] for r in rows[:3]] == [False, False, True]
    final = next(agent_seen[0].net.parameters())
    # rounds 0 and 1's +1 were put back, round 2's +1 (on the restored weights) kept
    torch.testing.assert_close(final, weights[2])
    torch.testing.assert_close(weights[2], weights[0])


def test_fresh_validation_pits_each_update_against_the_agent_it_would_replace(monkeypatch,
                                                                             tmp_path):
    """``learning.fresh_validation``: each round measures the current agent and its update
    on that round's own block (``round + 1``), so an update is kept only if it beats the
    agent it replaces on the same seeds, not a best score the selection inflated; the plain
    floor is ``keep_plain`` or the current agent's plain arrival, if lower."""
    from takeover.experiments import rounds as R

    V = R.Validation
    # per round: the current agent, then its update, each on the round's fresh block
    scores = iter([V(0.3, 1.0), V(0.2, 1.0),     # worse: dropped
                   V(0.6, 1.0), V(0.5, 1.0),     # beats round 0's 0.3, not the 0.6: dropped
                   V(0.3, 0.9), V(0.35, 0.9)])   # better, plain as good as before: kept
    calls = []

    def score(agent, cfg, env, block=0):
        calls.append((block, float(next(agent.net.parameters()).flatten()[0])))
        return next(scores)

    monkeypatch.setattr(R, "validation_score", score)
    cfg = _nudged_arm_config(monkeypatch, [], fresh_validation=True)
    rows = R.run_arm(cfg, "intent-dagger", "expert", 0, tmp_path, held_out_seeds(cfg))
    assert [r["update"]["kept"] for r in rows[:3]] == [False, False, True]
    assert [b for b, _ in calls] == [1, 1, 2, 2, 3, 3]
    w0 = calls[0][1]  # the current agent is measured with its own weights, the update +1
    assert [w - w0 for _, w in calls] == pytest.approx([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    assert rows[2]["update"]["incumbent"] == 0.3


def test_fresh_validation_refuses_more_seeds_than_its_block_holds():
    with pytest.raises(ConfigError, match="fresh_validation.*lower rounds"):
        from_dict(LearningConfig, {"learning": {"fresh_validation": True, "rounds": 9,
                                                "validation_episodes": 101}})


def test_the_summary_redraws_the_evaluation_block_for_plain_arrival_too():
    """Fine-tuning seeds that agree episode for episode give a zero-width CI over seeds
    alone; the summary's plain arrival (like hazard arrival) also redraws the shared plain
    episodes, so its CI carries that block's sampling error (8 of 10 arrived: a binomial
    95% interval of about +-0.25; asserted > 0.2 wide)."""
    from takeover.experiments.rounds import summarize_learning

    cfg = from_dict(LearningConfig, {
        "name": "t", "env": {"scenarios": ["stalled_car"], "action_type": "discrete"},
        "learning": {"methods": ["hg-dagger"], "humans": ["expert"], "rounds": 1,
                     "finetune_seeds": 3}, "stats": {"bootstrap": 400}})
    plain = [1] * 8 + [0] * 2
    rows = [{"method": "hg-dagger", "human": "expert", "round": rnd, "ft_seed": s,
             "arrived": {"stalled_car": 0.5, "plain": 0.8}, "safe": {"stalled_car": 0.5},
             "km": {"stalled_car": 0.3}, "human_minutes": float(rnd), "interventions": rnd,
             "outcomes": {"stalled_car": [1, 0] * 5, "plain": plain}}
            for rnd in (0, 1) for s in range(3)]
    pl = summarize_learning(cfg, rows)["curves"]["hg-dagger/expert"]["rounds"][1][
        "plain_arrived"]
    assert pl["iqm"] == pytest.approx(0.8)
    assert pl["hi"] - pl["lo"] > 0.2
