"""Allocation policies: which waiting world gets one of the fleet's few humans.

When more worlds request a human than there are humans free, a policy ranks the worlds;
:class:`~takeover.supervisor.fleet.FleetHumans` gives free humans to the best-ranked waiting
worlds (and, with ``preempt``, moves a human whose minimum intervention time is over to a
better-ranked one). A policy returns priority keys, most significant first, compared
lexicographically (higher first), as the IFL benchmark's allocations do (Hoque et al. 2022,
*Fleet-DAgger*, ``BerkeleyAutomation/ifl_benchmark``: ``CURAllocation``, ``TDAllocation``,
``RandomAllocation``).

The driving analogue of Fleet-DAgger's *constraint violation* (a robot stuck until a human
resets it) is a world whose request timed out into the minimal-risk manoeuvre: it is
stopping or stopped and only a human gets it moving again. *Risk* and *uncertainty* are the
step's estimator scores named by ``risk`` / ``uncertainty`` (e.g. ``q_risk`` and
``entropy``), which the engine hands the humans before they act (``observe_scores``).

A new policy is one class with ``keys(state) -> tuple[(N,) arrays]`` and one registry line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from takeover.registry import Registry


@dataclass(frozen=True)
class FleetState:
    """What a policy ranks on, every field ``(N,)`` (one row per world).

    Attributes:
        waiting: the world waits for a human (request pending or minimal-risk manoeuvre)
            and none is with it yet.
        constraint: the world is in its minimal-risk manoeuvre (the request timed out).
        waited: s since the world's current request was issued (0 when none).
        urgency: 0..1, the handover's urgency of the request (from the gate's score).
        scores: the step's estimator scores by name (``+inf`` where non-finite: unknown risk
            is maximal risk; ``-inf`` for a world out of service, whose failure already
            happened: nothing a human does there now prevents one); empty when the engine
            gives none.
        last_served: fleet clock (s) when a human last arrived in the world, ``-inf`` never.
        rng: the fleet's generator (ties and random policies draw from it).
    """

    waiting: np.ndarray
    constraint: np.ndarray
    waited: np.ndarray
    urgency: np.ndarray
    scores: dict[str, np.ndarray]
    last_served: np.ndarray
    rng: np.random.Generator

    def score(self, name: str | None) -> np.ndarray:
        """Scores of estimator ``name``; the request's urgency when ``name`` is ``None``."""
        if name is None:
            return self.urgency
        if name not in self.scores:
            raise KeyError(f"the allocation needs estimator {name!r}, but the engine scored "
                           f"only {sorted(self.scores) or '(none)'}; add it to the "
                           f"supervisor's estimators or pass another score name")
        return np.where(np.isnan(self.scores[name]), -math.inf, self.scores[name])


ALLOCATIONS: Registry = Registry("allocation policy")


@ALLOCATIONS.register("random")
class RandomAllocation:
    """Uniformly random among the waiting worlds (the IFL benchmark's random baseline)."""

    def keys(self, s: FleetState) -> tuple[np.ndarray, ...]:
        return (s.rng.random(len(s.waiting)),)


@ALLOCATIONS.register("round_robin")
class RoundRobin:
    """The world served longest ago first (a never-served world first of all): each
    waiting world gets its turn in cyclic order."""

    def keys(self, s: FleetState) -> tuple[np.ndarray, ...]:
        return (-s.last_served,)


@ALLOCATIONS.register("fifo")
class FirstComeFirstServed:
    """The longest-waiting request first (a queue at a remote-operations desk)."""

    def keys(self, s: FleetState) -> tuple[np.ndarray, ...]:
        return (s.waited,)


@ALLOCATIONS.register("risk")
class RiskPriority:
    """The highest risk score first (Fleet-DAgger's R priority)."""

    def __init__(self, risk: str | None = "q_risk") -> None:
        self.risk = risk

    def keys(self, s: FleetState) -> tuple[np.ndarray, ...]:
        return (s.score(self.risk),)


@ALLOCATIONS.register("uncertainty")
class UncertaintyPriority:
    """The highest uncertainty score first (Fleet-DAgger's U priority)."""

    def __init__(self, uncertainty: str = "entropy") -> None:
        self.uncertainty = uncertainty

    def keys(self, s: FleetState) -> tuple[np.ndarray, ...]:
        return (s.score(self.uncertainty),)


@ALLOCATIONS.register("cur")
class ConstraintUncertaintyRisk:
    """Fleet-DAgger's C-U-R priorities in the order ``order`` (letters ``C``, ``U``, ``R``,
    most significant first; default ``CRU``: stopped worlds, then risk, then uncertainty).
    Scores below their threshold count as 0, so they fall to the next letter."""

    def __init__(self, order: str = "CRU", risk: str | None = "q_risk",
                 uncertainty: str = "entropy", risk_thresh: float = 0.0,
                 uncertainty_thresh: float = 0.0) -> None:
        order = order.upper()
        if not order or set(order) - set("CUR") or len(set(order)) != len(order):
            raise ValueError(f"order={order!r}: use each of the letters C (constraint), "
                             f"U (uncertainty), R (risk) at most once, e.g. 'CRU'")
        self.order, self.risk, self.uncertainty = order, risk, uncertainty
        self.risk_thresh, self.uncertainty_thresh = risk_thresh, uncertainty_thresh

    def keys(self, s: FleetState) -> tuple[np.ndarray, ...]:
        out = []
        for letter in self.order:
            if letter == "C":
                out.append(s.constraint.astype(np.float64))
            elif letter == "R":
                r = s.score(self.risk)
                out.append(np.where(r < self.risk_thresh, 0.0, r))
            else:
                u = s.score(self.uncertainty)
                out.append(np.where(u < self.uncertainty_thresh, 0.0, u))
        return tuple(out)


@ALLOCATIONS.register("constraint")
class ConstraintFirst:
    """Stopped worlds (minimal-risk manoeuvre) first, then the longest waiting (C, FIFO)."""

    def keys(self, s: FleetState) -> tuple[np.ndarray, ...]:
        return (s.constraint.astype(np.float64), s.waited)


@ALLOCATIONS.register("thrifty")
class ThriftyPriority:
    """Fleet-ThriftyDAgger: ``alpha * z(risk) + (1 - alpha) * z(novelty)``, each score
    standardised by the running mean and standard deviation of every value seen (the IFL
    benchmark's ``TDAllocation``), stopped worlds breaking ties."""

    def __init__(self, alpha: float = 0.5, risk: str | None = "q_risk",
                 novelty: str = "entropy") -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha}: the weight of risk must be in [0, 1]")
        self.alpha, self.risk, self.novelty = alpha, risk, novelty
        self._sums = np.zeros((2, 3))  # per score: count, sum, sum of squares

    def _z(self, k: int, x: np.ndarray) -> np.ndarray:
        ok = np.isfinite(x)
        acc = self._sums[k]
        acc += (ok.sum(), x[ok].sum(), (x[ok] ** 2).sum())
        mean = acc[1] / max(acc[0], 1.0)
        std = math.sqrt(max(acc[2] / max(acc[0], 1.0) - mean ** 2, 0.0))
        # +inf (unknown risk: maximal) first, -inf (out of service) and NaN last
        return np.where(ok, (x - mean) / (std + 1e-8), np.where(x > 0, 1e9, -1e9))

    def keys(self, s: FleetState) -> tuple[np.ndarray, ...]:
        r = s.score(self.risk)[s.waiting]
        u = s.score(self.novelty)[s.waiting]
        comb = np.full(len(s.waiting), -math.inf)
        comb[s.waiting] = self.alpha * self._z(0, r) + (1 - self.alpha) * self._z(1, u)
        return (comb, s.constraint.astype(np.float64))


def rank(policy: Any, state: FleetState,
         keys: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """World indices best first: the policy's keys (``policy.keys(state)`` unless given:
    a policy may keep running statistics, so call it once a step), then a random
    tie-break."""
    keys = policy.keys(state) if keys is None else keys
    n = len(state.waiting)
    for k in keys:
        if np.shape(k) != (n,):
            raise ValueError(f"{type(policy).__name__}.keys returned a key of shape "
                             f"{np.shape(k)}; each key must be ({n},), one per world")
    tie = state.rng.random(n)
    # lexsort sorts ascending by the last key first: negate for "higher first"
    return np.lexsort((-tie, *(-np.nan_to_num(np.asarray(k, float), nan=-math.inf)
                               for k in reversed(keys))))


def above(keys: tuple[np.ndarray, ...], a: int, b: int) -> bool:
    """World ``a`` strictly outranks world ``b`` on the policy's ``keys`` (lexicographic,
    higher first, NaN lowest), not merely by the random tie-break: a human is moved only
    for a world the policy prefers, never for a coin toss between equals."""
    for k in keys:
        x, y = (float(np.nan_to_num(np.asarray(k, float)[i], nan=-math.inf)) for i in (a, b))
        if x != y:
            return x > y
    return False
