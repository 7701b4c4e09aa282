"""rliable aggregation: IQM, stratified bootstrap CIs, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rliable import metrics as rm

from takeover.experiments.stats import iqm_interval, summarize


def test_iqm_matches_rliable_and_ci_brackets_it():
    x = np.random.default_rng(0).random((5, 4))
    iv = iqm_interval(x, reps=200, seed=1)
    assert iv.iqm == pytest.approx(float(rm.aggregate_iqm(x)))
    assert iv.mean == pytest.approx(float(x.mean()))
    assert iv.lo <= iv.iqm <= iv.hi and iv.lo < iv.hi and iv.n == 20


def test_same_seed_same_interval_other_seed_other_interval():
    x = np.random.default_rng(3).random((4, 3))
    a, b = iqm_interval(x, reps=100, seed=0), iqm_interval(x, reps=100, seed=0)
    assert a == b
    assert iqm_interval(x, reps=100, seed=5) != a


def test_global_numpy_rng_is_left_untouched():
    np.random.seed(42)
    expected = np.random.random()
    np.random.seed(42)
    iqm_interval(np.random.default_rng(0).random((3, 3)), reps=50)
    assert np.random.random() == expected


def test_undefined_scenarios_are_dropped_not_imputed():
    x = np.array([[1.0, np.nan], [0.0, 2.0], [1.0, 3.0]])
    iv = iqm_interval(x, reps=50)
    assert iv.n == 3 and iv.mean == pytest.approx(2 / 3)
    assert math.isnan(iqm_interval(np.full((2, 2), np.nan)).iqm)


def test_degenerate_cases():
    one_seed = iqm_interval(np.array([[0.2, 0.4, 0.6]]), reps=50)
    assert one_seed.lo == one_seed.hi == one_seed.iqm
    const = iqm_interval(np.ones((3, 2)), reps=50)
    assert (const.lo, const.iqm, const.hi) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="runs, tasks"):
        iqm_interval(np.ones(3))


def test_summarize_per_metric():
    out = summarize({"a": np.ones((2, 2)), "b": np.zeros((2, 2))}, reps=20)
    assert out["a"].iqm == 1.0 and out["b"].iqm == 0.0
