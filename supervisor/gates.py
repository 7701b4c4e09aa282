"""Takeover gates: from this step's scores, decide whether to ask the human to drive.

A gate decides for N worlds at once: it sees the configured estimator's ``(N,)`` scores plus
a :class:`GateContext` and returns a :class:`GateDecision` of ``(N,)`` arrays: ``request``
(ask for / keep the human), the ``threshold`` it compared against (NaN if none) and
``release`` (it would let the agent drive again). Per-world state lives in arrays sized by
``bind(n)``; ``reset(worlds, seeds)`` starts new episodes in some worlds and
``end_episode(worlds)`` ends them (gates that learn their threshold online refit there, from
what every world saw). The handover protocol (``takeover.supervisor.handover``) turns
decisions into takeover requests and handbacks.

A non-finite score reaches a gate as ``+inf`` (the engine's fail-safe: unknown risk is
maximal risk), so every thresholding gate asks for the human.

Add a gate with one class and one ``GATES.register`` line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from takeover.registry import Registry
from takeover.types import AgentOutputs, Gate, GateContext, GateDecision

GATES: Registry[Gate] = Registry("gate")


class BaseGate:
    """No-op hooks; ``accepts_human_initiative`` says if the human may take over unasked."""

    name = "base"
    accepts_human_initiative = False
    n = 0

    def __init__(self) -> None:
        self.bind(1)

    def bind(self, n: int) -> None:
        self.n = int(n)
        self.reset(np.arange(self.n), [None] * self.n)

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        """Called when episodes start in ``worlds`` (clear their per-episode state)."""

    def end_episode(self, worlds: np.ndarray) -> None:
        """Called when the episodes of ``worlds`` end (online recalibration goes here)."""

    def _const(self, request: bool, release: bool,
               threshold: float = math.nan) -> GateDecision:
        n = self.n
        return GateDecision(np.full(n, request), np.full(n, threshold), np.full(n, release))


def _check_rate(rate: float, what: str = "target_rate") -> float:
    if not 0.0 <= rate <= 1.0:  # NaN fails too
        raise ValueError(f"{what}={rate}: must be a fraction of steps in [0, 1]")
    return float(rate)


def _finite(value: float, what: str) -> float:
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{what}=nan: give a number")
    return value


@GATES.register("never")
class NeverGate(BaseGate):
    """The agent always drives (the unsupervised baseline)."""

    name = "never"

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        return self._const(False, True)


@GATES.register("always")
class AlwaysGate(BaseGate):
    """The human is asked at once and keeps control (the human-only baseline)."""

    name = "always"

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        return self._const(True, False)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _uniform(key: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Counter-based uniforms in [0, 1): splitmix64 of ``key + counter * golden``. One
    stream per world keyed by its episode seed, so a world's draws do not depend on how
    many other worlds share the batch."""
    with np.errstate(over="ignore"):
        z = key + counter.astype(np.uint64) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def stream_key(seed: int, episode_seed: int | None) -> np.uint64:
    """A 64-bit key for :func:`_uniform` from a base seed and an episode seed."""
    entropy = [int(seed)] if episode_seed is None else [int(seed), int(episode_seed)]
    return np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]


@GATES.register("random")
class RandomGate(BaseGate):
    """Requests on a random ``rate`` of steps (seeded per episode from ``(seed, episode
    seed)``): the baseline a smart gate must beat at the same intervention rate."""

    name = "random"

    def __init__(self, rate: float = 0.05, seed: int = 0) -> None:
        self.rate = _check_rate(rate, "rate")
        self.seed = int(seed)
        self.episodes = 0
        self.bind(1)

    def bind(self, n: int) -> None:
        self.key = np.zeros(n, dtype=np.uint64)
        self.count = np.zeros(n, dtype=np.int64)
        super().bind(n)

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        for w, s in zip(worlds, seeds):
            if s is None:  # unseeded episodes still get distinct streams
                self.episodes += 1
                s = -self.episodes
            self.key[w] = stream_key(self.seed, s & 0xFFFFFFFFFFFF)
        self.count[worlds] = 0

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        req = _uniform(self.key, self.count) < self.rate
        self.count += 1
        return GateDecision(req, np.full(self.n, math.nan), ~req)


@GATES.register("threshold")
class ThresholdGate(BaseGate):
    """Fixed threshold with hysteresis and a minimum dwell (LazyDAgger's two thresholds):
    switch on above ``high``, off below ``low`` and only after ``min_dwell`` steps on, so a
    score hovering at the threshold does not flip control every step."""

    name = "threshold"

    def __init__(self, high: float = 0.5, low: float | None = None, min_dwell: int = 5) -> None:
        high = _finite(high, "high")
        low = high if low is None else _finite(low, "low")
        if low > high:
            raise ValueError(f"low={low} > high={high}: the release level must not exceed the "
                             f"request level")
        if min_dwell < 0:
            raise ValueError(f"min_dwell={min_dwell}: must be >= 0 steps")
        self.high, self.low, self.min_dwell = float(high), float(low), int(min_dwell)
        self.bind(1)

    def bind(self, n: int) -> None:
        self.on = np.zeros(n, dtype=bool)
        self.dwell = np.zeros(n, dtype=np.int64)
        super().bind(n)

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        self.on[worlds] = False
        self.dwell[worlds] = 0

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        on = self.on
        start = ~on & (score > self.high)
        self.dwell = np.where(on, self.dwell + 1, 0)
        stop = on & (score < self.low) & (self.dwell >= self.min_dwell)
        self.on = on = (on | start) & ~stop
        return GateDecision(on.copy(), np.full(self.n, self.high), ~on)


class OnlineQuantile:
    """Threshold = (1 - rate) quantile of the last ``max_history`` finite scores of every
    world, refit when episodes end (a fleet learning its budget together)."""

    def __init__(self, rate: float, initial: float, max_history: int) -> None:
        if max_history < 1:
            raise ValueError(f"max_history={max_history}: must be >= 1 scores")
        self.rate = rate
        self.threshold = float(initial)
        self.buf = np.empty(int(max_history))
        self.filled = 0
        self.pos = 0

    def observe(self, score: np.ndarray) -> None:
        s = np.asarray(score, dtype=np.float64).reshape(-1)
        s = s[np.isfinite(s)]
        m, cap = len(s), len(self.buf)
        if m >= cap:
            self.buf[:] = s[-cap:]
            self.pos, self.filled = 0, cap
            return
        end = self.pos + m
        if end <= cap:
            self.buf[self.pos:end] = s
        else:
            cut = cap - self.pos
            self.buf[self.pos:] = s[:cut]
            self.buf[: m - cut] = s[cut:]
        self.pos = end % cap
        self.filled = min(self.filled + m, cap)

    def refit(self) -> None:
        if self.filled:
            self.threshold = float(np.quantile(self.buf[: self.filled], 1.0 - self.rate))


@GATES.register("budget")
class BudgetGate(BaseGate):
    """ThriftyDAgger's budget rule: the threshold is the ``(1 - target_rate)`` quantile of
    the scores seen so far, refit whenever episodes end, so the share of steps with a request
    converges to ``target_rate`` whatever the score's scale. Before the first refit the
    threshold is ``initial`` (``inf``: no requests until a first episode calibrates it; or
    call ``fit(scores)`` with held-out scores). In a batch the refit sees every world's
    scores, so records match a single-env run only at the same batch size."""

    name = "budget"

    def __init__(self, target_rate: float = 0.05, initial: float = math.inf,
                 max_history: int = 200_000) -> None:
        self.target_rate = _check_rate(target_rate)
        self.q = OnlineQuantile(self.target_rate, _finite(initial, "initial"), max_history)
        self.bind(1)

    @property
    def threshold(self) -> float:
        return self.q.threshold

    def fit(self, scores: np.ndarray) -> BudgetGate:
        self.q.observe(scores)
        self.q.refit()
        return self

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        self.q.observe(score)
        req = score > self.q.threshold
        return GateDecision(req, np.full(self.n, self.q.threshold), ~req)

    def end_episode(self, worlds: np.ndarray) -> None:
        self.q.refit()


def action_discrepancy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise distance of ``(N,)`` / ``(N, A)`` actions: Euclidean for Box actions, 0/1
    mismatch for Discrete indices (``a`` integer); NaN rows of ``b`` give NaN."""
    a = np.asarray(a)
    b = np.asarray(b, dtype=np.float64).reshape(len(a), -1)
    if a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
        d = (a.astype(np.float64) != b[:, 0]).astype(np.float64)
        return np.where(np.isnan(b[:, 0]), np.nan, d)
    diff = a.reshape(len(a), -1).astype(np.float64) - b
    return np.sqrt((diff * diff).sum(axis=1))


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
        self.q = OnlineQuantile(self.target_rate, _finite(initial, "initial"), max_history)
        self.risk_score = risk_score
        self.risk_high = _finite(risk_high, "risk_high")
        self.risk_low = _finite(risk_low, "risk_low")
        self.discrepancy = _finite(discrepancy, "discrepancy")
        self.bind(1)

    def _risk(self, ctx: GateContext) -> np.ndarray:
        if self.risk_score in ctx.scores:
            return np.asarray(ctx.scores[self.risk_score], dtype=np.float64)
        if ctx.out.risk is not None:
            r = np.asarray(ctx.out.risk, dtype=np.float64)
            return np.where(np.isfinite(r), r, np.inf)
        raise ValueError(f"thrifty gate needs a risk: add estimator {self.risk_score!r} "
                         f"(e.g. 'q_risk') or an agent that reports AgentOutput.risk")

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        self.q.observe(score)
        risk = self._risk(ctx)
        req = (score > self.q.threshold) | (risk > self.risk_high)
        disc = action_discrepancy(ctx.out.action, ctx.human_action)
        agrees = np.isnan(ctx.human_action).all(axis=1) | (disc < self.discrepancy)
        release = (risk < self.risk_low) & agrees & ~req
        return GateDecision(req, np.full(self.n, self.q.threshold), release)

    def end_episode(self, worlds: np.ndarray) -> None:
        self.q.refit()


@njit(cache=True)
def _trend(recent: np.ndarray, count: np.ndarray, horizon: float, dt: float) -> np.ndarray:
    n, w = recent.shape
    out = np.empty(n)
    for i in range(n):
        m = min(count[i], w)
        last = recent[i, w - 1]
        if m < 2:
            out[i] = last
            continue
        sx = sy = sxx = sxy = 0.0
        for j in range(w - m, w):
            x, y = float(j), recent[i, j]
            sx += x
            sy += y
            sxx += x * x
            sxy += x * y
        slope = (sxy - sx * sy / m) / (sxx - sx * sx / m) / dt
        out[i] = last + max(slope, 0.0) * horizon if slope == slope else last
    return out


@GATES.register("predictive")
class PredictiveGate(BaseGate):
    """Predictive takeover request: request as soon as the risk predicted within the next
    ``horizon`` seconds exceeds ``level``, so the human gets lead time; release once it falls
    below ``release_level``. The prediction comes from

    * ``source="trend"``: the gate's score extrapolated ``horizon`` s ahead with the
      least-squares slope (closed form) over the last ``window`` steps (rising scores only),
      or the current score if higher: works with any estimator;
    * ``source="critic"``: the agent's risk critic at that horizon,
      ``out.extra["risk_by_horizon"][h]`` for the critic horizon ``h`` closest to ``horizon``
      (P(failure within h s)); the gate's score is then not used.
    """

    name = "predictive"

    def __init__(self, level: float = 0.5, horizon: float = 2.0, window: int = 5,
                 release_level: float | None = None, source: str = "trend") -> None:
        if not horizon >= 0 or window < 2:
            raise ValueError(f"horizon={horizon} s must be >= 0 and window={window} >= 2 steps")
        if source not in ("trend", "critic"):
            raise ValueError(f"source={source!r}: use 'trend' or 'critic'")
        self.level = _finite(level, "level")
        self.release_level = (self.level if release_level is None
                              else _finite(release_level, "release_level"))
        self.horizon, self.window, self.source = float(horizon), int(window), source
        self.bind(1)

    def bind(self, n: int) -> None:
        self.recent = np.zeros((n, self.window))  # the last `window` scores, newest last
        self.count = np.zeros(n, dtype=np.int64)
        self.on = np.zeros(n, dtype=bool)
        super().bind(n)

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        self.recent[worlds] = 0.0
        self.count[worlds] = 0
        self.on[worlds] = False

    def predict(self, dt: float) -> np.ndarray:
        """``(N,)`` newest score plus the rising part of the fitted slope times ``horizon``:
        slope = cov(x, y) / var(x) over each world's last ``m = min(count, window)`` scores
        (closed form, one compiled pass; no ``np.polyfit``)."""
        return _trend(self.recent, self.count, self.horizon, dt)

    def critic_risk(self, out: AgentOutputs) -> np.ndarray:
        table = out.extra.get("risk_by_horizon")
        if not table:
            raise ValueError("predictive gate with source='critic' needs "
                             "AgentOutput.extra['risk_by_horizon'] (an agent with a risk "
                             "critic); or use source='trend'")
        h = min(table, key=lambda k: abs(float(k) - self.horizon))
        r = np.asarray(table[h], dtype=np.float64)
        return np.where(np.isfinite(r), r, np.inf)

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        if self.source == "critic":
            peak = self.critic_risk(ctx.out)
        else:
            self.recent[:, :-1] = self.recent[:, 1:]
            self.recent[:, -1] = score
            self.count += 1
            with np.errstate(invalid="ignore"):
                peak = np.maximum(score, self.predict(ctx.dt))
            peak = np.where(np.isfinite(score), peak, np.inf)
        self.on = (self.on | (peak > self.level)) & ~(peak < self.release_level)
        return GateDecision(self.on.copy(), np.full(self.n, self.level), ~self.on)


@GATES.register("human")
class HumanGate(BaseGate):
    """Human-gated (HG-DAgger): never requests; the human takes over and releases at will."""

    name = "human"
    accepts_human_initiative = True

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        return self._const(False, False)


@GATES.register("hybrid")
class HybridGate(BaseGate):
    """Robot-gated **or** human-initiated: wraps any robot gate (by name + kwargs or an
    instance) and also lets the human take over unasked."""

    name = "hybrid"
    accepts_human_initiative = True

    def __init__(self, inner: str | Gate = "threshold", **kwargs: Any) -> None:
        self.inner = GATES.make(inner, **kwargs) if isinstance(inner, str) else inner
        self.n = int(getattr(self.inner, "n", 1))  # the Gate protocol does not require n

    def bind(self, n: int) -> None:
        self.n = int(n)
        self.inner.bind(n)

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision:
        return self.inner.decide(score, ctx)

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        self.inner.reset(worlds, seeds)

    def end_episode(self, worlds: np.ndarray) -> None:
        self.inner.end_episode(worlds)
