"""Every metric of the testbed, defined once, from the per-step log (``StepRecord``).

Two levels: :func:`episode_metrics` reduces one episode's records to numbers, and
:func:`aggregate` turns many episodes into a condition's metrics (rates are pooled over
episodes, not averaged per episode, so a short crashed episode weighs like a long one).
A metric that does not apply (a takeover time when nobody took over) is ``NaN`` -- never 0,
which would read as "instant".

Trigger-quality metrics (missed failures and false alarms judged by counterfactual
labels) come from :func:`trigger_metrics`; the labels are made in the supervised loop by
rolling the agent alone from a snapshot at each request and at sampled other steps
(``takeover.supervisor.counterfactual``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from takeover.records import StepRecord

TTC_NONE = 99.0
"""The env reports this TTC (s) when nothing closes in on the ego; not a real time budget."""

FAILURES = ("collision", "offroad")

METRICS: dict[str, str] = {
    "success_rate": "share of episodes that end without a collision or leaving the road",
    "collision_rate": "share of episodes ending in a collision",
    "offroad_rate": "share of episodes ending off the road",
    "failure_rate": "collision_rate + offroad_rate",
    "interventions_per_episode": "human (or fallback) control segments per episode; one "
                                 "segment = control passing from the agent until it returns",
    "interventions_per_km": "intervention segments per km driven (pooled: all segments / all km)",
    "human_share": "share of steps the human drove (pooled over episodes)",
    "context_switches_per_episode": "changes of the controller between consecutive steps "
                                    "(agent->human and back both count; LazyDAgger)",
    "tors_per_episode": "takeover requests issued per episode",
    "tor_lead_time": "mean time budget at a TOR: the TTC (s) when the request is issued, over "
                     "requests issued while something was closing in (Gold et al. 2013)",
    "takeover_time": "mean reaction time, s: request issued -> human in control (TOR-led "
                     "takeovers only; Eriksson & Stanton 2017)",
    "min_ttc_after_takeover": "mean over takeovers of the minimum TTC (s) while the human drove",
    "fallback_rate": "share of episodes in which the minimal-risk manoeuvre took over",
    "missed_failure_rate": "share of episodes that failed with no takeover request in the "
                           "preceding horizon (observed misses)",
    "rohe": "return on human effort (Fleet-DAgger): success_rate / (1 + human steps per "
            "episode); the +1 keeps it defined without a human",
    "mean_return": "mean undiscounted env return per episode",
    "km_per_episode": "mean distance driven per episode, km",
}
"""Name -> definition of every condition-level metric; ``metrics.json`` has each key."""

TRIGGER_METRICS: dict[str, str] = {
    "trigger_precision": "share of the gate's request steps labelled needed (the agent alone "
                         "fails within the horizon from there)",
    "trigger_recall": "share of needed steps on which the gate requested (weighted by the "
                      "inverse sampling probability of non-request steps)",
    "false_alarm_rate": "1 - trigger_precision: requests the agent did not need",
    "missed_failures_per_episode": "estimated needed steps with no request, per episode",
    "cf_lead_time": "mean time from a request's onset to the agent-alone failure it "
                    "prevented, s (needed onsets only)",
}
"""Computed from counterfactual labels (``takeover.supervisor.counterfactual``)."""


def trigger_metrics(gate_report: Mapping[str, Any] | None, episodes: int) -> dict[str, float]:
    """Every key of :data:`TRIGGER_METRICS` from ``counterfactual.report(...)["gates"]["gate"]``
    (NaN when the condition was not labelled or the gate never requested)."""
    if not gate_report:
        return {k: math.nan for k in TRIGGER_METRICS}
    precision = float(gate_report.get("precision", math.nan))
    return {
        "trigger_precision": precision,
        "trigger_recall": float(gate_report.get("recall", math.nan)),
        "false_alarm_rate": 1.0 - precision if math.isfinite(precision) else math.nan,
        "missed_failures_per_episode": float(gate_report.get("missed_failures", math.nan))
        / max(episodes, 1),
        "cf_lead_time": float(gate_report.get("mean_lead_time", math.nan)),
    }


@dataclass(frozen=True)
class EpisodeMetrics:
    """One episode reduced to numbers (the inputs of :func:`aggregate`).

    Attributes:
        episode: the episode id of its records.
        steps: control steps.
        km: distance driven, km (``info["x"]`` at the end).
        ret: undiscounted return.
        success / collision / offroad: how it ended.
        interventions: human/fallback control segments.
        fallbacks: fallback segments (nobody answered a request).
        human_steps: steps the human drove.
        context_switches: controller changes between consecutive steps.
        tors: takeover requests issued.
        tor_lead_times: TTC (s) at each request issued while something was closing in.
        takeover_times: request -> human control delays, s.
        min_ttc_after_takeover: per takeover, minimum TTC (s) while the human drove.
        missed_failure: failed without a request in the ``horizon`` s before the end.
    """

    episode: str
    steps: int
    km: float
    ret: float
    success: bool
    collision: bool
    offroad: bool
    interventions: int
    fallbacks: int
    human_steps: int
    context_switches: int
    tors: int
    tor_lead_times: tuple[float, ...]
    takeover_times: tuple[float, ...]
    min_ttc_after_takeover: tuple[float, ...]
    missed_failure: bool


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def episode_metrics(records: Sequence[StepRecord], horizon: float = 2.0) -> EpisodeMetrics:
    """Reduce one episode's records (in step order) to :class:`EpisodeMetrics`."""
    if not records:
        raise ValueError("episode_metrics needs at least one record; got an empty episode")
    last = records[-1]
    reason = last.reason or str(last.info.get("reason", ""))
    collision = reason == "collision" or bool(last.info.get("collision", False))
    offroad = reason == "offroad" or bool(last.info.get("offroad", False))
    ctrl = [r.controller for r in records]
    switches = sum(a != b for a, b in zip(ctrl, ctrl[1:], strict=False))
    segments: list[tuple[int, int]] = []  # [start, end) of non-agent control
    start = None
    for i, c in enumerate(ctrl + ["agent"]):
        if c != "agent" and start is None:
            start = i
        elif c == "agent" and start is not None:
            segments.append((start, i))
            start = None
    fallbacks = sum(any(ctrl[j] == "fallback" for j in range(a, b)) for a, b in segments)
    tor_steps = []
    prev = math.nan
    for i, r in enumerate(records):
        if _finite(r.tor_time) and not (_finite(prev) and r.tor_time == prev):
            tor_steps.append(i)
        prev = r.tor_time
    lead = tuple(float(records[i].info.get("ttc", TTC_NONE)) for i in tor_steps
                 if float(records[i].info.get("ttc", TTC_NONE)) < TTC_NONE)
    takeover_times, min_ttcs = [], []
    for a, b in segments:
        human = [j for j in range(a, b) if ctrl[j] == "human"]
        if not human:
            continue
        r0 = records[human[0]]
        if _finite(r0.takeover_time) and _finite(r0.tor_time):
            takeover_times.append(float(r0.takeover_time - r0.tor_time))
        min_ttcs.append(min(float(records[j].info.get("ttc", TTC_NONE)) for j in human))
    failed = collision or offroad
    recent_tor = any(records[i].time >= last.time - horizon for i in tor_steps)
    return EpisodeMetrics(
        episode=last.episode,
        steps=len(records),
        km=float(last.info.get("x", 0.0)) / 1000.0,
        ret=float(sum(r.reward for r in records)),
        success=not failed,
        collision=collision,
        offroad=offroad,
        interventions=len(segments),
        fallbacks=int(fallbacks),
        human_steps=sum(c == "human" for c in ctrl),
        context_switches=int(switches),
        tors=len(tor_steps),
        tor_lead_times=lead,
        takeover_times=tuple(takeover_times),
        min_ttc_after_takeover=tuple(min_ttcs),
        missed_failure=failed and not recent_tor and not segments,
    )


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return float(np.mean(v)) if v else math.nan


def aggregate(episodes: Sequence[EpisodeMetrics]) -> dict[str, float]:
    """Condition-level metrics (every key of :data:`METRICS`) over ``episodes``."""
    n = len(episodes)
    if n == 0:
        return {k: math.nan for k in METRICS}
    km = sum(e.km for e in episodes)
    steps = sum(e.steps for e in episodes)
    human = sum(e.human_steps for e in episodes)
    interventions = sum(e.interventions for e in episodes)
    successes = sum(e.success for e in episodes)
    out = {
        "success_rate": successes / n,
        "collision_rate": sum(e.collision for e in episodes) / n,
        "offroad_rate": sum(e.offroad for e in episodes) / n,
        "interventions_per_episode": interventions / n,
        "interventions_per_km": interventions / km if km > 0 else math.nan,
        "human_share": human / steps if steps else math.nan,
        "context_switches_per_episode": sum(e.context_switches for e in episodes) / n,
        "tors_per_episode": sum(e.tors for e in episodes) / n,
        "tor_lead_time": _mean(x for e in episodes for x in e.tor_lead_times),
        "takeover_time": _mean(x for e in episodes for x in e.takeover_times),
        "min_ttc_after_takeover": _mean(x for e in episodes for x in e.min_ttc_after_takeover),
        "fallback_rate": sum(e.fallbacks > 0 for e in episodes) / n,
        "missed_failure_rate": sum(e.missed_failure for e in episodes) / n,
        "rohe": (successes / n) / (1.0 + human / n),
        "mean_return": sum(e.ret for e in episodes) / n,
        "km_per_episode": km / n,
    }
    out["failure_rate"] = out["collision_rate"] + out["offroad_rate"]
    return {k: float(out[k]) for k in METRICS}
