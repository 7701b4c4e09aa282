"""Risk critic: labels from episode outcomes, learning, MC-dropout samples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import takeover.envs  # noqa: F401
from takeover.agents.risk import (
    RiskCritic,
    RiskData,
    RiskSpec,
    collect_rollouts,
    failure_labels,
    fit_risk,
)


def test_failure_labels_mark_the_last_h_steps_of_failed_episodes():
    lab = failure_labels(30, True, np.array([10, 20]))
    assert lab.shape == (30, 2)
    assert lab[:, 0].sum() == 10 and lab[20:, 0].all() and not lab[:20, 0].any()
    assert lab[:, 1].sum() == 20 and lab[10:, 1].all()
    assert not failure_labels(30, False, np.array([10])).any()
    assert failure_labels(5, True, np.array([10])).all()  # shorter than the horizon


def test_spec_refuses_a_primary_horizon_it_does_not_predict():
    with pytest.raises(ValueError, match="primary horizon 4.0"):
        RiskSpec(obs_dim=3, horizons=(1.0, 2.0), primary=4.0)


def test_fit_learns_a_separable_risk():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(4000, 3, 2)).astype(np.float32)
    danger = obs[:, 0, 0] > 0.5
    labels = np.stack([danger, danger | (obs[:, 0, 0] > 0.0)], 1)
    data = RiskData(obs, labels, np.arange(len(obs)))
    critic = RiskCritic(RiskSpec(obs_dim=6, horizons=(1.0, 2.0), primary=1.0, hidden=(16,)))
    losses = fit_risk(critic, data, epochs=15, seed=0)
    assert losses[-1] < 0.8 * losses[0]
    test = rng.normal(size=(1000, 3, 2)).astype(np.float32)
    p = critic.predict(test)
    assert roc_auc_score(test[:, 0, 0] > 0.5, p[:, 0]) > 0.95
    assert np.all((p >= 0) & (p <= 1))


def test_fit_is_seeded():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(300, 4)).astype(np.float32)
    data = RiskData(obs, (obs[:, :1] > 0), np.arange(300))
    spec = RiskSpec(obs_dim=4, horizons=(2.0,), hidden=(8,))
    a, b = RiskCritic(spec), RiskCritic(spec)
    b.load_state_dict(a.state_dict())
    fit_risk(a, data, epochs=3, seed=5)
    fit_risk(b, data, epochs=3, seed=5)
    np.testing.assert_array_equal(a.predict(obs), b.predict(obs))


def test_mc_dropout_samples_spread_and_reproduce():
    critic = RiskCritic(RiskSpec(obs_dim=4, horizons=(2.0,), dropout=0.3))
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    s1, s2 = critic.sample(obs, n=20, seed=1), critic.sample(obs, n=20, seed=1)
    assert s1.shape == (20, 5, 1)
    np.testing.assert_array_equal(s1, s2)
    assert s1.std(0).min() > 0
    assert not critic.training  # sampling leaves the critic in eval mode


def test_rollout_labels_follow_episode_outcomes():
    spec = RiskSpec(obs_dim=63)
    data = collect_rollouts(lambda o: np.zeros(len(o), dtype=np.int64),  # idle: rear-ends
                            "takeover/SuddenBrake-v2", [0, 1, 2], spec, action_type="discrete")
    assert len(data.outcomes) == 3 and data.obs.shape[1:] == (9, 7)
    j = spec.horizons.index(2.0)
    for ep, reason in enumerate(data.outcomes):
        lab = data.labels[data.episode == ep, j]
        if reason in ("collision", "offroad"):
            assert lab[-20:].all() and not lab[:-20].any()
        else:
            assert not lab.any()
    assert "collision" in data.outcomes
