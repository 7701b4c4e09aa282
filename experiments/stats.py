"""Honest aggregates across seeds: rliable's interquartile mean (IQM) with stratified
bootstrap confidence intervals (Agarwal et al. 2021).

Scores are arranged as rliable expects, a ``(runs, tasks)`` matrix per condition: runs are
evaluation seeds and tasks are scenarios, so the bootstrap resamples seeds within each
scenario. The bootstrap is seeded, so the same scores give the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval (``NaN`` when undefined)."""

    iqm: float
    mean: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"iqm": self.iqm, "mean": self.mean, "lo": self.lo, "hi": self.hi,
                "n": float(self.n)}


NAN_INTERVAL = Interval(math.nan, math.nan, math.nan, math.nan, 0)


def _finite_tasks(scores: np.ndarray) -> np.ndarray:
    """Keep the scenarios (columns) defined for every seed: a metric that does not apply in
    a scenario (no takeover happened) is left out rather than imputed."""
    keep = np.all(np.isfinite(scores), axis=0)
    return scores[:, keep]


def iqm_interval(scores: np.ndarray, *, reps: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> Interval:
    """IQM over all ``(runs, tasks)`` scores and its stratified bootstrap CI."""
    from rliable import library as rly
    from rliable import metrics as rm

    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (runs, tasks) matrix, got shape {scores.shape}")
    scores = _finite_tasks(scores)
    if scores.size == 0:
        return NAN_INTERVAL
    mean = float(np.mean(scores))
    if scores.shape[0] < 2 or np.all(scores == scores.flat[0]):
        # one seed (nothing to resample) or constant scores: the interval is the point
        iqm = float(rm.aggregate_iqm(scores))
        return Interval(iqm, mean, iqm, iqm, scores.size)
    # rliable's StratifiedBootstrap draws its resamples from numpy's global RNG (it ignores
    # ``random_state``), so seed that RNG for the call and restore it afterwards.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        bs = rly.StratifiedBootstrap(scores)
        ci = bs.conf_int(lambda x: np.array([rm.aggregate_iqm(x)]), reps=reps,
                         size=confidence, method="percentile")
    finally:
        np.random.set_state(state)
    return Interval(float(rm.aggregate_iqm(scores)), mean, float(ci[0, 0]), float(ci[1, 0]),
                    scores.size)


def summarize(cells: Mapping[str, np.ndarray], *, reps: int = 2000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, Interval]:
    """:func:`iqm_interval` for each metric's ``(runs, tasks)`` matrix."""
    return {name: iqm_interval(m, reps=reps, confidence=confidence, seed=seed)
            for name, m in cells.items()}
