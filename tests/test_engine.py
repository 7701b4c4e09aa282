"""The engine's fail-safe boundary: non-finite observations, scores, agent and human actions
are caught (unknown risk is maximal risk; nothing non-finite is executed or logged as
valid), actions of the wrong kind are refused; and the countdown to the fallback."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
from helpers import ConstantAgent

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.supervisor.engine import Supervisor
from takeover.supervisor.estimators import BaseEstimator, TTCOracle
from takeover.supervisor.gates import GATES
from takeover.supervisor.handover import HandoverConfig
from takeover.types import AgentOutput, HumanInput


def nonfinite(rec) -> bool:
    """The record's score_nonfinite flag (a field once the log schema has it, else info)."""
    return bool(getattr(rec, "score_nonfinite", rec.info.get("score_nonfinite", False)))


class NaNAt(BaseEstimator):
    """A risk score that is NaN on the given steps and 0 elsewhere."""

    name = "nan"

    def __init__(self, steps):
        self.steps, self.k = set(steps), 0

    def score_batch(self, obs, out, info):
        s = math.nan if self.k in self.steps else 0.0
        self.k += 1
        return np.array([s])


def test_non_finite_risk_score_asks_for_the_human_and_is_flagged():
    env = gym.make("takeover/Plain-v2", duration=3.0)
    sup = Supervisor(env, ConstantAgent(env), {"nan": NaNAt({5}), "ttc": TTCOracle()},
                     GATES.make("threshold", high=0.5, min_dwell=0), None, gate_score="nan")
    recs = sup.run_episode(0)
    assert [r.step for r in recs if r.gate_request] == [5]  # NaN counts as maximal risk
    assert [r.step for r in recs if nonfinite(r)] == [5]
    assert math.isnan(recs[5].scores["nan"])  # the raw score is logged as it was
    assert sup.engine.counts["score_nonfinite"] == 1


class NaNAgent(ConstantAgent):
    def __init__(self, env, at):
        super().__init__(env)
        self.at, self.k = at, 0

    def act(self, obs):
        out = super().act(obs)
        self.k += 1
        return AgentOutput(action=np.full(2, np.nan, np.float32)) if self.k - 1 == self.at \
            else out


def test_non_finite_agent_action_is_never_sent_to_the_env():
    env = gym.make("takeover/Plain-v2", duration=2.0)
    sup = Supervisor(env, NaNAgent(env, at=3), {}, GATES.make("never"))
    recs = sup.run_episode(0)  # the env raises on a NaN action: reaching the end is the test
    assert recs[3].controller == "fallback" and np.isfinite(recs[3].action).all()
    assert nonfinite(recs[3]) and sup.engine.counts["agent_nonfinite"] == 1
    assert all(r.controller == "agent" for r in recs if r.step != 3)


class Offers:
    """Answers every request with ``action``."""

    def __init__(self, action):
        self.action = action

    def reset(self, seed=None):
        pass

    def act(self, obs, info, env, view):
        return HumanInput(action=self.action, wants_control=False) if view.tor_active \
            else HumanInput()


def test_non_finite_human_action_is_no_input():
    env = gym.make("takeover/Plain-v2", duration=2.0)
    sup = Supervisor(env, ConstantAgent(env), {}, GATES.make("always"),
                     Offers(np.array([np.nan, 0.0], np.float32)),
                     handover=HandoverConfig(timeout=1.0))
    recs = sup.run_episode(0)
    assert all(r.human_action is None for r in recs)  # never logged as valid
    assert all(r.controller != "human" for r in recs)  # nor taken as an answer
    assert recs[-1].controller == "fallback"
    assert sup.engine.counts["human_nonfinite"] == len(recs)  # the alert is on every step


@pytest.mark.parametrize("bad", ["0.5", np.array(["0.5", "0.5"]), np.array([1 + 2j, 0]),
                                 np.array([True, False])])
def test_human_actions_of_the_wrong_kind_are_refused(bad):
    env = gym.make("takeover/Plain-v2", duration=2.0)
    sup = Supervisor(env, ConstantAgent(env), {}, GATES.make("always"), Offers(bad))
    with pytest.raises(TypeError, match="human action"):
        sup.run_episode(0)


def test_discrete_human_action_must_be_an_index():
    env = gym.make("takeover/Plain-v2", duration=2.0, action_type="discrete")

    class Idle:
        def act(self, obs):
            return AgentOutput(action=0)

    sup = Supervisor(env, Idle(), {}, GATES.make("always"), Offers(1.5))
    with pytest.raises(TypeError, match="integer index"):
        sup.run_episode(0)


def test_non_finite_observation_counts_as_maximal_risk():
    class NaNObs(gym.ObservationWrapper):
        def observation(self, obs):
            obs = obs.copy()
            obs[0, 0] = np.nan
            return obs

    env = NaNObs(gym.make("takeover/Plain-v2", duration=1.0))
    sup = Supervisor(env, ConstantAgent(env), {"ttc": TTCOracle()},
                     GATES.make("threshold", high=0.5), None, gate_score="ttc")
    recs = sup.run_episode(0)
    assert recs[0].gate_request and all(nonfinite(r) for r in recs)
    assert sup.engine.counts["obs_nonfinite"] == len(recs)


def test_countdown_to_the_fallback():
    env = gym.make("takeover/Plain-v2", duration=3.0)
    sup = Supervisor(env, ConstantAgent(env), {}, GATES.make("always"), None,
                     handover=HandoverConfig(timeout=1.0))
    sup.reset(0)
    assert math.isnan(sup.time_left)
    sup.step()  # the request is issued at t = 0
    left = []
    for _ in range(12):
        left.append(sup.time_left)
        sup.step()
    assert left[0] == pytest.approx(0.9) and left[8] == pytest.approx(0.1)
    assert math.isnan(left[-1])  # in the fallback: no countdown


def test_experiment_episodes_are_the_same_in_any_batch(tmp_path):
    """``Rollouts.run_batch`` over 5 worlds gives, episode by episode, the records and
    labels of the batch of one (``run``): the shipped-style agent, the expert human, the
    random gate (seeded per episode; the tiny agent stops before any TTC conflict, so a
    TTC threshold would never ask) and counterfactual labels."""
    from helpers import tiny_checkpoint

    from takeover.agents import load_agent
    from takeover.config import from_dict
    from takeover.experiments import episodes as ep
    from takeover.experiments.config import ExperimentConfig
    from takeover.logio.equality import records_equal

    cfg = from_dict(ExperimentConfig, {
        "name": "t", "seed": 3,
        "env": {"scenarios": ["cut_in"], "action_type": "discrete", "duration": 20.0},
        "agent": {"name": "x"},
        "supervisor": {"gate": "random", "gate_kwargs": {"rate": 0.2},
                       "gate_score": "ttc", "estimators": ["ensemble", "ttc"],
                       "human": "expert", "handover_kwargs": {"timeout": 6.0}},
        "counterfactual": {"horizon": 1.0, "sample_every": 5}})
    agent = load_agent(tiny_checkpoint(tmp_path / "agent"))
    envs = ep.EnvCache(cfg)
    cond = ep.conditions(cfg)[0]
    seeds = [ep.episode_seed(cfg.seed, "eval", "cut_in", 0, i) for i in range(6)]
    eids = [f"e{i}" for i in range(6)]
    batched = ep.Rollouts(cfg, envs, agent, max_worlds=5).run_batch(cond, "cut_in", seeds,
                                                                    eids, label=True)
    one = ep.Rollouts(cfg, envs, agent)
    for (recs, labels), seed, eid in zip(batched, seeds, eids):
        r1, l1 = one.run(cond, "cut_in", seed, eid, label=True)
        assert len(r1) == len(recs) and l1 == labels
        for a, b in zip(r1, recs):  # every field bit for bit (NaN == NaN), wall clock aside
            assert records_equal(dataclasses.replace(a, wall_time=0.0),
                                 dataclasses.replace(b, wall_time=0.0)), (a.step, eid)
    assert any(r.controller == "human" for recs, _ in batched for r in recs)
