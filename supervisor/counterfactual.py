"""Counterfactual trigger scoring: was a takeover request *needed*?

At a step we snapshot the world (``env.unwrapped.get_state()``), let the agent drive alone
for ``horizon`` seconds from there, restore the snapshot exactly, and label the step
*needed* if the agent alone failed (collision / off-road) within the horizon. Labelled are
every step where some gate requests (all of them) and a seeded uniform sample of the other
steps (``sample_rate``); each label carries its inverse sampling probability as a weight, so
AUROC / AUPRC / recall computed with weights are unbiased over all steps.

The rollout steps the *unwrapped* env (no wrapper sees it, rendering is suspended) and the
snapshot includes the world's RNG, so the real episode continues exactly as if nothing
happened. The agent must be deterministic (or have no hidden state an ``act`` call would
advance); pass a separate ``agent=`` for rollouts otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from takeover.types import Agent


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


def default_failure(terminated: bool, info: Mapping[str, Any]) -> bool:
    """Collision or off-road when the env reports them, else any termination."""
    if "collision" in info or "offroad" in info:
        return bool(info.get("collision", False) or info.get("offroad", False))
    return bool(terminated)


def rollout_alone(env: Any, agent: Agent, obs: np.ndarray, steps: int,
                  failure: Callable[[bool, Mapping[str, Any]], bool] = default_failure) -> int:
    """Let ``agent`` drive alone for up to ``steps`` steps from the env's current world, then
    restore the world exactly. Returns the number of steps until failure, or -1."""
    base = env.unwrapped
    if not hasattr(base, "get_state") or not hasattr(base, "set_state"):
        raise TypeError(f"counterfactual scoring needs env.unwrapped.get_state()/set_state(); "
                        f"{type(base).__name__} has none (takeover/* envs do)")
    state = base.get_state()
    render_mode = getattr(base, "render_mode", None)
    base.render_mode = None
    try:
        o = obs
        for k in range(steps):
            o, _, terminated, truncated, info = base.step(agent.act(o).action)
            if failure(terminated, info):
                return k + 1
            if terminated or truncated:
                break
        return -1
    finally:
        base.set_state(state)
        base.render_mode = render_mode


class Counterfactual:
    """Labels steps of supervised episodes; collect with ``labels``, summarise with
    :func:`report`. Same ``seed`` and episode seeds -> same labels."""

    def __init__(self, horizon: float = 2.0, sample_rate: float = 0.1, seed: int = 0, *,
                 agent: Agent | None = None,
                 failure: Callable[[bool, Mapping[str, Any]], bool] = default_failure) -> None:
        if horizon <= 0:
            raise ValueError(f"horizon={horizon}: must be > 0 s")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate={sample_rate}: must be in (0, 1] (share of "
                             f"non-trigger steps to label)")
        self.horizon, self.sample_rate, self.seed = float(horizon), float(sample_rate), seed
        self.agent = agent
        self.failure = failure
        self.labels: list[Label] = []
        self.reset(None)

    def reset(self, episode_seed: int | None) -> None:
        """Seed this episode's sampler from ``(seed, episode_seed)``."""
        key = [self.seed] if episode_seed is None else [self.seed, int(episode_seed)]
        self.rng = np.random.default_rng(key)

    def observe(self, env: Any, agent: Agent, obs: np.ndarray, *, episode: str, step: int,
                time: float, dt: float, scores: Mapping[str, float],
                requests: Mapping[str, bool], onsets: Mapping[str, bool]) -> Label | None:
        """Maybe label this step (call before ``env.step``). Always draws one number, so the
        sample does not depend on what the gates did."""
        sampled = bool(self.rng.random() < self.sample_rate)
        triggered = any(requests.values())
        if not (sampled or triggered):
            return None
        steps = max(int(round(self.horizon / dt)), 1)
        k = rollout_alone(env, self.agent or agent, obs, steps, self.failure)
        label = Label(episode=episode, step=step, time=time, needed=k > 0,
                      time_to_failure=k * dt if k > 0 else math.nan,
                      requests=dict(requests), onsets=dict(onsets), scores=dict(scores),
                      weight=1.0 if triggered else 1.0 / self.sample_rate)
        self.labels.append(label)
        return label


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
