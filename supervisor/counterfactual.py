"""Counterfactual trigger scoring: was a takeover request *needed*?

At a step we snapshot the world, let the agent drive alone for ``horizon`` seconds from
there (on a scratch copy for batched worlds, or on the env restored exactly afterwards for
a single one), and label the step *needed* if the agent alone failed (collision /
off-road) within the horizon. Labelled are
every step where some gate requests (all of them) and a seeded uniform sample of the other
steps (``sample_rate``); each label carries its inverse sampling probability as a weight, so
AUROC / AUPRC / recall computed with weights are unbiased over all steps.

A single env's rollout steps the *unwrapped* env (no wrapper sees it, rendering is
suspended) and the snapshot includes the world's RNG, so the real episode continues exactly
as if nothing happened. The agent must be deterministic (or have no hidden state an ``act`` call would
advance); pass a separate ``agent=`` for rollouts otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from takeover.types import Agent

from .engine import default_failure
from .gates import _uniform, stream_key


@dataclass(frozen=True)
class Label:
    """One counterfactually labelled step.

    Attributes:
        episode: episode id; step: step index; time: simulation time of the decision, s.
        needed: the agent alone failed within the horizon from this step.
        time_to_failure: s from the decision to that failure, NaN when it did not fail.
        requests: each gate's request at this step, by gate name.
        onsets: each gate's request is new this step (it did not request the step before).
        scores: every estimator's score at this step.
        weight: inverse probability that this step was labelled (1 for gate triggers).
    """

    episode: str
    step: int
    time: float
    needed: bool
    time_to_failure: float
    requests: dict[str, bool] = field(default_factory=dict)
    onsets: dict[str, bool] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    weight: float = 1.0


class Counterfactual:
    """Labels steps of supervised episodes for N worlds at once; collect with ``labels``,
    summarise with :func:`report`. Same ``seed`` and episode seeds -> same labels, whatever
    the batch size: each world's sampler is a counter-based stream keyed by ``(seed,
    episode seed)`` (:func:`~takeover.supervisor.gates.stream_key`).

    On batched worlds the snapshots are queued and rolled out ``pool`` at a time on a
    scratch copy of the env (one batched agent forward per rollout step for all of them);
    :meth:`flush` runs what is queued (``Engine.run`` calls it at the end)."""

    def __init__(self, horizon: float = 2.0, sample_rate: float = 0.1, seed: int = 0, *,
                 agent: Agent | None = None,
                 failure: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray] = default_failure,
                 pool: int = 256) -> None:
        if not horizon > 0 or not math.isfinite(horizon):
            raise ValueError(f"horizon={horizon}: must be a finite number > 0 s")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate={sample_rate}: must be in (0, 1] (share of "
                             f"non-trigger steps to label)")
        if pool < 1:
            raise ValueError(f"pool={pool}: must be >= 1 snapshots")
        self.horizon, self.sample_rate, self.seed = float(horizon), float(sample_rate), seed
        self.agent = agent
        self.failure = failure
        self.pool = int(pool)
        self.labels: list[Label] = []
        self._pending: list[tuple] = []  # per observed step: its labelled rows' facts
        self._queued = 0  # snapshots in _pending
        self._dt = 0.1
        self.bind(1)

    def bind(self, n: int) -> None:
        self.key = np.zeros(n, dtype=np.uint64)
        self.count = np.zeros(n, dtype=np.int64)
        self.reset(np.arange(n), [None] * n)

    def reset(self, worlds: np.ndarray, episode_seeds: Sequence[int | None]) -> None:
        """Seed the samplers of ``worlds`` from ``(seed, episode_seed)``."""
        for w, s in zip(np.asarray(worlds).tolist(), episode_seeds):
            self.key[w] = stream_key(self.seed, s)
        self.count[worlds] = 0

    def observe(self, worlds: Any, act: Callable[[np.ndarray], Any], obs: np.ndarray, *,
                active: np.ndarray, episodes: Sequence[str], steps: np.ndarray,
                time: np.ndarray, dt: float, scores: Mapping[str, np.ndarray],
                requests: Mapping[str, np.ndarray], onsets: Mapping[str, np.ndarray]) -> None:
        """Maybe label this step in each world (call before ``env.step``). Every world draws
        one number, so the sample does not depend on what the gates did."""
        sampled = _uniform(self.key, self.count) < self.sample_rate
        self.count += 1
        triggered = np.zeros(len(obs), dtype=bool)
        for r in requests.values():
            triggered |= r
        rows = np.flatnonzero(active & (sampled | triggered))
        if not len(rows):
            return
        self._dt = dt
        # the step's facts for its labelled rows, as arrays: Labels are built once, at flush
        self._pending.append((
            [episodes[i] for i in rows.tolist()], steps[rows].copy(), time[rows].copy(),
            triggered[rows], {g: np.asarray(r[rows], bool) for g, r in requests.items()},
            {g: np.asarray(o[rows], bool) for g, o in onsets.items()},
            {k: np.asarray(v[rows], np.float64) for k, v in scores.items()},
            worlds.snapshot_rows(rows), obs[rows]))
        self._queued += len(rows)
        if not worlds.defers_rollouts or self._queued >= self.pool:
            self.flush(worlds, act)

    def flush(self, worlds: Any, act: Callable[[np.ndarray], Any]) -> None:
        """Roll out every queued snapshot and append their labels."""
        if not self._pending:
            return
        if self.agent is not None:
            from takeover.supervisor.engine import rollout_actor

            act = rollout_actor(self.agent)
        steps = max(int(round(self.horizon / self._dt)), 1)
        pend, self._pending, self._queued = self._pending, [], 0
        k_all = worlds.rollout_rows([p[7] for p in pend], np.concatenate([p[8] for p in pend]),
                                    act, steps, self.failure)
        at = 0
        for names, step, t, trig, req, ons, sc, _, _ in pend:
            kk = k_all[at: at + len(names)].tolist()
            at += len(names)
            req_l = {g: r.tolist() for g, r in req.items()}
            ons_l = {g: o.tolist() for g, o in ons.items()}
            sc_l = {k: v.tolist() for k, v in sc.items()}
            for j, (name, st, tt, tr) in enumerate(zip(names, step.tolist(), t.tolist(),
                                                       trig.tolist())):
                k = kk[j]
                self.labels.append(Label(
                    episode=name, step=st, time=tt, needed=k > 0,
                    time_to_failure=k * self._dt if k > 0 else math.nan,
                    requests={g: v[j] for g, v in req_l.items()},
                    onsets={g: v[j] for g, v in ons_l.items()},
                    scores={n: v[j] for n, v in sc_l.items()},
                    weight=1.0 if tr else 1.0 / self.sample_rate))


def _weighted_metrics(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    ok = np.isfinite(s)
    y, s, w = y[ok], s[ok], w[ok]
    if len(np.unique(y)) < 2:
        return math.nan, math.nan
    return (float(roc_auc_score(y, s, sample_weight=w)),
            float(average_precision_score(y, s, sample_weight=w)))


def report(labels: Sequence[Label]) -> dict[str, Any]:
    """Per estimator: weighted AUROC / AUPRC for predicting failure within the horizon. Per
    gate: precision and recall of its requests, false alarms (requests not needed), missed
    failures (needed steps without a request; weighted estimate and labelled count) and the
    mean TOR lead time (time to the agent-alone failure at needed request onsets)."""
    if not labels:
        return {"n_labels": 0, "estimators": {}, "gates": {}}
    y = np.array([lb.needed for lb in labels], dtype=int)
    w = np.array([lb.weight for lb in labels])
    out: dict[str, Any] = {"n_labels": len(labels), "needed_rate": float((y * w).sum() / w.sum()),
                           "estimators": {}, "gates": {}}
    for name in sorted({k for lb in labels for k in lb.scores}):
        s = np.array([lb.scores.get(name, math.nan) for lb in labels], dtype=float)
        auroc, auprc = _weighted_metrics(y, s, w)
        out["estimators"][name] = {"auroc": auroc, "auprc": auprc}
    for gate in sorted({k for lb in labels for k in lb.requests}):
        req = np.array([lb.requests.get(gate, False) for lb in labels])
        onset = np.array([lb.onsets.get(gate, False) for lb in labels])
        tp = float((w * (req & (y == 1))).sum())
        fp = float((w * (req & (y == 0))).sum())
        fn = float((w * (~req & (y == 1))).sum())
        lead = [lb.time_to_failure for lb, o in zip(labels, onset) if o and lb.needed]
        out["gates"][gate] = {
            "requests": int(req.sum()),
            "precision": tp / (tp + fp) if tp + fp > 0 else math.nan,
            "recall": tp / (tp + fn) if tp + fn > 0 else math.nan,
            "false_alarms": int((req & (y == 0)).sum()),
            "missed_failures": fn,
            "missed_failures_labelled": int((~req & (y == 1)).sum()),
            "mean_lead_time": float(np.mean(lead)) if lead else math.nan,
        }
    return out
