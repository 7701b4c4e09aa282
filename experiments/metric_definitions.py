"""What every number of a report means: name, formula, unit and source, in one table.

Pure data (no numpy, no torch), so ``takeover log show`` and any reader of ``metrics.json``
can import it cheaply. The computation lives in ``takeover.experiments.metrics``, which
implements exactly these formulas; a test checks that the two list the same names.

Conventions used in the formulas:

* ``n``: episodes of the condition. Every rate is pooled over episodes (sum over episodes of
  the numerator / sum of the denominator), so its confidence interval comes from resampling
  episodes (``takeover.experiments.stats``).
* Outcomes are the world's ``info["outcome"]`` at the last step: ``arrived`` (the only
  success), ``collision``, ``off_road``, ``stopped``, ``pulled_over``, ``stopped_in_lane``,
  ``timeout``. An episode from a world that reports no outcome is ``unknown``: never counted
  as a success (the report says how many there were).
* A *human segment* is a maximal run of steps driven by the human. Steps driven by the
  minimal-risk manoeuvre (MRM, controller ``"fallback"``) are never human effort: they are
  counted by ``mrm_rate`` alone.
* A *closing conflict* is a step whose time-to-collision is finite (the env's sentinel
  ``TTC_NONE = 99 s`` means nothing is closing in).

* The *random gate* baseline (``random``) is matched to the configured gate on takeover
  requests per episode (``tors_per_episode``), not on the per-step share of request steps.
  A request is the gate's decision; the per-step share is wrong because the configured
  gate's request stays on for the whole takeover while a random gate's request is one step:
  matched on it, the random gate asked 2.2 times per episode against 1.3 and bought twice
  the human time. The second random twin (``random_time``) is the same random gate matched
  on human-controlled seconds per episode (``human_time_per_episode``): how long the human
  drives after a request depends on the hand-back policy and on where the request lands
  (a request while cruising is handed back sooner than one before a hazard), so a gate
  must beat random at equal requests *and* at equal human time. Both realised matches are
  checked in every report (invariants).

Question asked of each metric: can a policy that does nothing win it? Stopping in a live
lane is not ``arrived``; ROHE charges a recovery for every car left wrecked or at rest short
of its destination (so neither a parked car, nor a supervisor that never asks, nor a human
who lets every request fall to the minimal-risk manoeuvre wins it); a hazard metric is also
reported over the episodes whose hazard fired.

ROHE is defined once, here (:func:`rohe`, :data:`RECOVERY_OUTCOMES`), and used by both the
single supervisor's report (``takeover.experiments.metrics``) and the fleet sweep
(``takeover.experiments.fleet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricDef:
    """One metric.

    Attributes:
        name: key in ``metrics.json`` / ``metrics.csv``.
        formula: how it is computed from the episodes (plain text).
        unit: unit of the value.
        source: where the definition comes from (paper, standard or our own choice).
        better: ``"higher"``, ``"lower"`` or ``""`` (descriptive only).
        ratio: ``(numerator, denominator)``: the two additive per-episode parts
            (``metrics.COMPONENTS``) whose pooled sums it divides; ``()`` for a metric with
            its own formula (ROHE) or not pooled over episodes (trigger metrics).
    """

    name: str
    formula: str
    unit: str
    source: str
    better: str = ""
    ratio: tuple[str, str] | tuple[()] = ()


OUTCOMES = ("arrived", "collision", "off_road", "stopped", "pulled_over", "stopped_in_lane",
            "timeout")
"""The world's episode outcomes (``takeover.envs.OUTCOMES``), copied so this module needs no env."""

SUCCESS_OUTCOMES = ("arrived",)
FAILURE_OUTCOMES = ("collision", "off_road")
"""Unsafe outcomes; every other outcome is safe (``takeover.envs.SAFE_OUTCOMES``)."""

_OUR = "takeover testbed (this definition)"
_FLEET = ("Hoque et al. 2022, Fleet-DAgger (CoRL), eq. for ROHE: (M/N) sum_t r_t / "
          "(1 + sum_t ||alpha_t||_F^2), M humans, N robots, alpha_t the N x M assignment "
          "matrix; BerkeleyAutomation/ifl_benchmark (plotting/process_logs.py) counts a success "
          "per task completed and a human action per step a human is assigned to a robot "
          "(teleoperating or in a hard reset of hard_reset_time steps after a constraint "
          "violation; a time-out resets for free)")

RECOVERY_OUTCOMES = ("collision", "off_road", "stopped", "stopped_in_lane", "pulled_over")
"""Outcomes after which a human must recover the car (Fleet-DAgger's hard reset of a robot in
a constraint violation): wrecked, off the road, or at rest short of its destination
(including the minimal-risk manoeuvre's stops, which need remote assistance to resume).
``arrived`` needs none, nor ``timeout`` (the car is still driving when time runs out; the IFL
benchmark resets a time-out for free)."""


def needs_recovery(outcome: str, failed: bool = False) -> bool:
    """An episode that ended with ``outcome`` costs a recovery (:data:`RECOVERY_OUTCOMES`);
    a world that reports no outcome (``"unknown"``) costs one when it crashed (``failed``)."""
    return outcome in RECOVERY_OUTCOMES or (outcome == "unknown" and bool(failed))


def rohe(successes: Any, human_seconds: Any, humans: Any = 1, worlds: Any = 1) -> Any:
    """Return on human effort (Hoque et al. 2022, Fleet-DAgger), the testbed's one ROHE:
    ``(H / N) * successes / (1 + human_seconds)``.

    ``successes``: arrivals over the whole run (Fleet-DAgger's sum of the sparse task-success
    reward over robots and steps). ``human_seconds``: every second a human was assigned to a
    world over the run: driving (each intervention at least the minimum intervention time),
    switching into it, and recovering it (a recovery per :data:`RECOVERY_OUTCOMES` episode,
    owed ones included). The paper counts human actions (control steps); seconds make the
    value independent of the control rate (at 10 Hz a step count is 10x the seconds, at
    20 Hz 20x). ``H / N`` (humans per world; 1 for one supervisor and one car) keeps fleets of
    different size comparable. The ``1 +`` (one human-second) keeps a run without effort
    finite; it is negligible against any run with a request or a recovery in it, so ROHE is
    then (nearly) independent of the run's length. Unit: arrivals per human-second, times
    H/N. Works elementwise on numpy arrays (bootstrap resamples)."""
    return humans / worlds * successes / (1.0 + human_seconds)

DEFINITIONS: tuple[MetricDef, ...] = (
    MetricDef("success_rate", "episodes with outcome arrived / n", "share of episodes",
              "reached the route's end; standing still, an MRM or a timeout is no success "
              "(Dosovitskiy et al. 2017 route completion; brief outcome list)", "higher",
              ratio=("arrived", "n")),
    MetricDef("safety_rate", "episodes without collision or off_road / n", "share of episodes",
              "no crash, no road departure", "higher", ratio=("safe", "n")),
    MetricDef("collision_rate", "episodes with outcome collision / n", "share of episodes",
              _OUR, "lower", ratio=("collision", "n")),
    MetricDef("offroad_rate", "episodes with outcome off_road / n", "share of episodes", _OUR,
              "lower", ratio=("off_road", "n")),
    MetricDef("failure_rate", "collision_rate + offroad_rate", "share of episodes", _OUR,
              "lower", ratio=("failed", "n")),
    MetricDef("stopped_rate", "episodes with outcome stopped or stopped_in_lane / n",
              "share of episodes", "standstill in a live lane (a hazard to others)", "lower",
              ratio=("stopped", "n")),
    MetricDef("pulled_over_rate", "episodes with outcome pulled_over / n", "share of episodes",
              "MRM ended at rest on the shoulder (ISO/SAE J3016 minimal risk condition)", "",
              ratio=("pulled_over", "n")),
    MetricDef("timeout_rate", "episodes with outcome timeout / n", "share of episodes",
              "time limit without arriving: a failure to deliver", "lower", ratio=("timeout", "n")),
    MetricDef("unknown_outcome_rate", "episodes whose world reported no outcome / n",
              "share of episodes", "counted as no success; nonzero means an old world", "",
              ratio=("unknown", "n")),
    MetricDef("mrm_rate", "episodes in which the minimal-risk manoeuvre engaged / n",
              "share of episodes", "fallback, never a human intervention (brief)", "lower",
              ratio=("mrm", "n")),
    MetricDef("hazard_fired_rate", "episodes whose hazard fired / n", "share of episodes",
              "exposure: how often the scenario's hazard actually happened", "",
              ratio=("fired", "n")),
    MetricDef("success_rate_hazard", "arrived episodes among those whose hazard fired / "
              "episodes whose hazard fired", "share of hazard episodes",
              "conditional on exposure: an episode whose hazard never happened says nothing "
              "about it", "higher", ratio=("arrived_fired", "fired")),
    MetricDef("failure_rate_hazard", "collision or off_road episodes among those whose hazard "
              "fired / episodes whose hazard fired", "share of hazard episodes", _OUR, "lower",
              ratio=("failed_fired", "fired")),
    MetricDef("interventions_per_episode", "human segments / n (MRM steps excluded)",
              "segments per episode", "Kelly et al. 2019 HG-DAgger; Hoque et al. 2021 "
              "ThriftyDAgger (interventions)", "lower", ratio=("interventions", "n")),
    MetricDef("interventions_per_km", "human segments / km driven (pooled)", "segments per km",
              "disengagements per distance (California DMV disengagement reports)", "lower",
              ratio=("interventions", "km")),
    MetricDef("human_share", "steps driven by the human / all steps (pooled)",
              "share of driving time", "Peng et al. 2023 PVP (human-controlled share)", "lower",
              ratio=("human_steps", "steps")),
    MetricDef("human_time_per_episode", "seconds driven by the human / n", "s per episode",
              _OUR, "lower", ratio=("human_time", "n")),
    MetricDef("self_initiated_per_episode", "human segments started without a request / n",
              "segments per episode", "human-gated takeovers (Kelly et al. 2019 HG-DAgger)",
              "", ratio=("self_initiated", "n")),
    MetricDef("context_switches_per_episode", "changes of the controller between consecutive "
              "steps / n", "switches per episode",
              "Hoque et al. 2021 LazyDAgger (context switches)", "lower", ratio=("switches", "n")),
    MetricDef("tors_per_episode", "takeover requests issued (a request started while the agent "
              "drove with nothing pending) / n", "requests per episode",
              _OUR + "; the quantity the random-gate baseline is matched on", "lower",
              ratio=("tors", "n")),
    MetricDef("tor_lead_time", "mean over requests issued during a closing conflict of the TTC "
              "at the request", "s",
              "time budget at the TOR (Gold et al. 2013; Eriksson & Stanton 2017)", "higher",
              ratio=("lead_sum", "lead_n")),
    MetricDef("takeover_time", "mean over takeovers that answered a request of (time the human "
              "took control - time the request was issued)", "s",
              "takeover time (Eriksson & Stanton 2017; Zhang et al. 2019)", "",
              ratio=("tot_sum", "tot_n")),
    MetricDef("min_ttc_human", "mean over human segments with a closing conflict of the "
              "minimum TTC while the human drove", "s",
              "minimum TTC after takeover (Gold et al. 2013; Zhang et al. 2019)", "higher",
              ratio=("minttc_sum", "minttc_n")),
    MetricDef("no_conflict_share", "human segments with no closing conflict / human segments",
              "share of segments", "the segments min_ttc_human leaves out", "",
              ratio=("no_conflict", "interventions")),
    MetricDef("missed_failure_rate", "failed episodes with no request in the horizon before the "
              "end and no human control / n", "share of episodes", _OUR, "lower",
              ratio=("missed", "n")),
    MetricDef("rohe", "(H / N) S / (1 + E) over the condition's episodes (H = N = 1 for one "
              "supervisor): S = episodes arrived; E = human-seconds = sum over human segments "
              "of max(duration, rohe_min_intervention) + rohe_reset_time for every episode "
              "ending in " + "/".join(RECOVERY_OUTCOMES) + " (someone must recover the car); "
              "in a fleet E also counts context switches and owed recoveries",
              "arrivals per human-second (x H/N)",
              _FLEET + "; effort in seconds (not steps) so it does not depend on the control "
              "rate", "higher"),
    MetricDef("mean_return", "sum of env rewards / n", "reward per episode", _OUR, "higher",
              ratio=("ret", "n")),
    MetricDef("km_per_episode", "distance driven / n", "km per episode",
              "exposes a policy made safe by crawling", "higher", ratio=("km", "n")),
)
"""Every condition-level metric of ``metrics.json``, in report order."""

TRIGGER_DEFINITIONS: tuple[MetricDef, ...] = (
    MetricDef("auroc", "area under the ROC curve of an estimator's score for the label "
              "'the agent alone fails (collision or off_road) within h s of this step', over "
              "agent-alone steps; CI by episode-cluster bootstrap", "probability",
              "Hanley & McNeil 1982; labels observed on the agent's own trajectory", "higher"),
    MetricDef("auprc", "area under the precision-recall curve (average precision) of the same "
              "label", "probability", "Davis & Goadrich 2006", "higher"),
    MetricDef("lead_time", "median over failed agent-alone episodes of (failure time - start "
              "of the last uninterrupted alarm within the lead window before it); alarm = score "
              "at or above the threshold giving the fixed false-alarm rate on steps far from "
              "any failure; 0 when never raised",
              "s", "early-warning lead time at a fixed false-alarm rate", "higher"),
    MetricDef("detected", "failed episodes whose alarm was raised before the failure / failed "
              "episodes", "share of failures", _OUR, "higher"),
    MetricDef("trigger_precision", "share of the gate's request steps labelled needed "
              "(counterfactual rollout of the agent alone fails within the horizon)",
              "share of requests", "counterfactual labels (takeover.supervisor.counterfactual)",
              "higher"),
    MetricDef("trigger_recall", "share of needed steps on which the gate requested (weighted by "
              "the inverse sampling probability of non-request steps)", "share of needed steps",
              "counterfactual labels", "higher"),
    MetricDef("false_alarm_rate", "1 - trigger_precision", "share of requests",
              "counterfactual labels", "lower"),
    MetricDef("missed_failures_per_episode", "estimated needed steps with no request / n",
              "steps per episode", "counterfactual labels", "lower"),
    MetricDef("cf_lead_time", "mean time from a needed request's onset to the agent-alone "
              "failure it prevented", "s", "counterfactual labels", "higher"),
)
"""Trigger-quality metrics (per estimator / scenario / horizon, and of the gate)."""

BY_NAME: dict[str, MetricDef] = {d.name: d for d in (*DEFINITIONS, *TRIGGER_DEFINITIONS)}

METRIC_NAMES: tuple[str, ...] = tuple(d.name for d in DEFINITIONS)


def describe(name: str) -> str:
    """``"formula [unit]; source"`` of a metric, for tables and ``log show``."""
    d = BY_NAME[name]
    return f"{d.formula} [{d.unit}]; {d.source}"
