"""Uncertainty and risk estimators: one number per step saying how likely the agent is to be
wrong here (higher = more uncertain / risky).

Each estimator is one small class with a ``name`` and ``score(obs, out, info) -> float``; the
ones that vectorise also offer ``score_batch``. They read only what the agent reports in its
:class:`~takeover.types.AgentOutput` (and, for the oracle, the env's ``info``), so the
model-free ones (``ensemble``, ``entropy``, ``mc_dropout``, ``novelty``) work on any
Gymnasium env with a Box or Discrete action space. Add one with a class and a
``ESTIMATORS.register`` line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from numba import njit

from takeover.agents.arrays import row_products
from takeover.agents.scoring import ensemble_kl as ensemble_kl  # re-exported
from takeover.registry import Registry
from takeover.types import AgentOutput, AgentOutputs, Estimator

ESTIMATORS: Registry[Estimator] = Registry("estimator")

_EPS = 1e-8
_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


def _need(value: Any, field: str, estimator: str, fix: str) -> Any:
    if value is None:
        raise ValueError(f"estimator {estimator!r} needs AgentOutput.{field}, which is None; {fix}")
    return value


class BaseEstimator:
    """``score`` (one step) in terms of ``score_batch`` (N steps), and no build-time needs."""

    name = "base"
    needs: frozenset[str] = frozenset()

    def score(self, obs: np.ndarray, out: AgentOutput | None = None,
              info: Mapping[str, Any] | None = None) -> float:
        """One step's score (``info`` a plain dict): the batch of one."""
        # no output: for the estimators that read none (novelty, ttc); the others say so
        batch = cast(AgentOutputs, AgentOutputs.stack([out]) if out is not None else None)
        rows = {k: np.array([v]) for k, v in (info or {}).items()}
        return float(self.score_batch(np.asarray(obs)[None], batch, rows)[0])

    def score_batch(self, obs: np.ndarray, out: AgentOutputs,
                    info: Mapping[str, Any]) -> np.ndarray:
        """``(N,)`` float64 scores of N steps (see :class:`~takeover.types.Estimator`)."""
        raise NotImplementedError(f"estimator {self.name!r} must define score_batch")


def score_all(estimators: Mapping[str, Estimator], obs: np.ndarray, out: AgentOutputs,
              info: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every estimator's ``(N,)`` scores, by the name it was configured under."""
    return {name: np.asarray(est.score_batch(obs, out, info), dtype=np.float64)
            for name, est in estimators.items()}


# --- ensemble disagreement ---------------------------------------------------------------
def ensemble_variance(member_actions: np.ndarray) -> np.ndarray:
    """``(..., K, A)`` member actions -> ``(...,)`` mean over action dims of the variance
    across members (ThriftyDAgger's novelty measure)."""
    m = np.asarray(member_actions, dtype=np.float64)
    k, a = m.shape[-2], m.shape[-1]
    d = m - m.sum(axis=-2, keepdims=True) / k  # sums, not np.var/mean: ~4x less overhead
    return (d * d).sum(axis=(-2, -1)) / (k * a)


# ensemble_kl: ``(..., K, n)`` -> ``(...,)`` mean KL(member || mixture); one home in
# takeover.agents.scoring (the shipped agents' manifests read it too), re-exported here.


@njit(cache=True)
def _js_one(p: np.ndarray, eps: float) -> float:
    """``ensemble_kl`` of one ``(K, n)`` array as a compiled loop: the per-step path, where
    ten numpy calls on 25 numbers would cost more than the ensemble's forward."""
    k, n = p.shape
    total = 0.0
    for a in range(n):
        mix = 0.0
        for j in range(k):
            mix += min(max(p[j, a], eps), 1.0)
        mix /= k
        for j in range(k):
            q = min(max(p[j, a], eps), 1.0)
            total += q * (np.log(q) - np.log(mix))
    return total / k


def vote_disagreement(member_actions: np.ndarray, n: int | None = None) -> float:
    """Discrete members without probabilities: 1 - share of the most common vote."""
    votes = np.asarray(member_actions).astype(np.int64).reshape(-1)
    counts = np.bincount(votes, minlength=n or 0)
    return float(1.0 - counts.max() / max(votes.size, 1))


@njit(cache=True)
def _js_rows(p: np.ndarray, eps: float) -> np.ndarray:
    """``ensemble_kl`` of ``(N, K, n)`` as a compiled loop (no temporaries)."""
    out = np.empty(p.shape[0])
    for i in range(p.shape[0]):
        out[i] = _js_one(p[i], eps)
    return out


def _votes(member_actions: np.ndarray) -> np.ndarray:
    """``(N, K)`` discrete votes -> ``(N,)`` 1 - share of the most common vote."""
    m = np.asarray(member_actions).astype(np.int64)
    k = m.shape[1]
    same = (m[:, :, None] == m[:, None, :]).sum(axis=2)  # votes agreeing with each member
    return 1.0 - same.max(axis=1) / k


@ESTIMATORS.register("ensemble")
class EnsembleDisagreement(BaseEstimator):
    """Disagreement among an ensemble's members: for Discrete actions the mean KL between
    each member's action distribution and their mixture (``out.probs`` of shape ``(N, K, n)``;
    vote disagreement if only ``member_actions`` are given), for Box actions the variance of
    ``out.member_actions`` ``(N, K, A)`` averaged over action dimensions.

    Disagreement is high where the members' training data did not pin the policy down, which
    is what makes it a novelty signal with no model of the world.
    """

    def __init__(self, name: str = "ensemble", kind: str = "auto") -> None:
        if kind not in ("auto", "variance", "kl"):
            raise ValueError(f"kind={kind!r}: use 'auto', 'variance' or 'kl'")
        self.name = name
        self.kind = kind

    def score_batch(self, obs: np.ndarray, out: AgentOutputs,
                    info: Mapping[str, Any] | None = None) -> np.ndarray:
        use_kl = self.kind == "kl" or (
            self.kind == "auto" and out.probs is not None and np.ndim(out.probs) == 3)
        if use_kl:
            probs = _need(out.probs, "probs", self.name,
                          "use an ensemble agent that returns (K, n) action probabilities")
            if np.ndim(probs) != 3:
                raise ValueError(f"estimator {self.name!r}: probs must be (K, n) per-member "
                                 f"distributions, got shape {np.shape(probs)[1:]}")
            return _js_rows(np.ascontiguousarray(probs, dtype=np.float64), _EPS)
        members = np.asarray(_need(out.member_actions, "member_actions", self.name,
                                   "use an ensemble agent (e.g. takeover.agents EnsembleAgent)"))
        if members.ndim == 2:  # (N, K) discrete votes
            return _votes(members)
        return ensemble_variance(members)


@ESTIMATORS.register("ensemble_variance")
class EnsembleVariance(EnsembleDisagreement):
    """Ensemble disagreement as the variance of the members' actions ``out.member_actions``
    ``(N, K, A)``, averaged over action dimensions (ThriftyDAgger's novelty measure; vote
    disagreement for ``(N, K)`` discrete votes), whatever else the agent reports."""

    def __init__(self, name: str = "ensemble_variance") -> None:
        super().__init__(name, "variance")


@ESTIMATORS.register("ensemble_kl")
class EnsembleKL(EnsembleDisagreement):
    """Ensemble disagreement as the mean KL divergence (nats) from each member's action
    distribution ``out.probs`` ``(N, K, n)`` to their mixture: 0 when all members agree, at
    most log K. Discrete actions only; refuses an agent without per-member probabilities."""

    def __init__(self, name: str = "ensemble_kl") -> None:
        super().__init__(name, "kl")


# --- policy entropy ----------------------------------------------------------------------
@ESTIMATORS.register("entropy")
class PolicyEntropy(BaseEstimator):
    """Entropy of the agent's action distribution: Shannon entropy (nats) of ``out.probs``
    (averaged over members first for an ensemble) for Discrete actions; differential entropy
    of the diagonal Gaussian ``out.log_std`` for Box actions (before squashing).

    A policy trained to be confident where it knows what to do spreads its probability where
    it does not; this catches aleatoric uncertainty the ensemble misses.
    """

    def __init__(self, name: str = "entropy") -> None:
        self.name = name

    def score_batch(self, obs: np.ndarray, out: AgentOutputs,
                    info: Mapping[str, Any] | None = None) -> np.ndarray:
        if out.probs is not None:
            p = np.asarray(out.probs, dtype=np.float64)
            if p.ndim == 3:
                p = p.mean(axis=1)
            p = np.clip(p, _EPS, 1.0)
            return -(p * np.log(p)).sum(axis=-1)
        log_std = _need(out.log_std, "log_std", self.name,
                        "the agent must report probs (Discrete) or log_std (Box)")
        ls = np.asarray(log_std, dtype=np.float64)
        if ls.ndim == 3:
            ls = ls.mean(axis=1)
        return (ls + 0.5 * _LOG_2PI_E).sum(axis=-1)


# --- MC dropout ----------------------------------------------------------------------------
@ESTIMATORS.register("mc_dropout")
class MCDropoutVariance(BaseEstimator):
    """Disagreement over stochastic forward passes with dropout on (a Bayesian-flavoured
    ensemble at one model's cost), read from ``out.extra``: ``"dropout_probs"`` ``(N, S, n)``
    (Discrete; mean KL to the mixture, as ``ensemble_kl``) if present, else
    ``"dropout_actions"``: ``(N, S, A)`` actions (variance, as ``ensemble_variance``) or
    ``(N, S)`` indices (vote disagreement)."""

    def __init__(self, name: str = "mc_dropout") -> None:
        self.name = name

    def score_batch(self, obs: np.ndarray, out: AgentOutputs,
                    info: Mapping[str, Any] | None = None) -> np.ndarray:
        probs = out.extra.get("dropout_probs")
        if probs is not None:
            return _js_rows(np.ascontiguousarray(probs, dtype=np.float64), _EPS)
        samples = out.extra.get("dropout_actions")
        if samples is None:
            raise ValueError(
                f"estimator {self.name!r} needs AgentOutput.extra['dropout_actions'] (S dropout "
                f"samples); use an agent with MC dropout on (e.g. EnsembleAgent("
                f"dropout_samples=8)) or drop this estimator"
            )
        s = np.asarray(samples)
        if s.ndim == 2:
            if np.issubdtype(s.dtype, np.integer):
                return _votes(s)
            return s.astype(np.float64).var(axis=1)
        return ensemble_variance(s)


# --- risk critic -------------------------------------------------------------------------
@ESTIMATORS.register("q_risk")
class QRisk(BaseEstimator):
    """The agent's risk critic (ThriftyDAgger's Q_risk): ``out.risk``, its probability of a
    failure within its horizon under the current policy."""

    def __init__(self, name: str = "q_risk") -> None:
        self.name = name

    def score_batch(self, obs: np.ndarray, out: AgentOutputs,
                    info: Mapping[str, Any] | None = None) -> np.ndarray:
        risk = _need(None if out is None else out.risk, "risk", self.name,
                     "attach a risk critic to the agent (takeover.agents)")
        return np.asarray(risk, dtype=np.float64)


# --- novelty -----------------------------------------------------------------------------
@njit(cache=True)
def _knn_mean(xr: np.ndarray, x: np.ndarray, ref_sq: np.ndarray, k: int, skip: int,
              out: np.ndarray) -> None:
    """``out[i]``: mean distance from ``x[i]`` to its ``k`` nearest reference points (after
    the ``skip`` nearest), from ``xr = x @ ref.T`` and ``ref_sq = |ref|^2``: squared distances
    ``|r|^2 - 2 x.r + |x|^2`` in float32 kept in a sorted top-``(k + skip)`` buffer (one pass,
    no partition of the whole row). NaN for a non-finite observation."""
    n, m = x.shape[0], xr.shape[1]
    kk = k + skip
    best = np.empty(kk, dtype=np.float32)
    for i in range(n):
        xs = np.float32(0.0)
        for j in range(x.shape[1]):
            xs += x[i, j] * x[i, j]
        if not math.isfinite(xs):
            out[i] = math.nan
            continue
        cnt = 0
        for j in range(m):
            v = (np.float32(-2.0) * xr[i, j] + ref_sq[j]) + xs
            if cnt < kk:
                pos = cnt
                cnt += 1
            elif v < best[kk - 1]:
                pos = kk - 1
            else:
                continue
            while pos > 0 and best[pos - 1] > v:
                best[pos] = best[pos - 1]
                pos -= 1
            best[pos] = v
        s = 0.0
        for q in range(skip, kk):
            s += math.sqrt(max(float(best[q]), 0.0))
        out[i] = s / k


@ESTIMATORS.register("novelty")
class Novelty(BaseEstimator):
    """Mean Euclidean distance from the (flattened) observation to its ``k`` nearest
    neighbours in a reference set of the agent's training observations, divided by the
    reference set's own typical k-NN distance (so ~1 means "like the training data").

    Model-free and policy-free: it flags states the agent never saw, whatever the agent is.
    Fit it with ``fit(train_obs)`` (or pass ``reference=``, which callers do for estimators
    that declare ``needs = {"reference_obs"}``); large sets are subsampled to ``max_points``
    (seeded; 500 by default: the cost is N x max_points x obs_dim multiply-adds per step, so
    2000 points cost 4x more for the same ranking within a few hundredths of AUROC). The reference stays float32 and the N queries are one matrix product
    (``|x|^2 + |r|^2 - 2 x.r``), so a step costs a few microseconds per world.
    """

    needs = frozenset({"reference_obs"})

    def __init__(self, reference: np.ndarray | None = None, *, k: int = 5,
                 max_points: int = 500, seed: int = 0, name: str = "novelty") -> None:
        if k < 1:
            raise ValueError(f"k={k}: the number of neighbours must be >= 1")
        self.name = name
        self.k = k
        self.max_points = max_points
        self.seed = seed
        self.reference: np.ndarray | None = None
        self.scale = 1.0
        if reference is not None:
            self.fit(reference)

    def fit(self, reference: np.ndarray) -> Novelty:
        ref = np.asarray(reference, dtype=np.float32)
        if ref.ndim < 2 or len(ref) <= self.k:
            raise ValueError(f"novelty reference must hold more than k={self.k} observations "
                             f"(shape (N, *obs_shape)), got shape {ref.shape}")
        if not np.isfinite(ref).all():
            raise ValueError("novelty reference holds NaN/inf observations; drop them first")
        ref = ref.reshape(len(ref), -1)
        if len(ref) > self.max_points:
            idx = np.random.default_rng(self.seed).choice(len(ref), self.max_points, replace=False)
            ref = ref[np.sort(idx)]
        self.reference = np.ascontiguousarray(ref)
        self._ref_t = np.ascontiguousarray(ref.T)  # (D, M): x @ ref_t is one GEMM
        self._ref_sq = np.einsum("ij,ij->i", ref, ref)  # float32, once
        # typical in-distribution k-NN distance (leave-one-out on a sample)
        sample = ref[: min(len(ref), 200)]
        d = self._knn(sample, exclude_self=True)
        self.scale = float(max(np.median(d), _EPS))
        return self

    def _knn(self, x: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        n = len(x)
        # x.r row by row (the arrays forward's rule): a row's distances, and so its score,
        # never depend on the batch it came in
        xr = row_products(x, self._ref_t)
        out = np.empty(n, dtype=np.float64)
        _knn_mean(xr, x, self._ref_sq, self.k, 1 if exclude_self else 0, out)
        return out

    def score_batch(self, obs: np.ndarray, out: AgentOutputs | None = None,
                    info: Mapping[str, Any] | None = None) -> np.ndarray:
        if self.reference is None:
            raise ValueError(f"estimator {self.name!r} is not fitted: call fit(train_obs) or "
                             f"pass reference=<array of training observations>")
        obs = np.asarray(obs)
        if obs[0].size != self.reference.shape[1]:
            raise ValueError(f"estimator {self.name!r}: observation has {obs[0].size} values but "
                             f"the reference set has {self.reference.shape[1]}")
        return self._knn(obs) / self.scale


# --- ground-truth oracle -----------------------------------------------------------------
@ESTIMATORS.register("ttc")
class TTCOracle(BaseEstimator):
    """Oracle baseline from the simulator's ground truth: ``ref / (ref + info["ttc"])``, which
    rises from 0 (nothing closing) to 1 (contact), is 0.5 at ``ttc == ref`` seconds, and keeps
    every TTC distinct (no clipping ties, so AUROC stays meaningful). Not available to a real
    car; it bounds what a learned estimator could achieve."""

    def __init__(self, ref: float = 2.0, name: str = "ttc") -> None:
        if not ref > 0 or not math.isfinite(ref):
            raise ValueError(f"ref={ref}: the reference time must be a finite number > 0 s")
        self.name = name
        self.ref = ref

    def score_batch(self, obs: np.ndarray, out: AgentOutputs | None,
                    info: Mapping[str, Any]) -> np.ndarray:
        if "ttc" not in info:
            raise ValueError(
                f"estimator {self.name!r} needs info['ttc'] (s); use a takeover/* env or wrap "
                f"other envs with takeover.supervisor.adapters"
            )
        ttc = np.maximum(np.asarray(info["ttc"], dtype=np.float64), 0.0)
        return self.ref / (self.ref + ttc)


def make_estimators(spec: Mapping[str, Mapping[str, Any]] | Sequence[str], *,
                    reference_obs: np.ndarray | None = None) -> dict[str, Estimator]:
    """Build estimators from names (``["ensemble", "ttc"]``) or ``{name: kwargs}`` (a
    ``type`` kwarg picks the registered estimator when the name differs); each is named by its
    key, which is the key of its score in the log. Estimators that declare
    ``needs = {"reference_obs"}`` get ``reference=reference_obs`` unless given one."""
    if isinstance(spec, Mapping):
        items = [(n, dict(kw or {})) for n, kw in spec.items()]
    else:
        items = [(n, {}) for n in spec]
    out: dict[str, Estimator] = {}
    for name, kwargs in items:
        kind = kwargs.pop("type", name)
        factory = ESTIMATORS.get(kind)
        needs: frozenset[str] = getattr(factory, "needs", frozenset())
        if "reference_obs" in needs and reference_obs is not None:
            kwargs.setdefault("reference", reference_obs)
        out[name] = factory(name=name, **kwargs)
    return out
