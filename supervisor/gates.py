"""Takeover gates: from this step's score, decide whether to ask the human to drive.

A gate sees one score (the configured estimator's) plus a :class:`GateContext` and returns a
:class:`GateDecision`: ``request`` (ask for / keep the human), the ``threshold`` it compared
against (NaN if none) and ``release`` (it would let the agent drive again). The handover
protocol (``takeover.supervisor.handover``) turns decisions into takeover requests and
handbacks. Gates that learn their threshold online do so in ``end_episode()``.

Add a gate with one class and one ``GATES.register`` line.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from takeover.registry import Registry
from takeover.types import AgentOutput, Phase


@dataclass(frozen=True)
class GateContext:
    """What a gate may look at besides its score.

    Attributes:
        time: simulation time, s.
        phase: the protocol state before this step.
        info: the env's info for the current observation.
        out: the agent's output for the current observation.
        human_action: the human's latest action (previous step), or ``None``.
        scores: every estimator's score this step, by name (for gates using two signals).
        dt: control period, s.
    """

    time: float
    phase: Phase
    info: Mapping[str, Any]
    out: AgentOutput
    human_action: Any = None
    scores: Mapping[str, float] = field(default_factory=dict)
    dt: float = 0.1


@dataclass(frozen=True)
class GateDecision:
    """``request``: the human should drive; ``threshold``: the level the score was compared
    to (NaN if none); ``release``: the gate allows handing control back to the agent."""

    request: bool
    threshold: float = math.nan
    release: bool = True


@runtime_checkable
class Gate(Protocol):
    name: str
    accepts_human_initiative: bool

    def decide(self, score: float, ctx: GateContext) -> GateDecision: ...

    def reset(self) -> None: ...

    def end_episode(self) -> None: ...


GATES: Registry[Gate] = Registry("gate")


class BaseGate:
    """No-op hooks; ``accepts_human_initiative`` says if the human may take over unasked."""

    name = "base"
    accepts_human_initiative = False

    def reset(self) -> None:
        """Called at the start of every episode (clear per-episode state)."""

    def end_episode(self) -> None:
        """Called when an episode ends (online recalibration goes here)."""


def _check_rate(rate: float, what: str = "target_rate") -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{what}={rate}: must be a fraction of steps in [0, 1]")
    return float(rate)


@GATES.register("never")
class NeverGate(BaseGate):
    """The agent always drives (the unsupervised baseline)."""

    name = "never"

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        return GateDecision(False, math.nan, True)


@GATES.register("always")
class AlwaysGate(BaseGate):
    """The human is asked at once and keeps control (the human-only baseline)."""

    name = "always"

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        return GateDecision(True, math.nan, False)


@GATES.register("random")
class RandomGate(BaseGate):
    """Requests on a random ``rate`` of steps (seeded): the baseline a smart gate must beat
    at the same intervention rate."""

    name = "random"

    def __init__(self, rate: float = 0.05, seed: int = 0) -> None:
        self.rate = _check_rate(rate, "rate")
        self.rng = np.random.default_rng(seed)

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        req = bool(self.rng.random() < self.rate)
        return GateDecision(req, math.nan, not req)


@GATES.register("threshold")
class ThresholdGate(BaseGate):
    """Fixed threshold with hysteresis and a minimum dwell (LazyDAgger's two thresholds):
    switch on above ``high``, off below ``low`` and only after ``min_dwell`` steps on, so a
    score hovering at the threshold does not flip control every step."""

    name = "threshold"

    def __init__(self, high: float = 0.5, low: float | None = None, min_dwell: int = 5) -> None:
        low = high if low is None else low
        if low > high:
            raise ValueError(f"low={low} > high={high}: the release level must not exceed the "
                             f"request level")
        if min_dwell < 0:
            raise ValueError(f"min_dwell={min_dwell}: must be >= 0 steps")
        self.high, self.low, self.min_dwell = float(high), float(low), int(min_dwell)
        self.reset()

    def reset(self) -> None:
        self.on = False
        self.dwell = 0

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        if not self.on and score > self.high:
            self.on, self.dwell = True, 0
        elif self.on:
            self.dwell += 1
            if score < self.low and self.dwell >= self.min_dwell:
                self.on = False
        return GateDecision(self.on, self.high, not self.on)


class _OnlineQuantile:
    """Threshold = (1 - rate) quantile of every score seen so far, refit per episode."""

    def __init__(self, rate: float, initial: float, max_history: int) -> None:
        self.rate = rate
        self.threshold = float(initial)
        self.history: deque[float] = deque(maxlen=max_history)
        self.episode: list[float] = []

    def observe(self, score: float) -> None:
        if math.isfinite(score):
            self.episode.append(score)

    def refit(self) -> None:
        self.history.extend(self.episode)
        self.episode = []
        if self.history:
            self.threshold = float(np.quantile(np.fromiter(self.history, float), 1.0 - self.rate))


@GATES.register("budget")
class BudgetGate(BaseGate):
    """ThriftyDAgger's budget rule: the threshold is the ``(1 - target_rate)`` quantile of
    all scores seen so far, refit after every episode, so the share of steps with a request
    converges to ``target_rate`` whatever the score's scale. Before the first refit the
    threshold is ``initial`` (``inf``: no requests until a first episode calibrates it; or
    call ``fit(scores)`` with held-out scores)."""

    name = "budget"

    def __init__(self, target_rate: float = 0.05, initial: float = math.inf,
                 max_history: int = 200_000) -> None:
        self.target_rate = _check_rate(target_rate)
        self.q = _OnlineQuantile(self.target_rate, initial, max_history)

    @property
    def threshold(self) -> float:
        return self.q.threshold

    def fit(self, scores: np.ndarray) -> BudgetGate:
        for s in np.asarray(scores, dtype=float).reshape(-1):
            self.q.observe(float(s))
        self.q.refit()
        return self

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        self.q.observe(score)
        req = bool(score > self.q.threshold)
        return GateDecision(req, self.q.threshold, not req)

    def end_episode(self) -> None:
        self.q.refit()


def action_discrepancy(a: Any, b: Any) -> float:
    """Euclidean distance between two Box actions; 0/1 mismatch for Discrete indices."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim == 0 or (x.size == 1 and np.issubdtype(np.asarray(a).dtype, np.integer)):
        return float(x.reshape(-1)[0] != y.reshape(-1)[0])
    return float(np.linalg.norm(x - y))


@GATES.register("thrifty")
class ThriftyGate(BaseGate):
    """ThriftyDAgger's rule. Request when novelty (this gate's score, thresholded at the online
    ``(1 - target_rate)`` quantile) is high **or** the risk (``ctx.scores[risk_score]``, else
    ``ctx.out.risk``) exceeds ``risk_high``. Switch back to the agent only when the agent
    would now do what the human does (discrepancy below ``discrepancy``, ThriftyDAgger's mean
    BC discrepancy) **and** the risk is below ``risk_low``."""

    name = "thrifty"

    def __init__(self, target_rate: float = 0.05, risk_score: str = "q_risk",
                 risk_high: float = 0.5, risk_low: float = 0.5, discrepancy: float = 0.1,
                 initial: float = math.inf, max_history: int = 200_000) -> None:
        self.target_rate = _check_rate(target_rate)
        self.q = _OnlineQuantile(self.target_rate, initial, max_history)
        self.risk_score = risk_score
        self.risk_high, self.risk_low = float(risk_high), float(risk_low)
        self.discrepancy = float(discrepancy)

    def _risk(self, ctx: GateContext) -> float:
        if self.risk_score in ctx.scores:
            return float(ctx.scores[self.risk_score])
        if ctx.out.risk is not None:
            return float(ctx.out.risk)
        raise ValueError(f"thrifty gate needs a risk: add estimator {self.risk_score!r} "
                         f"(e.g. 'q_risk') or an agent that reports AgentOutput.risk")

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        self.q.observe(score)
        risk = self._risk(ctx)
        req = bool(score > self.q.threshold or risk > self.risk_high)
        release = risk < self.risk_low and (
            ctx.human_action is None
            or action_discrepancy(ctx.out.action, ctx.human_action) < self.discrepancy
        )
        return GateDecision(req, self.q.threshold, bool(release and not req))

    def end_episode(self) -> None:
        self.q.refit()


@GATES.register("predictive")
class PredictiveGate(BaseGate):
    """Predictive takeover request: request as soon as the risk predicted within the next
    ``horizon`` seconds exceeds ``level``, so the human gets lead time; release once it falls
    below ``release_level``. The prediction comes from

    * ``source="trend"``: the gate's score extrapolated ``horizon`` s ahead with a
      least-squares slope over the last ``window`` steps (rising scores only), or the
      current score if higher: works with any estimator;
    * ``source="critic"``: the agent's risk critic at that horizon,
      ``out.extra["risk_by_horizon"][h]`` for the critic horizon ``h`` closest to ``horizon``
      (P(failure within h s)); the gate's score is then not used.
    """

    name = "predictive"

    def __init__(self, level: float = 0.5, horizon: float = 2.0, window: int = 5,
                 release_level: float | None = None, source: str = "trend") -> None:
        if horizon < 0 or window < 2:
            raise ValueError(f"horizon={horizon} s must be >= 0 and window={window} >= 2 steps")
        if source not in ("trend", "critic"):
            raise ValueError(f"source={source!r}: use 'trend' or 'critic'")
        self.level = float(level)
        self.release_level = self.level if release_level is None else float(release_level)
        self.horizon, self.window, self.source = float(horizon), int(window), source
        self.reset()

    def reset(self) -> None:
        self.recent: deque[float] = deque(maxlen=self.window)
        self.on = False

    def predict(self, dt: float) -> float:
        y = np.fromiter(self.recent, float)
        if len(y) < 2:
            return float(y[-1])
        x = np.arange(len(y), dtype=float)
        slope = float(np.polyfit(x, y, 1)[0]) / dt
        return float(y[-1] + max(slope, 0.0) * self.horizon)

    def critic_risk(self, out: AgentOutput) -> float:
        table = out.extra.get("risk_by_horizon")
        if not table:
            raise ValueError("predictive gate with source='critic' needs "
                             "AgentOutput.extra['risk_by_horizon'] (an agent with a risk "
                             "critic); or use source='trend'")
        h = min(table, key=lambda k: abs(float(k) - self.horizon))
        return float(table[h])

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        if self.source == "critic":
            peak = self.critic_risk(ctx.out)
        else:
            self.recent.append(float(score))
            peak = max(score, self.predict(ctx.dt))
        if peak > self.level:
            self.on = True
        elif peak < self.release_level:
            self.on = False
        return GateDecision(self.on, self.level, not self.on)


@GATES.register("human")
class HumanGate(BaseGate):
    """Human-gated (HG-DAgger): never requests; the human takes over and releases at will."""

    name = "human"
    accepts_human_initiative = True

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        return GateDecision(False, math.nan, False)


@GATES.register("hybrid")
class HybridGate(BaseGate):
    """Robot-gated **or** human-initiated: wraps any robot gate (by name + kwargs or an
    instance) and also lets the human take over unasked."""

    name = "hybrid"
    accepts_human_initiative = True

    def __init__(self, inner: str | Gate = "threshold", **kwargs: Any) -> None:
        self.inner = GATES.make(inner, **kwargs) if isinstance(inner, str) else inner

    def decide(self, score: float, ctx: GateContext) -> GateDecision:
        return self.inner.decide(score, ctx)

    def reset(self) -> None:
        self.inner.reset()

    def end_episode(self) -> None:
        self.inner.end_episode()
