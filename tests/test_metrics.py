"""Metrics from hand-built episodes whose right answers are known (issue 11: a test per
metric, including a no-conflict human segment, a fallback-only episode, a hazard that never
fired, and every outcome)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from takeover.experiments import metric_definitions as md
from takeover.experiments.metrics import (
    METRICS,
    TRIGGER_METRICS,
    aggregate,
    components,
    episode_metrics,
    from_sums,
    step_labels,
    trigger_metrics,
)
from takeover.records import StepRecord

NAN = math.nan


def rec(step, controller="agent", *, tor=NAN, takeover=NAN, ttc=99.0, x=None, outcome=None,
        request=False, reward=0.1, ep="e0", transition="", onset=-1.0, mrm=False,
        scores=None):
    """One 0.1-s step; ``outcome`` (the world's, at the last step) None = an old world that
    reports no outcome."""
    info = {"x": 25.0 * (step + 1) if x is None else x, "ttc": ttc,
            "collision": outcome == "collision", "offroad": outcome == "off_road",
            "hazard_onset": onset, "hazard_active": onset >= 0}
    if outcome is not None:
        info["outcome"] = outcome
    if mrm:
        info["mrm"] = True
    return StepRecord(
        episode=ep, step=step, time=0.1 * (step + 1), wall_time=0.0,
        obs=np.zeros((9, 7), np.float32), agent_action=np.zeros(1, np.float32),
        member_actions=None, human_action=np.zeros(1, np.float32) if controller == "human"
        else None, action=np.zeros(1, np.float32), controller=controller, phase=controller,
        transition=transition, gate_request=request, tor_time=tor, takeover_time=takeover,
        reward=reward, terminated=outcome in ("collision", "off_road"),
        truncated=outcome == "timeout", reason=outcome or "", info=info,
        scores=scores or {},
        # the schema-2.0 fields, filled from the info as the engine fills them
        outcome=outcome or "", hazard_fired=onset >= 0, mrm=mrm,
        hazard_onset=onset if onset >= 0 else NAN,
    )


def info_only(r):
    """``r`` as a record built before the schema-2.0 fields: the world's keys in info only."""
    return dataclasses.replace(r, outcome="", hazard_fired=False, mrm=False,
                               hazard_onset=NAN)


def supervised_episode(outcome="arrived"):
    """10 steps: TOR at t=0.4 (ttc 4 s), the human answers and drives steps 5-7 (takeover at
    t=0.6, min TTC 1.5 s), back to the agent, ends with ``outcome`` after 250 m; the hazard
    fired at t=0.2."""
    r = [rec(i, onset=0.2 if i >= 1 else -1.0) for i in range(3)]
    r.append(rec(3, tor=0.4, ttc=4.0, request=True, onset=0.2))
    r.append(rec(4, tor=0.4, ttc=3.0, request=True, onset=0.2))
    r += [rec(5, "human", tor=0.4, takeover=0.6, ttc=2.0, transition="human_response",
              onset=0.2),
          rec(6, "human", tor=0.4, takeover=0.6, ttc=1.5, onset=0.2),
          rec(7, "human", tor=0.4, takeover=0.6, ttc=5.0, onset=0.2)]
    r += [rec(8, tor=0.4, onset=0.2), rec(9, tor=0.4, onset=0.2, outcome=outcome)]
    return r


def test_every_metric_has_a_definition_with_formula_unit_and_source():
    assert tuple(METRICS) == md.METRIC_NAMES
    for d in (*md.DEFINITIONS, *md.TRIGGER_DEFINITIONS):
        assert d.formula and d.unit and d.source, d.name
        assert d.better in ("higher", "lower", ""), d.name
    assert set(TRIGGER_METRICS) <= set(md.BY_NAME)
    # every condition metric but ROHE is computed as its definition's ratio of components
    from takeover.experiments.metrics import COMPONENTS

    for d in md.DEFINITIONS:
        assert (d.name == "rohe") == (not d.ratio), d.name
        assert set(d.ratio) <= set(COMPONENTS), d.name


def test_definitions_import_without_numpy_or_torch():
    import subprocess
    import sys

    code = ("import sys, takeover.experiments.metric_definitions as m; "
            "assert 'numpy' not in sys.modules and 'torch' not in sys.modules, "
            "sorted(k for k in sys.modules if k in ('numpy', 'torch')); print(len(m.BY_NAME))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_episode_metrics_of_a_known_episode():
    m = episode_metrics(supervised_episode())
    assert m.success and m.outcome == "arrived" and not m.failed and m.steps == 10
    assert m.km == pytest.approx(0.25) and m.duration == pytest.approx(1.0)
    assert m.interventions == 1 and m.human_steps == 3 and m.context_switches == 2
    assert m.human_time == pytest.approx(0.3) and m.self_initiated == 0
    assert m.tors == 1 and m.tor_lead_times == (4.0,)
    assert m.takeover_times == (pytest.approx(0.2),)
    assert m.min_ttcs == (1.5,) and m.no_conflict_segments == 0
    assert m.hazard_fired and not m.mrm and not m.missed_failure
    assert m.ret == pytest.approx(1.0)
    assert m.effort_s == pytest.approx(5.0)  # one segment, priced at the 5 s minimum


@pytest.mark.parametrize("outcome, success, failed", [
    ("arrived", True, False), ("timeout", False, False), ("stopped", False, False),
    ("stopped_in_lane", False, False), ("pulled_over", False, False),
    ("collision", False, True), ("off_road", False, True)])
def test_only_arrived_is_success_and_only_crashes_are_unsafe(outcome, success, failed):
    agg = aggregate([episode_metrics(supervised_episode(outcome))])
    assert agg["success_rate"] == float(success)
    assert agg["safety_rate"] == float(not failed)
    assert agg["failure_rate"] == float(failed)
    key = {"timeout": "timeout_rate", "stopped": "stopped_rate",
           "stopped_in_lane": "stopped_rate", "pulled_over": "pulled_over_rate",
           "collision": "collision_rate", "off_road": "offroad_rate"}.get(outcome)
    if key:
        assert agg[key] == 1.0
    # a car left wrecked or at rest costs a recovery, 60 s on top of the 5 s segment; a
    # timeout (still driving) resets for free, as in Fleet-DAgger's benchmark
    reset = 0 if outcome in ("arrived", "timeout") else 60
    assert agg["rohe"] == pytest.approx(float(success) / (1 + 5 + reset))


def test_fields_and_old_info_keys_give_the_same_metrics():
    """A record's schema-2.0 fields (outcome, hazard_fired, hazard_onset, mrm) and the same
    keys in the env info of an older record are one thing: a default field ("", False, NaN)
    must not hide the info (the bug that made every episode "unknown")."""
    for eps in (supervised_episode("collision"),
                [rec(0), rec(1, "fallback", mrm=True, outcome="pulled_over")]):
        new, old = episode_metrics(eps), episode_metrics([info_only(r) for r in eps])
        assert new == old and new.outcome in ("collision", "pulled_over")
    fields_only = [dataclasses.replace(r, info={"x": r.info["x"], "ttc": r.info["ttc"]})
                   for r in supervised_episode("arrived")]
    m = episode_metrics(fields_only)
    assert m.success and m.hazard_fired


def test_missing_outcome_is_unknown_never_success():
    eps = [rec(0), rec(1)]
    m = episode_metrics(eps)
    assert m.outcome == "unknown" and not m.success and not m.failed
    agg = aggregate([m])
    assert agg["unknown_outcome_rate"] == 1.0 and agg["success_rate"] == 0.0


def test_old_world_crash_flags_still_count_as_unsafe():
    r = rec(1, ttc=0.0)
    r.info["collision"] = True  # an old world: no outcome key, collision flag only
    m = episode_metrics([rec(0), r])
    assert m.outcome == "collision" and m.failed


def test_fallback_only_episode_is_mrm_not_an_intervention():
    eps = [rec(0), rec(1, tor=0.2, request=True), rec(2, "fallback", tor=0.2, mrm=True),
           rec(3, "fallback", tor=0.2, mrm=True, outcome="pulled_over")]
    m = episode_metrics(eps)
    assert m.mrm and m.interventions == 0 and m.human_steps == 0
    assert m.takeover_times == () and not m.missed_failure
    agg = aggregate([m])
    assert agg["mrm_rate"] == 1.0 and agg["interventions_per_episode"] == 0.0
    assert agg["human_share"] == 0.0 and agg["pulled_over_rate"] == 1.0
    assert math.isnan(agg["takeover_time"]) and math.isnan(agg["no_conflict_share"])


def test_no_conflict_human_segment_is_left_out_of_min_ttc_and_counted():
    eps = [rec(0), rec(1, "human", transition="human_initiated"), rec(2, "human"),
           rec(3), rec(4, "human", transition="human_initiated", ttc=3.0),
           rec(5, outcome="arrived")]
    m = episode_metrics(eps)
    assert m.interventions == 2 and m.self_initiated == 2 and m.no_conflict_segments == 1
    assert m.min_ttcs == (3.0,) and m.takeover_times == ()
    agg = aggregate([m])
    assert agg["min_ttc_human"] == 3.0 and agg["no_conflict_share"] == 0.5
    assert agg["self_initiated_per_episode"] == 2.0


def test_hazard_metrics_are_conditional_on_the_hazard_firing():
    fired_crash = episode_metrics(supervised_episode("collision"))
    quiet = episode_metrics([rec(i, ep="q") for i in range(4)] + [rec(4, outcome="arrived",
                                                                       ep="q")])
    assert fired_crash.hazard_fired and not quiet.hazard_fired
    agg = aggregate([fired_crash, quiet])
    assert agg["hazard_fired_rate"] == 0.5
    assert agg["success_rate"] == 0.5 and agg["success_rate_hazard"] == 0.0
    assert agg["failure_rate_hazard"] == 1.0
    none = aggregate([quiet])
    assert math.isnan(none["success_rate_hazard"]) and none["hazard_fired_rate"] == 0.0


def test_world_hazard_fired_flag_wins_over_onset():
    eps = [rec(0), rec(1, outcome="arrived")]
    for r in eps:
        r.info["hazard_fired"] = False
        r.info["hazard_active"] = True  # e.g. a hazard "active" flag that did nothing
    assert not episode_metrics(eps).hazard_fired


def test_failure_without_request_is_a_missed_failure():
    m = episode_metrics([rec(i) for i in range(4)] + [rec(4, outcome="collision", ttc=0.0)])
    assert m.failed and not m.success and m.missed_failure


def test_aggregate_pools_over_episodes():
    sup = episode_metrics(supervised_episode())
    crash = episode_metrics([rec(i, ep="e1") for i in range(3)]
                            + [rec(3, outcome="collision", x=100.0, ep="e1")])
    agg = aggregate([sup, crash])
    assert agg["success_rate"] == 0.5 and agg["collision_rate"] == 0.5
    assert agg["interventions_per_episode"] == 0.5
    assert agg["interventions_per_km"] == pytest.approx(1 / 0.35)
    assert agg["human_share"] == pytest.approx(3 / 14)
    assert agg["human_time_per_episode"] == pytest.approx(0.15)
    assert agg["missed_failure_rate"] == 0.5 and agg["tors_per_episode"] == 0.5
    assert agg["context_switches_per_episode"] == 1.0
    assert agg["mean_return"] == pytest.approx(0.7) and agg["km_per_episode"] == 0.175


def test_rohe_is_not_won_by_doing_nothing():
    """The car that never moves, the supervisor that never asks and the human who lets
    every request fall to the minimal-risk manoeuvre all pay a recovery per car left
    wrecked or at rest; 8 of 10 delivered with a 5 s takeover each beats 4 of 10 alone
    (4 / (1 + 6 x 60) = 0.011 against 8 / (1 + 50 + 2 x 60) = 0.047) and beats pulling over
    instead of crashing (4 / (1 + 6 x 60) too: the MRM stop is no free exit)."""
    alone = [episode_metrics([rec(0, ep=f"a{i}"), rec(1, ep=f"a{i}",
                                                       outcome="arrived" if i < 4
                                                       else "collision")])
             for i in range(10)]
    parked = [episode_metrics([rec(0, x=0.0, ep=f"p{i}"),
                               rec(1, x=0.0, ep=f"p{i}", outcome="stopped")])
              for i in range(10)]
    helped = [episode_metrics(supervised_episode("arrived" if i < 8 else "collision"))
              for i in range(10)]
    mrm = [episode_metrics([rec(0, ep=f"m{i}"), rec(1, ep=f"m{i}",
                                                     outcome="arrived" if i < 4
                                                     else "pulled_over")])
           for i in range(10)]
    r = {k: aggregate(v)["rohe"] for k, v in
         (("alone", alone), ("parked", parked), ("helped", helped), ("mrm", mrm))}
    assert r["parked"] == 0.0 and r["helped"] > r["alone"] > r["parked"]
    assert r["helped"] > r["mrm"] and r["mrm"] == pytest.approx(r["alone"])
    assert r["alone"] == pytest.approx(4 / (1 + 6 * 60))


def test_rohe_does_not_depend_on_the_control_rate():
    """The same 2 s of human driving at 10 Hz and at 20 Hz costs the same effort."""
    def ep(dt):
        n = round(2.0 / dt)
        rs = [rec(0)] + [rec(1 + i, "human", transition="human_initiated" if i == 0 else "")
                         for i in range(n)] + [rec(n + 1, outcome="arrived")]
        return [r.__class__(**{**r.__dict__, "time": dt * (k + 1)}) for k, r in enumerate(rs)]

    a, b = aggregate([episode_metrics(ep(0.1), min_intervention=0.0)]), \
        aggregate([episode_metrics(ep(0.05), min_intervention=0.0)])
    assert a["rohe"] == pytest.approx(b["rohe"])
    assert a["human_time_per_episode"] == pytest.approx(b["human_time_per_episode"])


def test_undefined_metrics_are_nan_not_zero():
    agg = aggregate([episode_metrics([rec(0), rec(1, outcome="arrived")])])
    for k in ("takeover_time", "tor_lead_time", "min_ttc_human", "no_conflict_share",
              "success_rate_hazard"):
        assert math.isnan(agg[k]), k
    assert agg["interventions_per_episode"] == 0.0 and agg["rohe"] == 1.0  # 1 / (1 + 0 s)
    assert all(math.isnan(v) for v in aggregate([]).values())


def test_from_sums_is_vectorised_over_resamples():
    eps = [episode_metrics(supervised_episode(o)) for o in ("arrived", "collision")]
    tab = components(eps)
    w = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    out = from_sums(w @ tab)
    assert out["success_rate"].tolist() == [1.0, 0.0, 0.5]


def test_empty_episode_is_refused():
    with pytest.raises(ValueError, match="at least one record"):
        episode_metrics([])


def test_step_labels_mark_the_horizon_before_a_failure():
    crash = [rec(i, onset=0.3 if i >= 2 else -1.0, scores={"s": float(i)}) for i in range(9)]
    crash.append(rec(9, outcome="collision", onset=0.3, scores={"s": 9.0}))
    fine = [rec(i, ep="f", scores={"s": 0.0}) for i in range(4)] + [
        rec(4, ep="f", outcome="arrived", scores={"s": 0.0})]
    lab = step_labels([crash, fine], ["s"])
    assert lab.cluster.tolist() == [0] * 10 + [1] * 5
    y = lab.label(0.25)  # failure at t=1.0: steps ending at t >= 0.75 are positive
    assert y.tolist() == [0] * 7 + [1] * 3 + [0] * 5
    win = lab.hazard_window(0.2)  # onset 0.3: steps at t in [0.1, 0.5]
    assert win.tolist() == [True] * 5 + [False] * 5 + [False] * 5


def test_trigger_metrics_from_counterfactual_report():
    t = trigger_metrics({"precision": 0.25, "recall": 0.5, "missed_failures": 6.0,
                         "mean_lead_time": 1.2}, episodes=3)
    assert set(t) == set(TRIGGER_METRICS)
    assert t["false_alarm_rate"] == 0.75 and t["missed_failures_per_episode"] == 2.0
    assert all(math.isnan(v) for v in trigger_metrics(None, 3).values())


def test_askable_steps_are_those_on_which_a_request_can_start():
    """The random gate is matched through these: a request starts a takeover request only
    when the step begins with the agent driving and nothing pending (the phase after the
    previous step is ``agent``)."""
    phases = ["agent", "tor", "tor", "human", "human", "agent", "fallback", "fallback"]
    eps = [dataclasses.replace(rec(i), phase=p) for i, p in enumerate(phases)]
    assert episode_metrics(eps).askable_steps == 3  # steps 0 (the start), 1 and 6
