"""How well a per-step signal predicts failure, and the ensemble disagreement signal itself:
the one home of both for every layer (agents' manifests, the supervisor's estimators, the
experiments' reports), in the lowest layer that needs them.

* :func:`ensemble_kl`: an ensemble's disagreement, the mean KL (nats) from each member's
  action distribution to their mixture (what the supervisor's ``ensemble`` estimator reads);
* :func:`resample_weights`: the one cluster bootstrap: episodes are clusters (the steps of
  one episode are not independent), scenarios are strata;
* :func:`auc_interval`: AUROC / AUPRC of a step score for a binary step label, with a
  percentile CI from that bootstrap (tied scores count half);
* :func:`disagreement_auroc`: :func:`auc_interval` of an ensemble's disagreement for "the
  agent alone fails within ``horizon`` s" on its own episodes, stratified by env.

Only numpy here (and the risk module's failure labels), so ``takeover.experiments.stats``
and ``takeover.supervisor.estimators`` re-export these without a cycle. Seeded: the same
inputs give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_EPS = 1e-8
"""Probabilities are clipped to [_EPS, 1] before the log (a member sure of one action)."""


def ensemble_kl(probs: np.ndarray) -> np.ndarray:
    """``(..., K, n)`` member action distributions -> ``(...,)`` mean KL(member || mixture),
    the generalised Jensen-Shannon divergence in nats: 0 when all members agree, at most
    log K."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)
    mix = p.mean(axis=-2, keepdims=True)
    return (p * (np.log(p) - np.log(mix))).sum(axis=-1).mean(axis=-1)


@dataclass(frozen=True)
class Interval:
    """A pooled value and its confidence interval (``NaN`` when undefined); ``n`` the
    sample it rests on (episodes, or steps for an AUROC)."""

    value: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": float(self.n)}


def resample_weights(strata: Sequence, reps: int, seed: int = 0) -> np.ndarray:
    """``(reps, clusters)`` multiplicities of a cluster bootstrap stratified by ``strata``
    (one label per cluster): each resample redraws, with replacement, as many clusters of
    each stratum as it has, so the scenario mix stays the design's."""
    labels = np.asarray(list(strata))
    w = np.zeros((reps, len(labels)))
    rng = np.random.default_rng(seed)
    for s in sorted(set(labels.tolist()), key=str):
        idx = np.flatnonzero(labels == s)
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=reps)
    return w


def percentile_ci(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of the finite values of ``x``
    (resamples where a statistic is undefined are left out); NaNs when none is finite."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    a = (1 - confidence) / 2
    return float(np.quantile(x, a)), float(np.quantile(x, 1 - a))


def _auc_sums(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted AUROC and average precision for every row of ``w`` (``(R, S)`` step weights),
    with tied scores counted half (AUROC) / as one threshold (AP)."""
    order = np.argsort(-s, kind="stable")
    s, y, w = s[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(w * y, starts, axis=1)  # (R, G) per distinct score, descending
    neg = np.add.reduceat(w * (1 - y), starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    p_tot, n_tot = tp[:, -1], fp[:, -1]
    neg_below = n_tot[:, None] - fp  # negatives scoring strictly lower
    with np.errstate(divide="ignore", invalid="ignore"):
        auroc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (p_tot * n_tot)
        prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (pos * prec).sum(axis=1) / p_tot
    bad = (p_tot <= 0) | (n_tot <= 0)
    return np.where(bad, np.nan, auroc), np.where(bad, np.nan, ap)


def auc_interval(y: np.ndarray, score: np.ndarray, cluster: np.ndarray, *, strata: Sequence,
                 reps: int = 500, confidence: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """AUROC and AUPRC of ``score`` for the binary step label ``y`` with an episode-cluster
    bootstrap CI: ``cluster[i]`` is step i's episode index (0..E-1), ``strata`` the scenario
    of each episode. Steps with a NaN score are left out (and counted in ``n``); both are
    NaN when the steps hold only one class."""
    y, score, cluster = np.asarray(y, float), np.asarray(score, float), np.asarray(cluster)
    ok = np.isfinite(score)
    y, score, cluster = y[ok], score[ok], cluster[ok]
    if y.size == 0 or y.min() == y.max():
        nan = Interval(math.nan, math.nan, math.nan, int(y.size))
        return {"auroc": nan, "auprc": nan}
    auroc, ap = _auc_sums(y, score, np.ones((1, y.size)))
    wc = resample_weights(strata, reps, seed)
    broc, bap = _auc_sums(y, score, wc[:, cluster])
    out = {}
    for name, v, b in (("auroc", auroc[0], broc), ("auprc", ap[0], bap)):
        lo, hi = percentile_ci(b, confidence)
        out[name] = Interval(float(v), lo, hi, int(y.size))
    return out


def disagreement_auroc(agent: Any, episodes: Sequence[Any], horizon: float, *,
                       reps: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> dict[str, Interval]:
    """:func:`auc_interval` of ``agent``'s ensemble disagreement (:func:`ensemble_kl` of
    ``agent.act_arrays(obs).probs``, ``(N, K, n)``) for "fails (collision, off-road) within
    ``horizon`` s", over the steps of ``episodes`` (``takeover.agents.rollout.Episode`` with
    ``obs`` kept), resampling whole episodes within each env (``Episode.env_id``).
    ``positives``: an ``Interval`` whose ``value`` and ``n`` count the failure-labelled
    steps. The control rate is 10 Hz (every ``takeover/*`` world)."""
    from takeover.agents.risk import failure_labels

    if not episodes:
        raise ValueError("disagreement_auroc needs at least one episode (with obs kept: "
                         "run_episodes(..., keep_obs=True))")
    steps = np.array([round(horizon * 10.0)])
    scores, labels = [], []
    for e in episodes:
        if e.obs is None:
            raise ValueError(f"episode {e.env_id} seed {e.seed} has no observations; "
                             "play it with run_episodes(..., keep_obs=True)")
        scores.append(ensemble_kl(agent.act_arrays(e.obs).probs))
        labels.append(failure_labels(len(e.obs), e.failed, steps)[:, 0])
    cluster = np.concatenate([np.full(len(s), i) for i, s in enumerate(scores)])
    return auc_interval(np.concatenate(labels), np.concatenate(scores), cluster,
                        strata=[e.env_id for e in episodes], reps=reps,
                        confidence=confidence, seed=seed)
