"""Every metric of the testbed, computed from the per-step log (``StepRecord``) exactly as
``takeover.experiments.metric_definitions`` defines it.

Two levels: :func:`episode_metrics` reduces one episode's records to an
:class:`EpisodeMetrics`; :func:`components` turns episodes into a ``(episodes, C)`` table of
additive parts (numerators and denominators), and :func:`from_sums` computes every metric from
the column sums. Because every metric is a function of sums over episodes, one resampling of
episodes (``stats.bootstrap``) gives the confidence interval of every metric at once, and a
pooled rate weighs a short crashed episode like a long one.

A metric that does not apply (a takeover time when nobody took over) is ``NaN``, never 0,
which would read as "instant". An episode whose world reports no ``outcome`` is ``unknown``:
safe or not is still read from the collision / off-road flags, but it is never a success.

Trigger quality (AUROC / AUPRC / lead time of each estimator against observed agent-alone
failures) is :func:`step_labels` + ``stats.auc_interval``; the gate's counterfactual trigger
metrics come from :func:`trigger_metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from takeover.control import human_segments
from takeover.experiments.metric_definitions import (
    DEFINITIONS,
    FAILURE_OUTCOMES,
    METRIC_NAMES,
    TRIGGER_DEFINITIONS,
    needs_recovery,
    rohe,
)
from takeover.records import StepRecord

TTC_NONE = 99.0
"""The env reports this TTC (s) when nothing closes in on the ego; not a real time budget."""

METRICS: dict[str, str] = {d.name: f"{d.formula} [{d.unit}]" for d in DEFINITIONS}
"""Name -> definition of every condition-level metric; ``metrics.json`` has each key."""

COUNTERFACTUAL_METRICS = ("trigger_precision", "trigger_recall", "false_alarm_rate",
                          "missed_failures_per_episode", "cf_lead_time")
TRIGGER_METRICS: dict[str, str] = {d.name: f"{d.formula} [{d.unit}]"
                                   for d in TRIGGER_DEFINITIONS
                                   if d.name in COUNTERFACTUAL_METRICS}
"""The gate's counterfactual trigger metrics (``takeover.supervisor.counterfactual``)."""


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
    """One episode reduced to numbers (the inputs of :func:`components`).

    Attributes:
        episode: the episode id of its records.
        outcome: the world's outcome (``metric_definitions.OUTCOMES``) or ``"unknown"``.
        failed: collision or off-road (read from the flags when the outcome is unknown).
        steps: control steps; ``duration``: simulated seconds.
        km: distance driven, km.
        ret: undiscounted return.
        human_steps / human_time: steps / seconds the human drove.
        interventions: human segments (MRM steps are not human effort).
        self_initiated: human segments the human started without a request.
        context_switches: controller changes between consecutive steps.
        tors: takeover requests issued.
        askable_steps: steps that began with the agent in control and no request pending
            (the steps on which a gate's request starts a takeover request).
        tor_lead_times: TTC (s) at each request issued during a closing conflict.
        takeover_times: request -> human control delays (s) of answered requests.
        min_ttcs: per human segment with a closing conflict, its minimum TTC (s).
        no_conflict_segments: human segments with no closing conflict.
        mrm: the minimal-risk manoeuvre engaged at some step.
        hazard_fired: the scenario's hazard was triggered.
        missed_failure: failed with no request in the horizon before the end and no human.
        effort_s: ROHE human effort, s (segments at least the minimum intervention time,
            plus the reset time when the episode needs a recovery:
            ``metric_definitions.needs_recovery``).
    """

    episode: str
    outcome: str
    failed: bool
    steps: int
    duration: float
    km: float
    ret: float
    human_steps: int
    human_time: float
    interventions: int
    self_initiated: int
    context_switches: int
    tors: int
    askable_steps: int
    tor_lead_times: tuple[float, ...]
    takeover_times: tuple[float, ...]
    min_ttcs: tuple[float, ...]
    no_conflict_segments: int
    mrm: bool
    hazard_fired: bool
    missed_failure: bool
    effort_s: float

    @property
    def success(self) -> bool:
        return self.outcome == "arrived"


def _finite(x: Any) -> TypeGuard[float]:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _outcome(r: StepRecord) -> str:
    """The world's outcome of a record: the schema-2.0 field, else the env info's key (a
    record built before the field existed), else ``""``."""
    return str(r.outcome or r.info.get("outcome", "") or "")


def _mrm(r: StepRecord) -> bool:
    """The minimal-risk manoeuvre was engaged this step (record field or env info)."""
    return bool(r.mrm or r.info.get("mrm", False))


def episode_outcome(records: Sequence[StepRecord]) -> tuple[str, bool]:
    """``(outcome, failed)`` of an episode: the world's outcome at the last step; when the
    world reports none, collision / off-road from its flags and ``"unknown"`` otherwise."""
    last = records[-1]
    outcome = _outcome(last)
    if outcome:
        return outcome, outcome in FAILURE_OUTCOMES
    reason = last.reason or str(last.info.get("reason", ""))
    if reason == "collision" or bool(last.info.get("collision", False)):
        return "collision", True
    if reason in ("offroad", "off_road") or bool(last.info.get("offroad", False)):
        return "off_road", True
    return "unknown", False


def hazard_fired(records: Sequence[StepRecord]) -> bool:
    """The hazard was triggered: the record's ``hazard_fired`` (schema 2.0) or the world's
    flag in the env info; only a world that reports no flag at all is judged by a finite,
    non-negative ``hazard_onset`` or an active hazard."""
    for r in records:
        if r.hazard_fired:
            return True
        v = r.info.get("hazard_fired", None)
        if v is not None:
            if bool(v):
                return True
            continue
        onset = r.info.get("hazard_onset", math.nan)
        if (_finite(onset) and onset >= 0.0) or bool(r.info.get("hazard_active", False)):
            return True
    return False


def hazard_onset(records: Sequence[StepRecord]) -> float:
    """Time (s) the hazard fired (record field, else env info), NaN if it never did."""
    for r in records:
        onset = r.hazard_onset if _finite(r.hazard_onset) else r.info.get("hazard_onset")
        if _finite(onset) and onset >= 0.0:
            return float(onset)
    return math.nan


def control_period(records: Sequence[StepRecord]) -> float:
    """Seconds per control step (the record times are the ends of the steps)."""
    if len(records) > 1:
        return float(records[1].time - records[0].time)
    return float(records[0].time) if records[0].time > 0 else 0.1


def _ttc(r: StepRecord) -> float:
    v = r.info.get("ttc", TTC_NONE)
    return float(v) if _finite(v) else TTC_NONE


def episode_metrics(records: Sequence[StepRecord], horizon: float = 2.0, *,
                    min_intervention: float = 5.0, reset_time: float = 60.0) -> EpisodeMetrics:
    """Reduce one episode's records (in step order) to :class:`EpisodeMetrics`.

    ``horizon`` (s) is the window before a failure in which a request counts as raised;
    ``min_intervention`` and ``reset_time`` (s) price human effort for ROHE."""
    if not records:
        raise ValueError("episode_metrics needs at least one record; got an empty episode")
    dt = control_period(records)
    outcome, failed = episode_outcome(records)
    ctrl = [r.controller for r in records]
    switches = sum(a != b for a, b in zip(ctrl, ctrl[1:], strict=False))
    segments = human_segments(ctrl)  # [start, end) of each human intervention
    tor_steps, prev = [], math.nan
    for i, r in enumerate(records):
        if _finite(r.tor_time) and not (_finite(prev) and r.tor_time == prev):
            tor_steps.append(i)
        prev = r.tor_time
    lead = tuple(_ttc(records[i]) for i in tor_steps if _ttc(records[i]) < TTC_NONE)
    askable = 1 + sum(r.phase == "agent" for r in records[:-1])  # phase after the step
    takeover_times, min_ttcs, self_init, no_conflict = [], [], 0, 0
    for a, b in segments:
        r0 = records[a]
        reasons = set(r0.transition.split(",")) if r0.transition else set()
        if "human_initiated" in reasons:
            self_init += 1
        answered = "human_response" in reasons or (not reasons and _finite(r0.tor_time))
        if answered and _finite(r0.takeover_time) and _finite(r0.tor_time) \
                and r0.takeover_time >= r0.tor_time:
            takeover_times.append(float(r0.takeover_time - r0.tor_time))
        closing = [_ttc(records[j]) for j in range(a, b) if _ttc(records[j]) < TTC_NONE]
        if closing:
            min_ttcs.append(min(closing))
        else:
            no_conflict += 1
    human_steps = sum(b - a for a, b in segments)
    last = records[-1]
    recent_tor = any(records[i].time >= last.time - horizon for i in tor_steps)
    mrm = any(c == "fallback" or _mrm(r) for c, r in zip(ctrl, records, strict=True))
    effort_s = sum(max((b - a) * dt, min_intervention) for a, b in segments)
    if needs_recovery(outcome, failed):
        effort_s += reset_time
    return EpisodeMetrics(
        episode=last.episode, outcome=outcome, failed=failed, steps=len(records),
        duration=len(records) * dt, km=float(last.info.get("x", 0.0)) / 1000.0,
        ret=float(sum(r.reward for r in records)), human_steps=human_steps,
        human_time=human_steps * dt, interventions=len(segments), self_initiated=self_init,
        context_switches=int(switches), tors=len(tor_steps), askable_steps=askable,
        tor_lead_times=lead,
        takeover_times=tuple(takeover_times), min_ttcs=tuple(min_ttcs),
        no_conflict_segments=no_conflict, mrm=mrm, hazard_fired=hazard_fired(records),
        missed_failure=failed and not recent_tor and not segments,
        effort_s=effort_s,
    )


COMPONENTS = ("n", "arrived", "safe", "failed", "collision", "off_road", "stopped",
              "pulled_over", "timeout", "unknown", "mrm", "fired", "arrived_fired",
              "failed_fired", "steps", "human_steps", "human_time", "km", "ret", "interventions",
              "self_initiated", "switches", "tors", "askable", "lead_sum", "lead_n", "tot_sum",
              "tot_n", "minttc_sum", "minttc_n", "no_conflict", "missed", "effort")
"""Additive per-episode parts every metric is computed from (:func:`from_sums`)."""
_C = {c: i for i, c in enumerate(COMPONENTS)}


def components(episodes: Sequence[EpisodeMetrics]) -> np.ndarray:
    """``(len(episodes), len(COMPONENTS))`` float table, one row per episode."""
    rows = np.zeros((len(episodes), len(COMPONENTS)))
    for k, e in enumerate(episodes):
        o = e.outcome
        rows[k] = (1, o == "arrived", not e.failed, e.failed, o == "collision", o == "off_road",
                   o in ("stopped", "stopped_in_lane"), o == "pulled_over", o == "timeout",
                   o == "unknown", e.mrm, e.hazard_fired, e.hazard_fired and o == "arrived",
                   e.hazard_fired and e.failed, e.steps, e.human_steps, e.human_time, e.km,
                   e.ret, e.interventions, e.self_initiated, e.context_switches, e.tors,
                   e.askable_steps, sum(e.tor_lead_times), len(e.tor_lead_times),
                   sum(e.takeover_times), len(e.takeover_times), sum(e.min_ttcs),
                   len(e.min_ttcs), e.no_conflict_segments, e.missed_failure, e.effort_s)
    return rows


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS`, in its order, from column sums of :func:`components`
    (each definition's ``ratio`` of two components; ROHE from its formula); ``sums`` is
    ``(C,)`` or ``(R, C)`` (R bootstrap resamples at once)."""
    s = {c: sums[..., i] for c, i in _C.items()}
    out = {d.name: _div(s[d.ratio[0]], s[d.ratio[1]]) for d in DEFINITIONS if d.ratio}
    out["rohe"] = np.where(s["n"] > 0, rohe(s["arrived"], s["effort"]), np.nan)
    return {m: out[m] for m in METRIC_NAMES}


def askable_steps_per_episode(episodes: Sequence[EpisodeMetrics]) -> float:
    """Mean steps per episode on which a gate's request starts a takeover request (the
    random gate's per-step rate times this is its requests per episode)."""
    return float(np.mean([e.askable_steps for e in episodes])) if episodes else math.nan


def aggregate(episodes: Sequence[EpisodeMetrics]) -> dict[str, float]:
    """Condition-level metrics (every key of :data:`METRICS`) over ``episodes``."""
    sums = components(episodes).sum(axis=0) if episodes else np.zeros(len(COMPONENTS))
    return {k: float(v) for k, v in from_sums(sums).items()}


@dataclass(frozen=True)
class StepLabels:
    """Per-step estimator scores of agent-alone episodes and what happened next.

    Attributes:
        cluster: ``(S,)`` int, the episode each step belongs to (the bootstrap's cluster).
        time_to_failure: ``(S,)`` s from the end of the step to the episode's failure;
            ``inf`` in episodes that did not fail.
        to_onset: ``(S,)`` s from the hazard onset to the step (negative before it); NaN when
            the hazard never fired.
        scores: estimator -> ``(S,)`` float scores (NaN where not scored).
    """

    cluster: np.ndarray
    time_to_failure: np.ndarray
    to_onset: np.ndarray
    scores: dict[str, np.ndarray]

    def label(self, horizon: float) -> np.ndarray:
        """1 where the agent alone fails within ``horizon`` s of the step."""
        return (self.time_to_failure <= horizon).astype(np.int8)

    def hazard_window(self, horizon: float) -> np.ndarray:
        """Steps within ``horizon`` s either side of the hazard onset (fired hazards only):
        where an estimator has to tell the hazards the agent fails from those it handles."""
        with np.errstate(invalid="ignore"):
            return np.abs(self.to_onset) <= horizon


def step_labels(episodes: Sequence[Sequence[StepRecord]],
                estimators: Sequence[str]) -> StepLabels:
    """:class:`StepLabels` of agent-alone episodes (records in step order)."""
    cl, ttf, onset_rel = [], [], []
    scores: dict[str, list[np.ndarray]] = {e: [] for e in estimators}
    for k, recs in enumerate(episodes):
        t = np.array([r.time for r in recs], float)
        _, failed = episode_outcome(recs)
        ttf.append(t[-1] - t if failed else np.full(len(t), np.inf))
        cl.append(np.full(len(t), k, np.int64))
        onset = hazard_onset(recs)
        onset_rel.append(t - onset if math.isfinite(onset) else np.full(len(t), np.nan))
        for e in estimators:
            scores[e].append(np.array([r.scores.get(e, math.nan) for r in recs], float))
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))  # noqa: E731
    return StepLabels(cat(cl).astype(np.int64), cat(ttf), cat(onset_rel),
                      {e: cat(v) for e, v in scores.items()})
