"""Calibrating a score into a probability of failure, on held-out labelled rollouts.

Raw scores (an ensemble's variance, an entropy in nats) have no common scale, so a fixed
threshold means something different for every estimator. Fit a calibrator on held-out
``(score, failed within H)`` pairs, e.g. the :class:`~takeover.supervisor.counterfactual.Label`
list of a separate run (:func:`from_labels`), then gate on the calibrated value.

* :class:`IsotonicCalibrator`: the monotone (non-decreasing) map from score to failure rate
  that best fits the labels (scikit-learn's isotonic regression); an estimate of
  ``P(failure | score)``.
* :class:`ConformalCalibrator`: split conformal. ``p_value(s)`` is the conformal p-value of
  ``s`` against the *safe* calibration scores, ``prob(s) = 1 - p_value(s)`` how surely ``s``
  is above a safe step's score; ``threshold(alpha)`` is the score that flags at least
  ``1 - alpha`` of future failures (finite-sample guarantee under exchangeability).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _check(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).reshape(-1)
    y = np.asarray(labels).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"got {s.size} scores but {y.size} labels; pass one label per score")
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    if y.all() or not y.any():
        raise ValueError("calibration needs both failed and safe examples; collect more "
                         "held-out rollouts (e.g. on hazard scenarios)")
    return s, y


def from_labels(labels: Sequence[Any], estimator: str) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, failed)`` of one estimator from counterfactual labels (uniformly sampled
    labels only, i.e. ``weight > 1``, when there are any, so gate triggers do not bias it)."""
    chosen = [lb for lb in labels if lb.weight > 1.0] or list(labels)
    if not chosen or estimator not in chosen[0].scores:
        raise ValueError(f"no labels with a score for estimator {estimator!r}")
    return (np.array([lb.scores[estimator] for lb in chosen], dtype=float),
            np.array([lb.needed for lb in chosen], dtype=bool))


class IsotonicCalibrator:
    """Monotone map score -> P(failure); scores outside the fitted range are clipped."""

    def __init__(self) -> None:
        self.model: Any = None

    def fit(self, scores: Any, labels: Any) -> IsotonicCalibrator:
        from sklearn.isotonic import IsotonicRegression

        s, y = _check(scores, labels)
        self.model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True,
                                        out_of_bounds="clip").fit(s, y.astype(float))
        return self

    def predict(self, scores: Any) -> np.ndarray:
        if self.model is None:
            raise ValueError("IsotonicCalibrator is not fitted: call fit(scores, labels)")
        return self.model.predict(np.asarray(scores, dtype=float).reshape(-1))

    def __call__(self, score: float) -> float:
        return float(self.predict([score])[0])


class ConformalCalibrator:
    """Split-conformal calibration of a score against held-out safe and failed steps."""

    def __init__(self) -> None:
        self.safe: np.ndarray | None = None
        self.failed: np.ndarray | None = None

    def fit(self, scores: Any, labels: Any) -> ConformalCalibrator:
        s, y = _check(scores, labels)
        self.safe, self.failed = np.sort(s[~y]), np.sort(s[y])
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        """The sorted (safe, failed) calibration scores; refuses an unfitted calibrator."""
        if self.safe is None or self.failed is None:
            raise ValueError("ConformalCalibrator is not fitted: call fit(scores, labels)")
        return self.safe, self.failed

    def p_value(self, scores: Any) -> np.ndarray:
        """``(1 + #{safe >= s}) / (n_safe + 1)``: small when ``s`` is unusual for a safe step."""
        safe, _ = self._fitted()
        s = np.asarray(scores, dtype=float).reshape(-1)
        above = safe.size - np.searchsorted(safe, s, side="left")
        return (1.0 + above) / (safe.size + 1.0)

    def prob(self, scores: Any) -> np.ndarray:
        return 1.0 - self.p_value(scores)

    def __call__(self, score: float) -> float:
        return float(self.prob([score])[0])

    def threshold(self, alpha: float = 0.1) -> float:
        """A score level flagging ``>= 1 - alpha`` of future failures: the
        ``floor(alpha * (n + 1))``-th smallest failed score (``-inf`` if too few to
        guarantee it)."""
        _, failed = self._fitted()
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha={alpha}: the allowed miss rate must be in (0, 1)")
        k = math.floor(alpha * (failed.size + 1))
        return -math.inf if k < 1 else float(failed[k - 1])
