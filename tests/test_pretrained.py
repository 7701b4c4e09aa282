"""The shipped agents: load without training, fit the discrete env, drive well in plain
traffic and clearly worse in hazards, and come with a useful risk critic."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from takeover.agents import EnsembleAgent, PolicyAgent, check_spaces, load_agent
from takeover.agents.evaluate import evaluate
from takeover.agents.risk import RiskSpec, collect_rollouts
from takeover.agents.shipped import PRETRAINED_DIR
from takeover.envs import HAZARD_IDS

PLAIN = "takeover/Plain-v2"


@pytest.fixture(scope="module")
def novice():
    return load_agent("novice")


@pytest.fixture(scope="module")
def ensemble():
    return load_agent("novice-ensemble")


def test_an_env_observing_other_than_the_agent_is_refused_naming_the_fix(novice):
    """A world that observes more vehicles than the agent was trained on (``observe``) is
    refused before any step, and the message says which ``observe`` the agent needs."""
    from takeover.agents.checkpoint import CheckpointError

    env = gym.make("takeover/StalledCar-v2", action_type="discrete", observe=16)
    with pytest.raises(CheckpointError, match=r"make the env with observe=8"):
        check_spaces(novice, env)
    lanes = gym.make("takeover/StalledCar-v2", action_type="discrete", observe_lanes=True)
    with pytest.raises(CheckpointError, match=r"has 9 rows, the env's 12.*observe_lanes=True"):
        check_spaces(novice, lanes)


def test_shipped_agents_load_and_fit_the_discrete_env(novice, ensemble):
    assert isinstance(novice, PolicyAgent) and isinstance(ensemble, EnsembleAgent)
    assert len(ensemble.policies) == 5
    env = gym.make("takeover/Highway-v2", action_type="discrete")
    check_spaces(novice, env)
    obs, _ = env.reset(seed=0)
    out = ensemble.act(obs)
    assert out.member_actions.shape == (5,) and out.probs.shape == (5, 5)
    assert 0.0 <= out.risk <= 1.0 and 0.0 <= novice.act(obs).risk <= 1.0
    assert novice.reference_obs.shape[1:] == (9, 7) and len(novice.reference_obs) >= 1000
    a = novice.policy.state_dict()
    for member in ensemble.policies:  # randomized-prior members on the novice's features
        b = member.state_dict()
        shared = [k for k in a if not k.startswith(("action_net", "mlp_extractor.policy_net.4"))]
        assert all(torch.equal(a[k], b[k]) for k in shared)


def test_ppo_ensemble_and_novice_like_ensemble():
    ppo = load_agent("novice-ppo-ensemble")
    assert len(ppo.policies) == 5 and ppo.risk_critic is not None
    novice, ens = load_agent("novice"), load_agent("novice-ensemble")
    obs = novice.reference_obs[:500]
    # the bootstrap ensemble is built around the novice: same choices in its own states
    assert np.mean(ens.predict(obs) == novice.predict(obs)) > 0.9


def test_shipped_weights_are_small():
    size = sum(f.stat().st_size for f in PRETRAINED_DIR.rglob("*") if f.is_file())
    assert size < 6_000_000


def _gap(agent, n_seeds):
    res = evaluate(agent, [PLAIN, *HAZARD_IDS], n_seeds=n_seeds, seed0=0)
    plain = res[PLAIN]["success"].mean
    hazard = float(np.mean([res[e]["success"].mean for e in HAZARD_IDS]))
    return plain, hazard, res


# measured on development seeds from 0 (the tests' own): the novice arrives in 12/12 plain
# episodes and 0.23 of hazard episodes on average at 12 seeds; 0.92 [0.84, 0.98] plain and
# 0.124 of hazard episodes (0.02-0.26 per hazard) at 50 (held out, manifest metrics: 0.945
# plain, 0.03-0.365 per hazard). Margins: ~3 binomial sd on plain (0.2 at 12 seeds, 0.1 at
# 50) and ~0.3 on the plain-hazard gap (0.77-0.80 measured).
def test_novice_gap_fast(novice):
    plain, hazard, _ = _gap(novice, 12)
    assert plain >= 0.75 and hazard <= plain - 0.4, (plain, hazard)


@pytest.mark.slow
def test_novice_gap_50_seeds(novice):
    plain, hazard, res = _gap(novice, 50)
    assert plain >= 0.82, plain
    assert hazard <= plain - 0.5, (plain, hazard)
    assert res[PLAIN]["success"].lo > max(res[e]["success"].hi for e in HAZARD_IDS), res


def _auroc(agent, seeds):
    spec = RiskSpec(obs_dim=63)
    data = collect_rollouts(agent.predict, "takeover/Highway-v2", seeds, spec,
                            action_type="discrete")
    j = spec.horizons.index(2.0)
    risk = np.array([o.risk for o in agent.act_batch(data.obs)])
    return roc_auc_score(data.labels[:, j], risk)


def test_risk_critic_predicts_failure_within_2s(novice):
    assert _auroc(novice, list(range(500, 540))) > 0.75


@pytest.mark.slow
def test_ensemble_risk_critic_predicts_failure_within_2s(ensemble):
    assert _auroc(ensemble, list(range(500, 600))) > 0.75


def test_batched_rollouts_are_the_single_env_episodes(novice):
    """``run_episodes`` steps takeover ids in one batched world; each episode must be the one
    a single env reset with that seed gives under the same policy."""
    from takeover.agents.rollout import run_episodes

    seeds = [0, 1, 2, 3]
    batched = run_episodes(novice.predict, "takeover/CutIn-v2", seeds, keep_obs=True,
                           action_type="discrete")
    for seed, ep in zip(seeds, batched, strict=True):
        env = gym.make("takeover/CutIn-v2", action_type="discrete")
        obs, info = env.reset(seed=seed)
        ret, steps, first = 0.0, 0, obs
        while True:
            obs, r, term, trunc, info = env.step(novice.predict(obs[None])[0])
            ret, steps = ret + r, steps + 1
            if term or trunc:
                break
        assert (ep.outcome, ep.steps, ep.hazard_fired) == (info["outcome"], steps,
                                                           info["hazard_fired"])
        assert ep.ret == pytest.approx(ret) and np.array_equal(ep.obs[0], first)
        assert len(ep.obs) == steps
