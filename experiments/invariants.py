"""Sanity invariants every report checks and prints at its top: a testbed that says when it
is lying.

Each invariant is a relation between two conditions played on the same seeds, judged on the
paired difference ``a - b`` of one metric (``metrics.json["comparisons"]``, from
``stats.paired``):

* ``never`` equals agent-alone: a supervisor that never asks must not change what happens
  (a human who takes over unasked breaks it, and the message says how often they did);
* an ``absent`` human never beats a present one;
* human presets are ordered: ``perfect >= expert >= average >= novice``;
* the configured gate beats a random gate issuing as many takeover requests per episode
  (``random``, ``runner.match_random_gate``); the match itself is checked first: realised
  requests per episode within :data:`REQUEST_MATCH_TOLERANCE` of each other, else the
  comparison is not at the same rate and the invariant fails saying so;
* and it beats a random gate buying as much human time per episode (``random_time``,
  matched on human-controlled seconds, within :data:`HUMAN_TIME_MATCH_TOLERANCE`): a gate
  that wins only by keeping the human longer per request does not pass both;
* more human effort does not buy less safety (among the gates, sorted by human time).

A ``>=`` relation fails only when the difference is significantly negative (its CI lies below
0): a sample that cannot tell two conditions apart is not a violation; but a negative
difference whose CI holds 0 is ``unresolved``, not a pass. "Equals" fails when
the CI excludes 0. "Beats" passes only when the difference is significantly positive (its CI
lies above 0) and fails when it is not positive; a positive difference whose CI still holds
0 is ``unresolved``: not a violation, and not a pass either ("not resolved at this sample
size": the run cannot tell the gate from random). A relation between conditions the run did
not play is ``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PRESET_ORDER = ("perfect", "expert", "average", "novice")
"""Human presets from most to least capable (``takeover.supervisor.humans``)."""

REQUEST_MATCH_TOLERANCE = 0.2
"""Largest relative difference of realised requests per episode (``tors_per_episode``)
between the configured gate and its random twin that still counts as the same rate. The
random gate's per-step rate is set on calibration episodes from their askable steps (a
mean over steps, about 2% noise); its requests on the reported episodes are Bernoulli draws:
about 250 in the default run (200 episodes, 1.26 per episode), drawn from one stream per
seed shared by the five scenarios, a relative standard deviation of about 9%. 20% is 2.2
of those: a matched gate is called unmatched about 3% of the time, and the 2.2 vs 1.3 of
the per-step match (69%) is far outside."""

HUMAN_TIME_MATCH_TOLERANCE = 0.2
"""The same for realised human-controlled seconds per episode (``human_time_per_episode``)
between the configured gate and its ``random_time`` twin. Human time is requests times
seconds per takeover, so it carries the requests' noise (about 9%, above) and the human's
takeover and hand-back times on top; 20% keeps a miss-match of more than two noise standard
deviations a FAIL."""

MATCH_TOLERANCE = {"tors_per_episode": REQUEST_MATCH_TOLERANCE,
                   "human_time_per_episode": HUMAN_TIME_MATCH_TOLERANCE}
"""Tolerance of each quantity a random twin is matched on."""

STATUSES = ("pass", "unresolved", "FAIL", "n/a")
"""``unresolved``: the relation holds only for lack of power: its CI holds 0 and the point
estimate goes the wrong way (``>=``, :func:`at_least`) or not significantly the right way
(``>``, :func:`beats`)."""

EFFORT_GATES = ("never", "random", "supervised", "always")
"""Conditions with the same human and different gates: the effort-vs-safety check."""


@dataclass(frozen=True)
class Invariant:
    """One checked relation: ``status`` is one of :data:`STATUSES`."""

    name: str
    status: str
    message: str
    numbers: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message,
                "numbers": self.numbers}


def _f(x: Any) -> float:
    return math.nan if x is None else float(x)


def _diff(metrics: Mapping[str, Any], a: str, b: str, metric: str) -> dict[str, float] | None:
    comp = metrics.get("comparisons", {})
    if metric in comp.get(f"{a} - {b}", {}):
        d = comp[f"{a} - {b}"][metric]
        return {k: _f(d[k]) for k in ("diff", "lo", "hi", "p")}
    if metric in comp.get(f"{b} - {a}", {}):
        d = comp[f"{b} - {a}"][metric]
        return {"diff": -_f(d["diff"]), "lo": -_f(d["hi"]), "hi": -_f(d["lo"]), "p": _f(d["p"])}
    return None


def _unmeasurable(metrics: Mapping[str, Any], a: str, b: str, metric: str) -> str | None:
    """``n/a`` when success is judged on episodes whose world reported no outcome (an old
    world): 0 = 0 there says nothing."""
    if not metric.startswith("success"):
        return None
    conds = metrics["conditions"]
    unknown = max(_f(conds.get(c, {}).get("unknown_outcome_rate")) for c in (a, b))
    if math.isfinite(unknown) and unknown > 0:
        return f"{unknown:.0%} of the episodes of {a} / {b} have no outcome (the world reports " \
               "none): success is not measurable"
    return None


def _text(a: str, b: str, metric: str, d: Mapping[str, float], values: Mapping[str, Any]) -> str:
    va, vb = _f(values.get(a, {}).get(metric)), _f(values.get(b, {}).get(metric))
    return (f"{metric}: {a} {va:.3f} vs {b} {vb:.3f}, difference {d['diff']:+.3f} "
            f"[{d['lo']:+.3f}, {d['hi']:+.3f}], p = {d['p']:.3g}")


def _measured(metrics: Mapping[str, Any], name: str, a: str, b: str,
              metric: str) -> tuple[dict[str, float], Invariant | None]:
    """The paired difference ``a - b`` on ``metric``, or the "n/a" invariant saying why it
    cannot be judged (a condition or the metric missing, or unmeasurable outcomes)."""
    d = _diff(metrics, a, b, metric)
    if d is None or not math.isfinite(d["diff"]):
        return {}, Invariant(name, "n/a", f"needs conditions {a} and {b} with {metric} defined",
                             {})
    why = _unmeasurable(metrics, a, b, metric)
    return d, (Invariant(name, "n/a", why, d) if why else None)


def at_least(metrics: Mapping[str, Any], name: str, a: str, b: str,
             metric: str) -> Invariant:
    """``a >= b`` on ``metric``: fails when ``a - b`` is significantly negative, is
    ``unresolved`` when it is negative but its CI holds 0, passes otherwise."""
    d, na = _measured(metrics, name, a, b, metric)
    if na is not None:
        return na
    text = _text(a, b, metric, d, metrics["conditions"])
    if d["hi"] < 0:
        return Invariant(name, "FAIL", text, d)
    if d["diff"] < 0:
        return Invariant(name, "unresolved", text + ": not resolved at this sample size (a "
                         "negative difference whose CI holds 0)", d)
    return Invariant(name, "pass", text, d)


def beats(metrics: Mapping[str, Any], name: str, a: str, b: str, metric: str) -> Invariant:
    """``a > b`` on ``metric``: passes when the difference is significantly positive, fails
    when it is not positive, and is ``unresolved`` in between (positive, CI holding 0)."""
    d, na = _measured(metrics, name, a, b, metric)
    if na is not None:
        return na
    text = _text(a, b, metric, d, metrics["conditions"])
    if d["diff"] <= 0:
        return Invariant(name, "FAIL", text, d)
    if d["lo"] > 0:
        return Invariant(name, "pass", text + " (significant)", d)
    return Invariant(name, "unresolved", text + ": not resolved at this sample size (the CI "
                     "holds 0)", d)


RANDOM_GATE = "the gate beats a random gate at its requests per episode (success)"
RANDOM_GATE_TIME = "the gate beats a random gate at its human time per episode (success)"


def beats_matched(metrics: Mapping[str, Any], name: str, a: str, b: str, metric: str,
                  matched_on: str = "tors_per_episode") -> Invariant:
    """:func:`beats`, judged only when ``a`` and ``b`` realised the same ``matched_on``
    (within its :data:`MATCH_TOLERANCE`, relative): a random gate that asks more often
    buys more human time, and beating it or not says nothing about the gate."""
    tol = MATCH_TOLERANCE[matched_on]
    iv = beats(metrics, name, a, b, metric)
    conds = metrics["conditions"]
    ra, rb = _f(conds.get(a, {}).get(matched_on)), _f(conds.get(b, {}).get(matched_on))
    if iv.status == "n/a" or not (math.isfinite(ra) and math.isfinite(rb)):
        return iv
    rel = abs(rb - ra) / ra if ra > 0 else (0.0 if rb == 0 else math.inf)
    match = (f"{matched_on}: {a} {ra:.3f} vs {b} {rb:.3f} ({rel:.0%} apart, tolerance "
             f"{tol:.0%})")
    numbers = {**iv.numbers, f"{matched_on}.{a}": ra, f"{matched_on}.{b}": rb}
    if rel > tol:
        return Invariant(name, "FAIL", f"not matched, so not judged: {match}; {iv.message}",
                         numbers)
    return Invariant(name, iv.status, f"{iv.message}; matched {match}", numbers)


def equals(metrics: Mapping[str, Any], name: str, a: str, b: str, metric: str) -> Invariant:
    """``a == b`` on ``metric``: fails when the CI of the difference excludes 0."""
    d, na = _measured(metrics, name, a, b, metric)
    if na is not None:
        return na
    ok = d["lo"] <= 0 <= d["hi"]
    msg = _text(a, b, metric, d, metrics["conditions"])
    unasked = _f(metrics["conditions"].get(a, {}).get("self_initiated_per_episode"))
    if math.isfinite(unasked) and unasked > 0:
        msg += f"; the human took over unasked {unasked:.3f} times per episode in {a}"
    return Invariant(name, "pass" if ok else "FAIL", msg, d)


def check_invariants(metrics: Mapping[str, Any], human: str) -> list[Invariant]:
    """Every invariant on a run's metrics (``runner.build_metrics`` before writing)."""
    conds = metrics["conditions"]
    out = [equals(metrics, "never equals agent alone (success)", "never", "agent_alone",
                  "success_rate"),
           equals(metrics, "never equals agent alone (safety)", "never", "agent_alone",
                  "safety_rate"),
           at_least(metrics, "a present human is not beaten by an absent one", "supervised",
                    "absent", "success_rate")]
    # not on safety: nobody answering ends in the minimal-risk manoeuvre, a standstill that
    # is safe by definition (a do-nothing policy would win that comparison)
    names = {h: ("supervised" if h == human else f"human_{h}") for h in PRESET_ORDER}
    ordered = [h for h in PRESET_ORDER if names[h] in conds]
    for hi, lo in zip(ordered, ordered[1:], strict=False):
        out.append(at_least(metrics, f"human preset {hi} >= {lo} (success)", names[hi],
                            names[lo], "success_rate"))
    if len(ordered) < 2:
        out.append(Invariant("human presets ordered perfect >= expert >= average >= novice",
                             "n/a", "needs at least two presets (eval.humans)", {}))
    out.append(beats_matched(metrics, RANDOM_GATE, "supervised", "random", "success_rate"))
    if "random_time" in conds:
        out.append(beats_matched(metrics, RANDOM_GATE_TIME, "supervised", "random_time",
                                 "success_rate", matched_on="human_time_per_episode"))
    gates = [g for g in EFFORT_GATES if g in conds
             and math.isfinite(_f(conds[g].get("human_time_per_episode")))]
    gates.sort(key=lambda g: _f(conds[g]["human_time_per_episode"]))
    for less, more in zip(gates, gates[1:], strict=False):
        out.append(at_least(metrics, f"more human effort is not less safe ({more} >= {less})",
                            more, less, "safety_rate"))
    return out
