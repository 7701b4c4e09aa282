"""Fleet supervision: at most H humans act, a switch costs its context-switch time, a human
stays the minimum intervention time, resets cost the human, the policies rank as documented,
and with a human per world and no costs the fleet is the per-world humans unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.experiments.fleet import cell_summary
from takeover.supervisor.allocation import ALLOCATIONS, FleetState, rank
from takeover.supervisor.fleet import FleetConfig, FleetHumans
from takeover.types import AgentOutputs, HumanInputs, HumanViews

DT = 0.1


class Eager:
    """N per-world humans that take control the moment they see a request, drive (action
    1) while holding it, and release after ``hold`` s in control."""

    def __init__(self, n: int, hold: float = 1e9) -> None:
        self.n, self.hold = n, hold
        self.since = np.full(n, np.nan)
        self.seen: list[HumanViews] = []

    def reset(self, worlds, seeds) -> None:
        self.since[np.asarray(worlds, dtype=int)] = np.nan

    def act(self, obs, info, world, views) -> HumanInputs:
        self.seen.append(views)
        on = views.tor_active | (views.phase == 2)
        self.since = np.where(on & np.isnan(self.since), views.time, self.since)
        self.since = np.where(on, self.since, np.nan)
        rel = on & (views.time - self.since >= self.hold)
        return HumanInputs(action=np.ones(self.n, dtype=np.int64), has_action=on & ~rel,
                           wants_control=on & ~rel, releases=rel)


def views(n, phase, t, urgency=None, elapsed=None) -> HumanViews:
    phase = np.asarray(phase, dtype=np.int8)
    alert = (phase == 1) | (phase == 3)
    return HumanViews(phase=phase, tor_active=alert,
                      tor_elapsed=np.zeros(n) if elapsed is None else np.asarray(elapsed, float),
                      urgency=np.zeros(n) if urgency is None else np.asarray(urgency, float),
                      time=np.full(n, t))


def fleet(n, **kw):
    inner = Eager(n, kw.pop("hold", 1e9))
    kw.setdefault("context_switch_time", 0.0)
    kw.setdefault("min_intervention_time", 0.0)
    kw.setdefault("allocation", "fifo")
    return FleetHumans(inner, n, dt=DT, **kw), inner


def test_at_most_h_worlds_get_a_human_whatever_the_policy():
    for name in ALLOCATIONS.names():
        f, _ = fleet(6, num_humans=2, allocation=name,
                     allocation_kwargs={"risk": None} if name in ("risk", "cur", "thrifty")
                     else {})
        if name in ("uncertainty", "cur", "thrifty"):
            f.observe_scores({"entropy": np.linspace(0, 1, 6), "q_risk": np.zeros(6)})
        for k in range(50):
            hin = f.act(None, {}, None, views(6, [1] * 6, k * DT))
            assert (hin.has_action | hin.wants_control).sum() <= 2, name


def test_a_new_world_costs_the_context_switch_time_before_any_input():
    f, _ = fleet(2, num_humans=1, context_switch_time=1.0, allocation="fifo")
    got = [f.act(None, {}, None, views(2, [1, 0], k * DT)).has_action[0] for k in range(15)]
    # 1.0 s / 0.1 s = 10 steps without input, then the eager human answers at once
    assert got == [False] * 10 + [True] * 5


def test_a_human_stays_the_minimum_intervention_time():
    f, _ = fleet(1, num_humans=1, min_intervention_time=2.0, hold=0.3)
    rel = []
    for k in range(30):
        ph = 2 if k > 0 and not any(rel) else 1
        rel.append(bool(f.act(None, {}, None, views(1, [ph], k * DT)).releases[0]))
    # the eager human wants to release after 0.3 s; the fleet holds it until 2.0 s
    assert rel.index(True) == 20


def test_the_minimum_intervention_time_starts_once_the_switch_is_done():
    f, _ = fleet(1, num_humans=1, context_switch_time=1.0, min_intervention_time=2.0,
                 hold=0.3)
    rel, holds = [], False
    for k in range(40):
        hin = f.act(None, {}, None, views(1, [2 if holds else 1], k * DT))
        holds = bool(hin.wants_control[0]) or (holds and not hin.releases[0])
        rel.append(bool(hin.releases[0]))
    # 1.0 s switching in, the eager human takes control at once (step 10), then 2.0 s of
    # intervention before its hand-back (wanted 0.3 s in) is let through
    assert rel.index(True) == 30


def test_equal_worlds_do_not_take_a_human_back_and_forth():
    """Two worlds requesting since the same step rank equal under fifo: the human stays
    where they went (a move would cost a context switch for a coin toss)."""
    f, _ = fleet(2, num_humans=1, context_switch_time=0.5, min_intervention_time=0.0)
    where = []
    for k in range(40):
        f.act(None, {}, None, views(2, [1, 1], k * DT, elapsed=[k * DT, k * DT]))
        where.append(int(f.h_world[0]))
    assert len(set(where)) == 1 and f.stats().preemptions == 0
    # a world the policy does prefer (waiting longer) takes the human once allowed
    f.act(None, {}, None, views(2, [1, 1], 4.0, elapsed=[4.0, 9.0] if where[0] == 0
                                else [9.0, 4.0]))
    assert f.stats().preemptions == 1 and int(f.h_world[0]) != where[0]


@pytest.mark.parametrize("name,kwargs,scores,phase,best", [
    ("risk", {}, {"q_risk": np.array([0.1, 0.9, 0.5])}, [1, 1, 1], 1),
    ("uncertainty", {}, {"entropy": np.array([0.7, 0.1, 0.2])}, [1, 1, 1], 0),
    ("constraint", {}, {}, [1, 3, 1], 1),
    ("cur", {"order": "CRU"}, {"q_risk": np.array([0.9, 0.1, 0.2]),
                               "entropy": np.zeros(3)}, [1, 1, 3], 2),
    ("fifo", {}, {}, [1, 1, 1], 2),
])
def test_policies_rank_the_waiting_worlds_as_documented(name, kwargs, scores, phase, best):
    ph = np.array(phase)
    st = FleetState(waiting=np.ones(3, bool), constraint=ph == 3,
                    waited=np.array([0.5, 1.0, 2.0]), urgency=np.zeros(3), scores=scores,
                    last_served=np.full(3, -np.inf), rng=np.random.default_rng(0))
    assert rank(ALLOCATIONS.make(name, **kwargs), st)[0] == best


def test_round_robin_serves_every_waiting_world_in_turn():
    f, inner = fleet(3, num_humans=1, allocation="round_robin", hold=0.5)
    served, prev = [], np.zeros(3, bool)
    for k in range(40):
        hin = f.act(None, {}, None, views(3, np.where(prev, 2, 1), k * DT))
        prev = hin.wants_control
        served += [int(i) for i in np.flatnonzero(hin.has_action)]
    order = [w for k, w in enumerate(served) if k == 0 or served[k - 1] != w]
    assert sorted(order[:3]) == [0, 1, 2] and len(order) >= 4  # each once before any twice


COLLISION_0 = {"collision": np.array([True, False]), "offroad": np.array([False, False]),
               "reason": np.array(["collision", ""], dtype=object)}
TIME_LIMIT_0 = {"collision": np.array([False, False]), "offroad": np.array([False, False]),
                "reason": np.array(["time_limit", ""], dtype=object)}


def test_a_collision_costs_the_human_the_hard_reset_time_and_the_world_its_service():
    f, _ = fleet(2, num_humans=1, hard_reset_time=1.0)
    f.act(None, {}, None, views(2, [1, 0], 0.0))
    assert f.w_human[0] == 0
    f.end_episodes(np.array([0]), COLLISION_0)
    f.reset(np.array([0]), [None])
    # world 1 requests now: the human is busy recovering world 0 for 1.0 s (10 steps)
    got = [f.act(None, {}, None, views(2, [0, 1], (k + 1) * DT)).has_action[1]
           for k in range(13)]
    assert got.index(True) == 10
    # world 0's episode that began while it was out of service counts for nothing
    f.end_episodes(np.array([0]), TIME_LIMIT_0)
    s = f.stats()
    assert (s.failures, s.hard_resets, s.failures_waiting) == (1, 1, 0)
    assert (s.episodes, s.arrivals, s.lost_episodes) == (1, 0, 1)


def test_an_unattended_wreck_waits_for_a_human_like_a_stopped_world():
    f, _ = fleet(2, num_humans=1, hard_reset_time=0.5, allocation="constraint")
    f.act(None, {}, None, views(2, [0, 0], 0.0))
    f.end_episodes(np.array([0]), COLLISION_0)  # nobody was there
    f.reset(np.array([0]), [None])
    assert f.w_blocked[0] and f.w_human[0] == -1
    # world 1 requests too; the constraint policy sends the human to the wreck first
    hin = f.act(None, {}, None, views(2, [0, 1], 0.1))
    assert f.w_human[0] == 0 and not hin.has_action.any()
    got = [f.act(None, {}, None, views(2, [0, 1], 0.2 + k * DT)).has_action[1]
           for k in range(8)]
    assert got.index(True) == 4  # 0.5 s of recovery from t = 0.1, then world 1
    assert not f.w_blocked[0]


@pytest.mark.parametrize("allocation", ["risk", "thrifty"])
def test_risk_priorities_send_the_human_to_a_live_request_before_a_wreck(allocation):
    """A wreck's failure already happened: no human can prevent it now, so risk and
    uncertainty rank it last (the C key of 'constraint' and 'cur' still puts it first).
    Ranked as maximal risk, wrecks took the human first and, on development seeds (5000,
    N = 10, H = 2, 3 x 120 s), kept them recovering 92% of the time (fifo: 53-66%)."""
    f, _ = fleet(2, num_humans=1, hard_reset_time=0.5, allocation=allocation)
    f.act(None, {}, None, views(2, [0, 0], 0.0))
    f.end_episodes(np.array([0]), COLLISION_0)  # nobody was there
    f.reset(np.array([0]), [None])
    f.observe_scores({"q_risk": np.array([0.1, 0.9]), "entropy": np.array([0.1, 0.9])})
    f.act(None, {}, None, views(2, [0, 1], 0.1))
    assert f.w_human[1] == 0 and f.w_human[0] == -1 and f.w_blocked[0]


def test_unknown_policy_and_bad_order_are_refused_with_the_fix():
    with pytest.raises(Exception, match="allocation"):
        FleetConfig(allocation="fifoo")
    with pytest.raises(ValueError, match="letters C"):
        ALLOCATIONS.make("cur", order="CXR")
    st = FleetState(np.ones(2, bool), np.zeros(2, bool), np.zeros(2), np.zeros(2), {},
                    np.zeros(2), np.random.default_rng(0))
    with pytest.raises(KeyError, match="estimators"):
        rank(ALLOCATIONS.make("risk"), st)


def test_a_pinned_human_goes_only_where_placed_and_displaces_a_sent_one():
    f, _ = fleet(3, num_humans=2, context_switch_time=1.0, min_intervention_time=5.0)
    f.pin(0)
    f.act(None, {}, None, views(3, [1, 1, 0], 0.0, elapsed=[1.0, 0.5, 0.0]))
    # fifo sends human 1 to the longer waiting world 0; the person watches the overview
    assert f.h_world.tolist() == [-1, 0]
    f.place(0, 1)
    hin = f.act(None, {}, None, views(3, [1, 1, 0], DT))
    # no modelled context switch for the person: they answer at once
    assert f.h_world.tolist() == [1, 0] and hin.has_action[1] and not hin.has_action[0]
    f.place(0, 0)  # into the world human 1 serves: human 1 is freed, goes to world 1
    hin = f.act(None, {}, None, views(3, [2, 1, 0], 2 * DT))
    assert f.h_world.tolist() == [0, 1] and hin.has_action[0]
    # the person's hand-back is never held off by the minimum intervention time, and a
    # world they leave while driving is handed back to its agent
    f.release_next(0)
    f.place(0, -1)
    hin = f.act(None, {}, None, views(3, [2, 1, 0], 3 * DT))
    assert hin.releases[0] and not hin.wants_control[0] and f.h_world[0] == -1
    with pytest.raises(ValueError, match="pin"):
        f.place(1, 2)


def test_rohe_counts_human_effort_in_seconds_not_control_steps():
    """Fleet-DAgger's ROHE, (H/N) successes / (1 + human effort): the same 1 s intervention
    at 10 Hz and at 40 Hz gives the same ROHE (a step-count denominator would differ 4x)."""
    arrived = {"outcome": np.array(["arrived", "arrived"], dtype=object)}
    out = {}
    for dt in (0.1, 0.025):
        f = FleetHumans(Eager(2, hold=1.0), 2, dt=dt, num_humans=1, context_switch_time=0.0,
                        min_intervention_time=0.0, allocation="fifo")
        held = False
        for k in range(round(2.0 / dt)):
            hin = f.act(None, {}, None, views(2, [2 if held else (1 if k == 0 else 0), 0],
                                              k * dt))
            held = bool(hin.wants_control[0])
        f.end_episodes(np.array([0, 1]), arrived)
        s = f.stats()
        assert s.arrivals == 2 and 1.0 <= s.human_busy <= 1.0 + 2 * dt
        assert s.human_effort == s.human_busy  # nothing left to recover
        out[dt] = cell_summary(s)["rohe"]
        assert out[dt] == pytest.approx(1 / 2 * 2 / (1.0 + s.human_busy))
    assert out[0.1] == pytest.approx(out[0.025], rel=0.1)


def test_fleet_and_single_supervisor_share_one_recovery_rule():
    from takeover.experiments import metric_definitions as md
    from takeover.supervisor import fleet

    assert fleet.RECOVERY_OUTCOMES == md.RECOVERY_OUTCOMES
    assert "arrived" not in md.RECOVERY_OUTCOMES and "timeout" not in md.RECOVERY_OUTCOMES


@pytest.mark.parametrize("outcome, blocked", [
    ("collision", True), ("off_road", True), ("pulled_over", True), ("stopped_in_lane", True),
    ("stopped", True), ("timeout", False), ("arrived", False)])
def test_a_car_left_at_rest_needs_a_recovery_and_an_unrecovered_one_is_owed(outcome, blocked):
    """An MRM stop is no free way out: it takes the world out of service like a wreck, and a
    recovery nobody has started when the run ends is still charged (switch + reset)."""
    f = FleetHumans(Eager(2), 2, dt=DT, num_humans=1, context_switch_time=2.0,
                    hard_reset_time=10.0, allocation="fifo")
    f.act(None, {}, None, views(2, [0, 0], 0.0))
    f.end_episodes(np.array([0]), {"outcome": np.array([outcome, ""], dtype=object)})
    assert bool(f.w_blocked[0]) == blocked
    s = f.stats()
    assert s.owed == pytest.approx(12.0 if blocked else 0.0)
    assert s.human_effort == pytest.approx(s.human_busy + s.owed)
    assert s.arrivals == (outcome == "arrived")


# --- on the engine ----------------------------------------------------------------------
class Idle:
    """Keeps lane and speed in every world (fails the hazards: requests are needed)."""

    def act_arrays(self, obs):
        return AgentOutputs(action=np.zeros(len(obs), dtype=np.int64))


def run(n, humans, seeds):
    from takeover.envs.vector import make_vector_env
    from takeover.supervisor.engine import Engine
    from takeover.supervisor.estimators import TTCOracle
    from takeover.supervisor.gates import GATES

    env = make_vector_env("takeover/Highway-v2", n, action_type="discrete", duration=12.0)
    eng = Engine(env, Idle(), {"ttc": TTCOracle()}, GATES.make("threshold", high=0.5, low=0.3),
                 humans, gate_score="ttc")
    return eng.run(seeds)


def scripted(n):
    from takeover.supervisor.engine import PerWorldHumans
    from takeover.supervisor.humans import ScriptedHuman

    return PerWorldHumans([ScriptedHuman("average") for _ in range(n)])


def test_a_human_per_world_without_costs_is_the_per_world_humans_unchanged():
    seeds = list(range(6))
    alone = run(3, scripted(3), seeds)
    f = FleetHumans(scripted(3), 3, num_humans=3, context_switch_time=0.0,
                    min_intervention_time=0.0, preempt=False, hard_reset_time=0.0)
    fl = run(3, f, seeds)
    for a, b in zip(alone, fl):
        assert [r.controller for r in a.records] == [r.controller for r in b.records]
        assert np.array_equal(np.stack([r.action for r in a.records]),
                              np.stack([r.action for r in b.records]))
    assert any(r.controller == "human" for e in fl for r in e.records)  # it was exercised


def test_fewer_humans_make_worlds_wait_longer():
    seeds = list(range(8))
    res = {}
    for h in (8, 1):
        f = FleetHumans(scripted(8), 8, num_humans=h, allocation="fifo",
                        context_switch_time=0.0, hard_reset_time=0.0)
        run(8, f, seeds)
        res[h] = f.stats().summary()
    # a human per world and no switch or reset cost: nobody waits; one human for 8 worlds:
    # measured on the v1 world 0.675 s mean wait, 0.96 worlds waiting on average (seeds 0-7;
    # 1.29 s and 3.2 on v0, whose longer episodes kept more worlds requesting), asserted
    # with half that as margin
    assert res[8]["waits"] == 0 and res[8]["worlds_waiting_mean"] == 0.0
    assert res[1]["wait_mean_s"] > 0.33
    assert res[1]["worlds_waiting_mean"] > 0.48
    assert res[1]["human_idle_fraction"] < res[8]["human_idle_fraction"]


# --- the command --------------------------------------------------------------------------
def test_takeover_run_fleet_writes_the_curves(tmp_path):
    from typer.testing import CliRunner

    from takeover.cli import app

    out = tmp_path / "fleet"
    res = CliRunner().invoke(app, [
        "run", "fleet", "sweep.worlds=[2,4]", "sweep.reps=2", "sweep.seconds=6",
        "sweep.allocations=[random,constraint]", "env.duration=4.0", "seed=0", "--out",
        str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    import json

    m = json.loads((out / "fleet.json").read_text())
    assert len(m["cells"]) == 2 * 2 * 2
    assert set(m["curves"]) == {"random", "constraint"}
    assert {"rohe", "wait_mean_s", "throughput_per_hour"} <= set(m["curves"]["random"]["4"])
    # every run lasted the fleet clock asked for (6 s = 60 steps of 0.1 s)
    assert all(c["hours"] * 3600 == pytest.approx(6.0) for c in m["cells"])
    assert set(m["paired"]["4"]) == {"constraint-random"}  # no round_robin was run
    assert (out / "fleet.png").exists() and (out / "report.md").exists()
    bad = CliRunner().invoke(app, ["run", "fleet", "sweep.allocations=[fifoo]", "--out",
                                   str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "fifo" in bad.output
