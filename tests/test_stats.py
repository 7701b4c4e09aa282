"""The one bootstrap: cluster-resampled intervals, paired differences with p-values,
episode-cluster AUROC / AUPRC, lead time at a fixed false-alarm rate, Wilson, IQM."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from takeover.experiments.stats import (
    auc_interval,
    crossed_iqm_interval,
    intervals,
    iqm,
    iqm_interval,
    lead_time,
    paired,
    resample_weights,
    summarize,
    wilson,
)


def rate(sums):
    return {"rate": sums[..., 0] / sums[..., 1]}


def test_resample_weights_keep_each_stratum_size():
    w = resample_weights(["a"] * 3 + ["b"] * 5, reps=200, seed=1)
    assert w.shape == (200, 8)
    assert np.all(w[:, :3].sum(axis=1) == 3) and np.all(w[:, 3:].sum(axis=1) == 5)
    assert np.array_equal(w, resample_weights(["a"] * 3 + ["b"] * 5, reps=200, seed=1))


def test_bootstrap_interval_of_a_rate_matches_the_binomial_width():
    """200 independent episodes at p = 0.5: the bootstrap 95% CI half-width should be near
    the normal-theory 1.96 * sqrt(0.25 / 200) = 0.069 (measured 0.068-0.071 over seeds;
    +-0.01 margin), and near Wilson's interval."""
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.5).astype(float)
    table = np.c_[y, np.ones_like(y)]
    iv = intervals(table, rate, resample_weights(np.zeros(200), 2000, seed=0))["rate"]
    assert iv.lo < iv.value < iv.hi
    assert (iv.hi - iv.lo) / 2 == pytest.approx(0.069, abs=0.01)
    lo, hi = wilson(y.sum(), 200)
    assert iv.lo == pytest.approx(lo, abs=0.015) and iv.hi == pytest.approx(hi, abs=0.015)


def test_wilson_edges():
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2  # 0/20: Wilson upper 0.161
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_paired_difference_detects_a_real_effect_and_not_a_null_one():
    rng = np.random.default_rng(2)
    base = (rng.random(300) < 0.4).astype(float)
    better = np.maximum(base, (rng.random(300) < 0.3)).astype(float)  # same seeds, + ~0.18
    ones = np.ones(300)
    w = resample_weights(np.zeros(300), 2000, seed=0)
    d = paired(np.c_[better, ones], np.c_[base, ones], rate, w)["rate"]
    assert d.diff > 0.1 and d.lo > 0 and d.p < 0.01
    same = paired(np.c_[base, ones], np.c_[base, ones], rate, w)["rate"]
    assert same.diff == 0 and same.p == 1.0
    noise = (rng.random(300) < 0.4).astype(float)
    null = paired(np.c_[noise, ones], np.c_[base, ones], rate, w)["rate"]
    assert null.lo < 0 < null.hi or null.p > 0.01
    with pytest.raises(ValueError, match="same clusters"):
        paired(np.c_[base, ones], np.c_[base, ones][:10], rate, w)


def test_pairing_is_tighter_than_independent_intervals():
    """Two conditions sharing most outcomes (same seeds): the paired CI of the difference is
    far narrower than the sum of the two half-widths."""
    rng = np.random.default_rng(3)
    a = (rng.random(200) < 0.5).astype(float)
    b = a.copy()
    b[:10] = 1.0
    ones = np.ones(200)
    w = resample_weights(np.zeros(200), 1000, seed=0)
    d = paired(np.c_[b, ones], np.c_[a, ones], rate, w)["rate"]
    ia = intervals(np.c_[a, ones], rate, w)["rate"]
    assert (d.hi - d.lo) < 0.5 * (ia.hi - ia.lo)


def test_auc_matches_sklearn_and_resamples_whole_episodes():
    rng = np.random.default_rng(4)
    cluster = np.repeat(np.arange(40), 25)
    y = (rng.random(1000) < 0.2).astype(int)
    s = y * 1.0 + rng.normal(0, 1, 1000)
    s[::7] = np.round(s[::7], 1)  # ties
    out = auc_interval(y, s, cluster, strata=np.zeros(40), reps=300, seed=0)
    assert out["auroc"].value == pytest.approx(roc_auc_score(y, s))
    assert out["auprc"].value == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert out["auroc"].lo < out["auroc"].value < out["auroc"].hi
    assert out["auroc"].n == 1000
    nan_s = s.copy()
    nan_s[:10] = np.nan
    assert auc_interval(y, nan_s, cluster, strata=np.zeros(40), reps=20)["auroc"].n == 990
    one_class = auc_interval(np.zeros(10), s[:10], cluster[:10], strata=[0], reps=10)
    assert math.isnan(one_class["auroc"].value)


def test_episode_clusters_widen_the_auc_interval():
    """Scores constant within an episode: 40 episodes carry the information, not 1000 steps,
    so the cluster CI must be wider than the one that treats steps as independent."""
    rng = np.random.default_rng(5)
    ep_y = (rng.random(40) < 0.5).astype(int)
    ep_s = ep_y * 0.5 + rng.normal(0, 1, 40)
    y, s = np.repeat(ep_y, 25), np.repeat(ep_s, 25)
    clustered = auc_interval(y, s, np.repeat(np.arange(40), 25), strata=np.zeros(40),
                             reps=300)["auroc"]
    steps = auc_interval(y, s, np.arange(1000), strata=np.zeros(1000), reps=300)["auroc"]
    assert (clustered.hi - clustered.lo) > 2 * (steps.hi - steps.lo)


def test_lead_time_at_a_fixed_false_alarm_rate():
    # 10 failed episodes whose score rises 3 s before the failure, 10 quiet ones
    t = np.arange(0.1, 20.05, 0.1)
    ttf, score, cl = [], [], []
    for k in range(20):
        failed = k < 10
        tt = (t[-1] - t) if failed else np.full(t.size, np.inf)
        ttf.append(tt)
        score.append(np.where(tt <= 3.0, 1.0, 0.0) + 0.01 * np.sin(t * (k + 1)))
        cl.append(np.full(t.size, k))
    out = lead_time(np.concatenate(ttf), np.concatenate(score), np.concatenate(cl),
                    false_alarm=0.05, window=10.0, reps=100)
    assert out["detected"].value == 1.0
    assert out["lead_time"].value == pytest.approx(3.0, abs=0.11)


def test_iqm_never_drops_a_scenario():
    assert iqm([0.0, 0.2, 0.4, 0.6]) == pytest.approx(0.3)
    assert math.isnan(iqm([0.1, math.nan, 0.3]))
    x = np.array([[1.0, np.nan], [0.0, 2.0], [1.0, 3.0]])
    assert math.isnan(iqm_interval(x, reps=50).iqm)


def test_iqm_interval_is_seeded_and_brackets_the_point():
    x = np.random.default_rng(0).random((5, 4))
    a, b = iqm_interval(x, reps=200, seed=1), iqm_interval(x, reps=200, seed=1)
    assert a == b and a.lo <= a.iqm <= a.hi and a.lo < a.hi and a.n == 20
    assert iqm_interval(x, reps=200, seed=2) != a
    one_seed = iqm_interval(np.array([[0.2, 0.4, 0.6]]), reps=50)
    assert one_seed.lo == one_seed.hi == one_seed.iqm
    with pytest.raises(ValueError, match="runs, tasks"):
        iqm_interval(np.ones(3))
    assert summarize({"a": np.ones((2, 2))}, reps=20)["a"].iqm == 1.0


def test_the_crossed_interval_carries_the_shared_evaluation_blocks_sampling_error():
    """Three runs scored on the same 40 evaluation seeds per task: when the runs agree, the
    runs-only bootstrap gives a zero-width CI, but the block itself is a sample (about
    +-0.15 at p = 0.5 and 40 episodes); the crossed bootstrap keeps that width. The point
    estimate is the IQM of the cell means either way."""
    rng = np.random.default_rng(0)
    block = (rng.random((2, 40)) < 0.5).astype(float)  # two tasks' evaluation episodes
    eps = np.repeat(block[None], 3, axis=0)  # every run scores each seed the same
    runs_only = iqm_interval(eps.mean(axis=2), reps=1000)
    crossed = crossed_iqm_interval(eps, reps=1000)
    assert runs_only.lo == runs_only.hi
    assert crossed.iqm == runs_only.iqm
    # binomial sd of the mean of 80 episodes at p ~ 0.5: 0.056, so a 95% CI of ~0.22 wide
    assert 0.12 < crossed.hi - crossed.lo < 0.35
    assert crossed.lo < crossed.iqm < crossed.hi
    with pytest.raises(ValueError, match="runs, tasks, episodes"):
        crossed_iqm_interval(eps.mean(axis=2))
