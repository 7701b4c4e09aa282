"""Estimators: each score means what its docstring says, batches match single calls, and a
missing input names the fix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from takeover.supervisor.estimators import (
    ESTIMATORS,
    EnsembleDisagreement,
    MCDropoutVariance,
    Novelty,
    PolicyEntropy,
    QRisk,
    TTCOracle,
    make_estimators,
)
from takeover.types import AgentOutput

OBS = np.zeros((9, 7), np.float32)


def test_registry_has_every_contracted_estimator_and_suggests_typos():
    for name in ("ensemble", "ensemble_variance", "ensemble_kl", "entropy", "mc_dropout",
                 "q_risk", "novelty", "ttc"):
        assert name in ESTIMATORS
    with pytest.raises(KeyError, match="Did you mean 'entropy'"):
        ESTIMATORS.get("entropi")


def test_ensemble_variance_grows_with_member_spread():
    est = EnsembleDisagreement()
    same = AgentOutput(action=np.zeros(2), member_actions=np.zeros((5, 2)))
    assert est.score(OBS, same, {}) == 0.0
    spreads = [0.1, 0.3, 0.9]
    scores = []
    for s in spreads:
        members = np.stack([np.linspace(-s, s, 5), np.zeros(5)], axis=1)
        scores.append(est.score(OBS, AgentOutput(np.zeros(2), member_actions=members), {}))
    assert scores == sorted(scores) and scores[0] > 0
    # variance of [-s..s] on one of two dims, averaged over dims
    assert scores[-1] == pytest.approx(np.var(np.linspace(-0.9, 0.9, 5)) / 2)


def test_ensemble_kl_is_zero_for_agreement_and_at_most_log_k():
    est = ESTIMATORS.get("ensemble_kl")()
    agree = np.tile([0.7, 0.1, 0.1, 0.05, 0.05], (5, 1))
    assert est.score(OBS, AgentOutput(0, probs=agree), {}) == pytest.approx(0.0, abs=1e-9)
    onehots = np.eye(5)
    kl = est.score(OBS, AgentOutput(0, probs=onehots), {})
    assert kl == pytest.approx(math.log(5), rel=1e-3)
    half = np.array([[0.5, 0.5, 0, 0, 0], [0.5, 0.5, 0, 0, 0], [0, 0, 0.5, 0.5, 0]])
    assert 0 < est.score(OBS, AgentOutput(0, probs=half), {}) < kl


def test_auto_ensemble_handles_both_action_types_and_votes():
    est = EnsembleDisagreement()
    probs = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert est.score(OBS, AgentOutput(0, probs=probs), {}) > 0.3
    votes = AgentOutput(0, member_actions=np.array([1, 1, 1, 2]))
    assert est.score(OBS, votes, {}) == pytest.approx(0.25)


def test_score_batch_matches_single_scores():
    from takeover.types import AgentOutputs

    rng = np.random.default_rng(0)
    outs = [AgentOutput(np.zeros(2), member_actions=rng.normal(size=(5, 2))) for _ in range(7)]
    obs = rng.normal(size=(7, 9, 7))
    est = EnsembleDisagreement()
    np.testing.assert_allclose(est.score_batch(obs, AgentOutputs.stack(outs), {}),
                               [est.score(o, out, {}) for o, out in zip(obs, outs)])
    pouts = [AgentOutput(0, probs=rng.dirichlet(np.ones(5), size=4)) for _ in range(7)]
    np.testing.assert_allclose(est.score_batch(obs, AgentOutputs.stack(pouts), {}),
                               [est.score(o, out, {}) for o, out in zip(obs, pouts)])
    votes = [AgentOutput(0, member_actions=rng.integers(0, 3, size=4)) for _ in range(7)]
    np.testing.assert_allclose(est.score_batch(obs, AgentOutputs.stack(votes), {}),
                               [est.score(o, out, {}) for o, out in zip(obs, votes)])
    ent = PolicyEntropy()
    np.testing.assert_allclose(ent.score_batch(obs, AgentOutputs.stack(pouts), {}),
                               [ent.score(o, out, {}) for o, out in zip(obs, pouts)])
    ttc = TTCOracle()
    infos = [{"ttc": t} for t in (0.5, 1.0, 99.0)]
    np.testing.assert_allclose(ttc.score_batch(obs[:3], None, {"ttc": np.array([0.5, 1, 99])}),
                               [ttc.score(OBS, None, i) for i in infos])
    nov = Novelty(rng.normal(0, 0.1, size=(300, 9, 7)))
    np.testing.assert_allclose(nov.score_batch(obs), [nov.score(o) for o in obs], rtol=1e-6)


def test_novelty_matches_exact_float64_neighbours():
    """The float32 GEMM form agrees with a brute-force float64 k-NN to 1e-4 relative
    (measured max 2e-6 on these draws; float32 rounding of |x|^2 + |r|^2 - 2 x.r)."""
    rng = np.random.default_rng(1)
    ref = rng.uniform(-1, 1, size=(500, 63))
    est = Novelty(ref, k=5)
    x = rng.uniform(-1, 1, size=(20, 63))
    d = np.sqrt(((x[:, None, :] - ref[None]) ** 2).sum(-1))
    want = np.sort(d, axis=1)[:, :5].mean(axis=1) / est.scale
    np.testing.assert_allclose(est.score_batch(x), want, rtol=1e-4)


def test_novelty_of_a_row_does_not_depend_on_its_batch():
    """Same observation, same bits, in a batch of 1, 7 or 300 (a GEMM's kernel depends on
    its row count: before BLOCK-row products 252 of 256 rows differed, by up to 2e-5), so a
    supervised run is the same run at any number of worlds; a non-finite row is NaN (the
    engine treats it as maximal risk) and leaves its neighbours alone."""
    rng = np.random.default_rng(2)
    est = Novelty(rng.uniform(-1, 1, size=(500, 63)), k=5)
    x = rng.uniform(-1, 1, size=(300, 63)).astype(np.float32)
    x[5, 3] = np.nan
    full = est.score_batch(x)
    for sl in (slice(0, 1), slice(3, 10), slice(299, 300)):
        np.testing.assert_array_equal(est.score_batch(x[sl]), full[sl])
    assert np.isnan(full[5]) and np.isfinite(np.delete(full, 5)).all()


def test_estimators_declare_what_they_need():
    from takeover.supervisor.estimators import make_estimators

    ref = np.random.default_rng(0).normal(size=(50, 9, 7))
    ests = make_estimators(["novelty", "ttc"], reference_obs=ref)
    assert ests["novelty"].reference is not None and "reference_obs" in ests["novelty"].needs
    assert not ests["ttc"].needs


def test_entropy_discrete_and_gaussian():
    est = PolicyEntropy()
    assert est.score(OBS, AgentOutput(0, probs=np.full(5, 0.2)), {}) == pytest.approx(math.log(5))
    assert est.score(OBS, AgentOutput(0, probs=np.eye(5)[0]), {}) == pytest.approx(0, abs=1e-6)
    narrow = est.score(OBS, AgentOutput(np.zeros(2), log_std=np.full(2, -2.0)), {})
    wide = est.score(OBS, AgentOutput(np.zeros(2), log_std=np.zeros(2)), {})
    assert wide - narrow == pytest.approx(4.0)  # sum over 2 dims of the log-std difference
    with pytest.raises(ValueError, match="log_std"):
        est.score(OBS, AgentOutput(np.zeros(2)), {})


def test_mc_dropout_variance_and_missing_samples():
    est = MCDropoutVariance()
    out = AgentOutput(np.zeros(2), extra={"dropout_actions": np.array([[0, 0], [1, 1.0]])})
    assert est.score(OBS, out, {}) == pytest.approx(0.25)
    votes = AgentOutput(0, extra={"dropout_actions": np.array([1, 1, 2, 2])})
    assert est.score(OBS, votes, {}) == pytest.approx(0.5)
    probs = AgentOutput(0, extra={"dropout_probs": np.eye(3), "dropout_actions": [0, 1, 2]})
    assert est.score(OBS, probs, {}) == pytest.approx(math.log(3), rel=1e-3)
    with pytest.raises(ValueError, match="dropout_actions"):
        est.score(OBS, AgentOutput(np.zeros(2)), {})


def test_q_risk_reads_risk_and_names_the_fix():
    assert QRisk().score(OBS, AgentOutput(0, risk=0.3), {}) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="risk critic"):
        QRisk().score(OBS, AgentOutput(0), {})


def test_novelty_low_on_training_data_high_far_away():
    rng = np.random.default_rng(0)
    train = rng.normal(0, 0.1, size=(500, 9, 7)).astype(np.float32)
    est = Novelty(k=5).fit(train)
    inside = est.score(rng.normal(0, 0.1, size=(9, 7)))
    outside = est.score(np.full((9, 7), 0.8))
    assert inside < 1.5 < 5 < outside
    with pytest.raises(ValueError, match="not fitted"):
        Novelty().score(OBS)
    with pytest.raises(ValueError, match="reference set has"):
        est.score(np.zeros(3))


def test_novelty_subsampling_is_seeded():
    train = np.random.default_rng(1).normal(size=(3000, 4))
    a = Novelty(train, max_points=100, seed=3).reference
    b = Novelty(train, max_points=100, seed=3).reference
    np.testing.assert_array_equal(a, b)
    assert a.shape == (100, 4)


def test_ttc_oracle_is_monotone_bounded_and_needs_ttc():
    est = TTCOracle(ref=2.0)
    scores = [est.score(OBS, None, {"ttc": t}) for t in (0.0, 0.5, 2.0, 10.0, 99.0)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == 1.0 and scores[2] == 0.5 and 0 < scores[-1] < 0.05
    with pytest.raises(ValueError, match="adapters"):
        est.score(OBS, None, {})


def test_make_estimators_names_scores_by_key():
    ests = make_estimators({"risk": {"type": "q_risk"}, "ttc": {"ref": 3.0}})
    assert ests["risk"].name == "risk" and ests["ttc"].ref == 3.0
    with pytest.raises(KeyError, match="Did you mean 'novelty'"):
        make_estimators(["novelti"])
