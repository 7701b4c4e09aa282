"""Metrics from hand-built episodes whose right answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from takeover.experiments.metrics import (
    METRICS,
    TRIGGER_METRICS,
    aggregate,
    episode_metrics,
    trigger_metrics,
)
from takeover.records import StepRecord

NAN = math.nan


def rec(step, controller="agent", *, tor=NAN, takeover=NAN, ttc=99.0, x=None, reason="",
        request=False, reward=0.1, ep="e0"):
    return StepRecord(
        episode=ep, step=step, time=0.1 * (step + 1), wall_time=0.0,
        obs=np.zeros((9, 7), np.float32), agent_action=np.zeros(1, np.float32),
        member_actions=None, human_action=np.zeros(1, np.float32) if controller == "human"
        else None, action=np.zeros(1, np.float32), controller=controller, phase=controller,
        gate_request=request, tor_time=tor, takeover_time=takeover, reward=reward,
        terminated=reason in ("collision", "offroad"), truncated=reason == "time_limit",
        reason=reason,
        info={"x": 25.0 * (step + 1) if x is None else x, "ttc": ttc,
              "collision": reason == "collision", "offroad": reason == "offroad"},
    )


def supervised_episode():
    """10 steps: TOR at t=0.3 (ttc 4 s), human drives steps 5-7 (takeover at t=0.6, min
    TTC 1.5 s), back to the agent, ends by time limit after 250 m."""
    r = [rec(i) for i in range(3)]
    r.append(rec(3, tor=0.3, ttc=4.0, request=True))
    r.append(rec(4, tor=0.3, ttc=3.0, request=True))
    r += [rec(5, "human", tor=0.3, takeover=0.6, ttc=2.0),
          rec(6, "human", tor=0.3, takeover=0.6, ttc=1.5),
          rec(7, "human", tor=0.3, takeover=0.6, ttc=5.0)]
    r += [rec(8, tor=0.3), rec(9, tor=0.3, reason="time_limit")]
    return r


def test_episode_metrics_of_a_known_episode():
    m = episode_metrics(supervised_episode())
    assert m.success and not m.collision and m.steps == 10
    assert m.km == pytest.approx(0.25)
    assert m.interventions == 1 and m.human_steps == 3 and m.context_switches == 2
    assert m.tors == 1 and m.tor_lead_times == (4.0,)
    assert m.takeover_times == (pytest.approx(0.3),)
    assert m.min_ttc_after_takeover == (1.5,)
    assert not m.missed_failure and m.ret == pytest.approx(1.0)


def test_failure_without_request_is_a_missed_failure():
    eps = [rec(i) for i in range(4)] + [rec(4, reason="collision", ttc=0.0)]
    m = episode_metrics(eps)
    assert m.collision and not m.success and m.missed_failure
    eps = [rec(0), rec(1, tor=0.2, request=True), rec(2, "fallback", tor=0.2),
           rec(3, "fallback", tor=0.2, reason="offroad")]
    m = episode_metrics(eps)
    assert m.offroad and not m.missed_failure and m.fallbacks == 1 and m.interventions == 1
    assert m.takeover_times == ()  # the fallback is not a human takeover


def test_aggregate_pools_over_episodes_and_has_every_metric():
    sup = episode_metrics(supervised_episode())
    crash = episode_metrics([rec(i, ep="e1") for i in range(3)]
                            + [rec(3, reason="collision", x=100.0, ep="e1")])
    agg = aggregate([sup, crash])
    assert set(agg) == set(METRICS)
    assert agg["success_rate"] == 0.5 and agg["collision_rate"] == 0.5
    assert agg["failure_rate"] == 0.5
    assert agg["interventions_per_episode"] == 0.5
    assert agg["interventions_per_km"] == pytest.approx(1 / 0.35)
    assert agg["human_share"] == pytest.approx(3 / 14)
    assert agg["missed_failure_rate"] == 0.5
    assert agg["rohe"] == pytest.approx(0.5 / (1 + 1.5))
    assert agg["takeover_time"] == pytest.approx(0.3)


def test_undefined_metrics_are_nan_not_zero():
    agg = aggregate([episode_metrics([rec(0), rec(1, reason="time_limit")])])
    for k in ("takeover_time", "tor_lead_time", "min_ttc_after_takeover"):
        assert math.isnan(agg[k]), k
    assert agg["interventions_per_episode"] == 0.0 and agg["rohe"] == 1.0
    assert all(math.isnan(v) for v in aggregate([]).values())


def test_empty_episode_is_refused():
    with pytest.raises(ValueError, match="at least one record"):
        episode_metrics([])


def test_trigger_metrics_from_counterfactual_report():
    t = trigger_metrics({"precision": 0.25, "recall": 0.5, "missed_failures": 6.0,
                         "mean_lead_time": 1.2}, episodes=3)
    assert set(t) == set(TRIGGER_METRICS)
    assert t["false_alarm_rate"] == 0.75 and t["missed_failures_per_episode"] == 2.0
    assert all(math.isnan(v) for v in trigger_metrics(None, 3).values())
