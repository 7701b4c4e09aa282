"""Counterfactual scoring: rollouts leave the real episode untouched, labels are correct and
reproducible, and the report ranks the TTC oracle well above chance."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from helpers import ConstantAgent

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.envs.drivers import IDMDriver
from takeover.supervisor.counterfactual import Counterfactual, Label, report
from takeover.supervisor.engine import Supervisor
from takeover.supervisor.estimators import TTCOracle
from takeover.supervisor.gates import GATES
from takeover.types import AgentOutput, HumanInput, Phase


class IDMHuman:
    def __init__(self):
        self.driver = IDMDriver()

    def reset(self, seed=None):
        self.driver.reset()

    def act(self, obs, info, env, view):
        if view.phase is Phase.HUMAN or (view.tor_active and view.tor_elapsed >= 0.3):
            return HumanInput(action=self.driver(env), wants_control=True)
        return HumanInput()


def supervised(env_id="takeover/SuddenBrake-v2", cf=None, gate="threshold", shadow=None):
    env = gym.make(env_id)
    g = GATES.make(gate, high=0.3, low=0.2) if gate == "threshold" else GATES.make(gate)
    return Supervisor(env, ConstantAgent(env), {"ttc": TTCOracle()}, g, IDMHuman(),
                      gate_score="ttc", counterfactual=cf, shadow_gates=shadow)


def trajectory(sup, seeds):
    return [(r.obs.tobytes(), r.action.tobytes(), r.reward, r.controller, r.info["x"])
            for s in seeds for r in sup.run_episode(s)]


def test_rollouts_do_not_disturb_the_real_episode():
    plain = trajectory(supervised(), range(3))
    cf = Counterfactual(horizon=2.0, sample_rate=1.0, seed=0)  # a rollout at every step
    scored = trajectory(supervised(cf=cf), range(3))
    assert len(cf.labels) == len(plain)
    assert scored == plain


def test_rollout_restores_state_bit_for_bit():
    env = gym.make("takeover/CutIn-v2")
    obs, _ = env.reset(seed=2)
    from takeover.supervisor.engine import GymWorld, agent_outputs

    before = env.unwrapped.get_state()
    agent = ConstantAgent(env)
    GymWorld(env).rollout_alone([before], obs[None], lambda o: agent_outputs(agent, o), 30,
                                lambda term, info: np.asarray(term))
    after = env.unwrapped.get_state()
    np.testing.assert_array_equal(before.veh, after.veh)
    np.testing.assert_array_equal(before.wld, after.wld)
    assert before.rng_state == after.rng_state


def test_labels_match_what_the_agent_alone_actually_does():
    """With gate 'never' the real episode *is* the agent alone: a step is needed exactly
    when the real collision comes within the horizon, and the time to failure matches."""
    cf = Counterfactual(horizon=2.0, sample_rate=1.0, seed=0)
    sup = supervised(cf=cf, gate="never")
    recs = sup.run_episode(4)
    assert recs[-1].reason == "collision"
    n = len(recs)
    for lb in cf.labels:
        steps_left = n - lb.step  # the collision happens on the last step
        assert lb.needed == (steps_left <= 20), (lb.step, n)
        if lb.needed:
            assert lb.time_to_failure == pytest.approx(steps_left * 0.1)
        else:
            assert math.isnan(lb.time_to_failure)


def test_same_seed_same_labels_other_seed_other_sample():
    def labels(seed):
        cf = Counterfactual(horizon=2.0, sample_rate=0.2, seed=seed)
        sup = supervised(cf=cf)
        for s in range(4):
            sup.run_episode(s)
        return [(lb.episode, lb.step, lb.needed, lb.time_to_failure, lb.weight)
                for lb in cf.labels]

    a, b, c = labels(5), labels(5), labels(6)
    assert a == b and len(a) > 20
    assert a != c


class ObsAgent:
    """Steers straight and keeps a little throttle whatever it sees (stateless, so it acts
    the same in any world of a batch): fails the sudden brakes."""

    def act(self, obs):
        return AgentOutput(action=np.array([0.0, 0.1], dtype=np.float32))


def test_batched_labels_equal_single_world_labels():
    """The engine's batched counterfactual (snapshots rolled out on a scratch env) gives the
    same labels for N = 1 and N = 4 worlds, and some are needed."""
    from takeover.envs.vector import HighwayVectorEnv
    from takeover.supervisor.engine import Engine

    seeds = [3, 4, 5, 6, 7]
    out = {}
    for n in (1, 4):
        cf = Counterfactual(horizon=2.0, sample_rate=0.3, seed=1, pool=16)
        eng = Engine(HighwayVectorEnv(n, scenario="sudden_brake", duration=10.0), ObsAgent(),
                     {"ttc": TTCOracle()}, GATES.make("threshold", high=0.3, low=0.2), None,
                     gate_score="ttc", counterfactual=cf)
        eps = eng.run(seeds)
        out[n] = [(lb.episode, lb.step, lb.needed, lb.time_to_failure, lb.weight,
                   lb.requests["gate"]) for e in eps for lb in e.labels]
    assert out[1] == out[4]
    assert len(out[1]) > 50 and any(x[2] for x in out[1]) and not all(x[2] for x in out[1])


def test_report_scores_estimators_and_gates():
    cf = Counterfactual(horizon=2.0, sample_rate=0.3, seed=0)
    sup = supervised(cf=cf, shadow={"always": GATES.make("always"),
                                    "random": GATES.make("random", rate=0.1, seed=0)})
    for s in range(8):
        sup.run_episode(s)
    rep = report(cf.labels)
    assert 0 < rep["needed_rate"] < 1
    assert rep["estimators"]["ttc"]["auroc"] > 0.9
    assert rep["estimators"]["ttc"]["auprc"] > rep["needed_rate"]
    gate, always, rand = (rep["gates"][k] for k in ("gate", "always", "random"))
    assert always["recall"] == 1.0 and always["missed_failures"] == 0
    assert gate["recall"] > 0.8 and gate["precision"] > rand["precision"]
    assert gate["mean_lead_time"] > 0.5
    assert gate["false_alarms"] >= 0 and gate["requests"] > 0


def test_report_weights_undo_the_sampling():
    lbs = [Label("e", 0, 0.0, True, 1.0, {"g": True}, {"g": True}, {"s": 0.9}, 1.0),
           Label("e", 1, 0.1, False, math.nan, {"g": False}, {"g": False}, {"s": 0.1}, 10.0),
           Label("e", 2, 0.2, True, 1.0, {"g": False}, {"g": False}, {"s": 0.2}, 10.0)]
    g = report(lbs)["gates"]["g"]
    assert g["precision"] == 1.0
    assert g["recall"] == pytest.approx(1 / 11)  # one hit vs ~10 estimated misses
    assert g["missed_failures"] == 10.0 and g["missed_failures_labelled"] == 1
    assert report([]) == {"n_labels": 0, "estimators": {}, "gates": {}}


def test_foreign_envs_without_snapshots_are_refused_clearly():
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)

    class Zero:
        def act(self, o):
            return AgentOutput(action=0)

    with pytest.raises(TypeError, match="get_state"):  # refused before any step
        Supervisor(env, Zero(), {}, GATES.make("never"), counterfactual=Counterfactual())
    with pytest.raises(ValueError, match="sample_rate"):
        Counterfactual(sample_rate=0.0)


def test_calibration_from_counterfactual_labels():
    from takeover.supervisor.calibration import (
        ConformalCalibrator,
        IsotonicCalibrator,
        from_labels,
    )

    cf = Counterfactual(horizon=2.0, sample_rate=0.5, seed=0)
    sup = supervised(cf=cf, gate="never")
    for s in range(6):
        sup.run_episode(s)
    scores, failed = from_labels(cf.labels, "ttc")
    assert len(scores) == sum(lb.weight > 1 for lb in cf.labels)
    iso = IsotonicCalibrator().fit(scores, failed)
    probs = iso.predict(np.sort(scores))
    assert np.all(np.diff(probs) >= 0) and 0 <= probs.min() and probs.max() <= 1
    assert iso(1.0) > 0.8 and iso(0.01) < 0.1  # contact vs nothing closing
    conf = ConformalCalibrator().fit(scores, failed)
    thr = conf.threshold(alpha=0.2)
    assert np.mean(scores[failed] >= thr) >= 0.8
    assert conf(1.0) > conf(0.05)
    with pytest.raises(ValueError, match="both failed and safe"):
        IsotonicCalibrator().fit([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="not fitted"):
        ConformalCalibrator().p_value([0.3])


# --- acceptance on the shipped agents ------------------------------------------------------
def _shipped(name: str):
    agents = pytest.importorskip("takeover.agents")
    try:
        return agents.load_agent(name)
    except agents.CheckpointError as e:  # not shipped yet in this checkout
        pytest.skip(str(e))


def _aurocs(agent_name: str, estimators: list[str], env_id: str, seeds: range) -> dict:
    from takeover.supervisor.estimators import make_estimators

    agent = _shipped(agent_name)
    env = gym.make(env_id, action_type="discrete")
    cf = Counterfactual(horizon=2.0, sample_rate=0.25, seed=0)
    sup = Supervisor(env, agent, make_estimators([*estimators, "ttc"]), GATES.make("never"),
                     None, counterfactual=cf)
    for s in seeds:
        sup.run_episode(s)
    return report(cf.labels)["estimators"]


def _check(est: dict, name: str) -> None:
    assert est[name]["auroc"] > 0.7, est
    assert est["ttc"]["auroc"] > est[name]["auroc"], est


def test_shipped_risk_critic_predicts_failure_fast():
    # v2 critic: 0.88 here, the TTC signal 0.84 (a learned critic may beat raw TTC on one
    # hazard; test_ttc_oracle_beats_learned_estimators_over_the_hazards compares the means)
    est = _aurocs("novice-ensemble", ["q_risk"], "takeover/SuddenBrake-v2", range(15))
    assert est["q_risk"]["auroc"] > 0.7, est


@pytest.mark.xfail(strict=True, reason=(
    "v1 world + re-shipped novice (issue 10): measured ensemble-disagreement AUROC 0.65 (was > 0.7 on v0); the owner re-baselines it"))
def test_shipped_ensemble_predicts_failure_fast():
    _check(_aurocs("novice-ensemble", ["ensemble"], "takeover/SuddenBrake-v2", range(15)),
           "ensemble")


HAZARDS = ["takeover/SuddenBrake-v2", "takeover/CutIn-v2", "takeover/StalledCar-v2",
           "takeover/Merge-v2", "takeover/LaneClosure-v2"]


@pytest.mark.slow
@pytest.mark.parametrize("env_id", HAZARDS)
def test_shipped_risk_critic_predicts_failure_per_scenario(env_id):
    est = _aurocs("novice-ensemble", ["q_risk"], env_id, range(50))
    assert est["q_risk"]["auroc"] > 0.7, est


_WEAK_ENSEMBLE = pytest.mark.xfail(strict=True, reason=(
    "issue 10: the v2 novice-ensemble's 4 s disagreement AUROC is 0.45-0.63 per hazard "
    "(held-out, 200 episodes; pooled 0.53 [0.52, 0.55], the same with session 4's and "
    "session 5's novice; v1: 0.57); it was 0.76 on LaneClosure with session 2's novice"))


@pytest.mark.slow
@pytest.mark.parametrize("env_id", [pytest.param(h, marks=_WEAK_ENSEMBLE) for h in HAZARDS])
def test_shipped_ensemble_predicts_failure_per_scenario(env_id):
    est = _aurocs("novice-ensemble", ["ensemble"], env_id, range(50))
    assert est["ensemble"]["auroc"] > 0.7, est


@pytest.mark.slow
def test_ttc_oracle_beats_learned_estimators_over_the_hazards():
    per = [_aurocs("novice-ensemble", ["ensemble", "q_risk"], e, range(30)) for e in HAZARDS]
    means = {k: np.mean([p[k]["auroc"] for p in per]) for k in ("ensemble", "q_risk", "ttc")}
    assert means["ttc"] > max(means["ensemble"], means["q_risk"]), means
