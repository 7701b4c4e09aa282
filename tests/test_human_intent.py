"""The human's intent as a logged label (issue 17): a scripted human's wanted acceleration and
lane come with every action it gives, are consistent with that action, flow through the
supervision engine into the log and back out of ``read_episodes``; humans without intent
(keyboard-like) and logs older than the column read as "no label"."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from test_logio import meta
from test_loop import _engine

from takeover.agents.learners.base import read_episodes
from takeover.envs import layout as L
from takeover.envs.vector import make_vector_env
from takeover.logio import LogWriter, LogWriterV1, read_columns, read_log
from takeover.supervisor.gates import GATES
from takeover.supervisor.humans import ScriptedHumans
from takeover.supervisor.humans.batched import S_SIGNAL_LANE
from takeover.supervisor.humans.driving import meta_action
from takeover.types import PHASES, HumanViews, Phase

HUMAN_CODE = PHASES.index(Phase.HUMAN)
NOISELESS = {"wrong_action_prob": 0.0, "steer_noise": 0.0, "accel_noise": 0.0}


def _lane(y: float, p: np.ndarray) -> float:
    """The ego's lane as the humans count it (0 leftmost; the shoulder is ``N_LANES``)."""
    return min(max(math.floor(y / p[L.LANE_W] + 0.5), 0.0), p[L.N_LANES])


def _drive(action_type: str, skill: str = "average", steps: int = 300, n: int = 8):
    """Noise-free humans in control from the first step of dense stalled-car worlds (lane
    changes, and standing behind the obstacle signalling for a gap); per step the world
    state the humans read, their inputs and their signal lanes."""
    venv = make_vector_env("takeover/StalledCar-v2", n, action_type=action_type, vehicles=40)
    humans = ScriptedHumans(n, skill, **NOISELESS)
    seeds = list(range(n))
    obs, info = venv.reset(seed=seeds)
    humans.reset(np.arange(n), seeds)
    trace = []
    for k in range(steps):
        views = HumanViews(np.full(n, HUMAN_CODE, np.int8), np.zeros(n, bool), np.zeros(n),
                           np.zeros(n), info["time"])
        veh, wld = venv.vehicles.copy(), venv.world.copy()
        out = humans.act(obs, info, venv, views)
        trace.append((veh, wld, out, humans.state[:, S_SIGNAL_LANE].copy()))
        obs, _, term, trunc, info = venv.step(out.action)
        done = np.flatnonzero(term | trunc)
        if len(done):  # what the engine does for a new episode
            humans.reset(done, [1000 + k * n + int(i) for i in done])
    return venv.config.params(), humans, trace


def test_discrete_actions_are_what_the_intent_asks_for():
    """The meta-action is exactly what ``meta_action`` makes of the intent alone (so a
    learner of the intent loses nothing); the lane column says left / right where the
    action changes lane; standing still signalling for a gap, the human wants to hold (its
    driving would creep forward there: measured on these 32 worlds, 34 of 420 such steps;
    with 8 worlds or average humans, none)."""
    p, humans, trace = _drive("discrete", "expert", steps=400, n=32)
    seen = {L.LANE_LEFT: 0, L.LANE_RIGHT: 0, "hold": 0}
    for veh, wld, out, signal in trace:
        assert out.has_action.all() and out.intent.dtype == np.float32
        assert out.intent.shape == (len(out.action), 2) and np.isfinite(out.intent).all()
        for i, (acc, dlane) in enumerate(out.intent.tolist()):
            lane = _lane(veh[i, 0, L.Y], p)
            a = int(out.action[i])
            assert a == meta_action(veh[i], wld[i], p, humans._hp, acc, lane + dlane, math.nan)
            if wld[i, L.TGT_LANE] == lane and dlane in (-1.0, 1.0):
                assert a == (L.LANE_LEFT if dlane < 0 else L.LANE_RIGHT)
                seen[a] += 1
            if a in (L.LANE_LEFT, L.LANE_RIGHT):
                assert dlane == (-1.0 if a == L.LANE_LEFT else 1.0)
            if veh[i, 0, L.V] < 0.5 and not math.isnan(signal[i]):
                assert acc <= 0.0 and dlane == signal[i] - lane
                seen["hold"] += 1
    assert min(seen.values()) > 0, seen  # every case was exercised


def test_continuous_intent_is_the_actions_acceleration_and_the_lane_it_steers_to():
    """Without motor noise the action's acceleration (scaled by accel_max above 0, by
    brake_max below) is the intent's; every lane the ego ends up in was wanted first."""
    p, _, trace = _drive("continuous")
    changes = 0
    for k, (veh, _, out, _) in enumerate(trace):
        a1 = out.action[:, 1].astype(np.float64)
        acc = a1 * np.where(a1 > 0, p[L.ACC_MAX], p[L.BRAKE_MAX])
        np.testing.assert_allclose(out.intent[:, 0], acc, rtol=1e-6, atol=1e-6)
        if k + 1 < len(trace):
            nxt = trace[k + 1][0]
            for i in range(len(a1)):
                lane, lane_next = _lane(veh[i, 0, L.Y], p), _lane(nxt[i, 0, L.Y], p)
                if abs(nxt[i, 0, L.X] - veh[i, 0, L.X]) < 10.0 and lane_next != lane:
                    assert out.intent[i, 1] == lane_next - lane  # (not a new episode)
                    changes += 1
    assert changes >= 5  # measured: 10


def test_no_action_no_intent():
    venv = make_vector_env("takeover/Plain-v2", 3)
    obs, info = venv.reset(seed=[0, 1, 2])
    humans = ScriptedHumans(3, "average")
    humans.reset(np.arange(3), [0, 1, 2])
    phase = np.array([0, HUMAN_CODE, 0], np.int8)
    out = humans.act(obs, info, venv, HumanViews(phase, np.zeros(3, bool), np.zeros(3),
                                                  np.zeros(3), info["time"]))
    assert out.has_action.tolist() == [False, True, False]
    assert np.isnan(out.intent[[0, 2]]).all() and np.isfinite(out.intent[1]).all()


class Recording:
    """Batched humans whose every answer is kept (what the log should hold)."""

    def __init__(self, humans):
        self.humans, self.answers = humans, []

    def reset(self, worlds, seeds):
        self.humans.reset(worlds, seeds)

    def act(self, obs, info, world, views):
        out = self.humans.act(obs, info, world, views)
        self.answers.append(out)
        return out


def _write(run, episodes):
    with LogWriter(run, meta()) as log:
        log.write_episodes([(e.name.replace("/", "-"), e.chunk) for e in episodes])


def test_an_engine_episode_logs_the_intent_read_episodes_returns(tmp_path):
    """One episode per world, so world i's step k is the humans' k-th answer, row i."""
    seeds = [3, 4, 5]
    humans = Recording(ScriptedHumans(len(seeds), "average", lapse_prob=0.0, **NOISELESS))
    eng = _engine(len(seeds), scenario="stalled_car", humans=humans,
                  gate=GATES.make("threshold", high=0.3, low=0.2))
    cfg = eng.worlds.venv.config
    _write(tmp_path / "run", eng.run(seeds))
    episodes = read_episodes(tmp_path / "run")
    assert len(episodes) == len(seeds)
    labelled = 0
    for i, steps in enumerate(episodes):
        for s in steps:
            answer = humans.answers[s.step]
            assert (s.human_intent is not None) == (s.human_action is not None)
            if s.human_intent is None:
                continue
            labelled += s.controller == "human"
            assert s.human_intent.dtype == np.float32
            assert s.human_intent.tobytes() == answer.intent[i].tobytes()
            a1 = float(s.human_action[1])
            scale = cfg.accel_max if a1 > 0 else cfg.brake_max
            assert s.human_intent[0] == pytest.approx(a1 * scale, abs=1e-5)
    assert labelled >= 20  # the humans took over and drove (measured: 137 steps)


def test_humans_without_intent_log_none(tmp_path):
    """Per-world humans without a model of intent (keyboard, gamepad, the engine's default
    per-world IDMHuman here) give actions and no intent: the log holds their actions and no
    label."""
    _write(tmp_path / "run", _engine(2).run([10, 11]))
    steps = [s for ep in read_episodes(tmp_path / "run") for s in ep]
    assert any(s.human_action is not None for s in steps)
    assert all(s.human_intent is None for s in steps)
    cols = read_columns(tmp_path / "run")
    assert not cols["has_human_intent"].any() and np.isnan(cols["human_intent"]).all()


def test_a_log_older_than_the_column_still_reads(tmp_path):
    """An episode written without the intent columns (as before they existed; here its
    chunk minus them) next to one with them: both read, the old one with no labels; a
    schema-1.0 log too."""
    humans = ScriptedHumans(2, "average", lapse_prob=0.0)
    eps = _engine(2, scenario="stalled_car", humans=humans).run([3, 4])
    new, old = eps
    assert new.chunk.cols["human_intent?"].any() and old.chunk.cols["human_intent?"].any()
    stripped = {k: v for k, v in old.chunk.cols.items()
                if k not in ("human_intent", "human_intent?")}
    with LogWriter(tmp_path / "run", meta()) as log:
        log.write_episodes([("new", new.chunk)])
        log.write_chunk("old", dataclasses.replace(old.chunk, cols=stripped))
        log.end_episode("old")
    res = read_log(tmp_path / "run")
    assert res.status == "ok" and set(res.episodes) == {"new", "old"}
    assert all(r.human_intent is None for r in res.episodes["old"])
    assert [r.human_action is not None for r in res.episodes["old"]] == [
        r.human_action is not None for r in old.records]
    by_ep = read_columns(tmp_path / "run", by_episode=True)
    assert not by_ep["old"]["has_human_intent"].any()
    assert by_ep["old"]["human_intent"].shape == (len(old.records), 2)
    assert np.isnan(by_ep["old"]["human_intent"]).all()
    assert by_ep["new"]["has_human_intent"].any()
    cols = read_columns(tmp_path / "run")  # one array over both
    assert cols["has_human_intent"].sum() == by_ep["new"]["has_human_intent"].sum()
    steps = {ep[0].episode: ep for ep in read_episodes(tmp_path / "run")}
    assert all(s.human_intent is None for s in steps["old"])
    assert any(s.human_intent is not None for s in steps["new"])

    with LogWriterV1(tmp_path / "v1", meta()) as log:
        for r in old.records:
            log.write(dataclasses.replace(r, episode="v1"))
        log.end_episode()
    (v1,) = read_episodes(tmp_path / "v1")
    assert len(v1) == len(old.records) and all(s.human_intent is None for s in v1)


def test_a_fleet_logs_intent_only_where_it_lets_the_action_through():
    """Two worlds ask, one human is free: the fleet passes the inner humans' intent row of
    the world it serves, and NaN for the one it withholds (a label without an action would
    teach what nobody did)."""
    from takeover.supervisor.fleet import FleetHumans

    venv = make_vector_env("takeover/Plain-v2", 3)
    obs, info = venv.reset(seed=[0, 1, 2])
    inner = Recording(ScriptedHumans(3, "average"))
    fleet = FleetHumans(inner, 3, dt=0.1, num_humans=1, context_switch_time=0.0,
                        min_intervention_time=0.0, allocation="fifo")
    fleet.reset(np.arange(3), [0, 1, 2])
    asking = np.array([True, False, True])
    control = np.zeros(3, bool)
    request = PHASES.index(Phase.TOR)
    served_steps = 0
    for t in range(60):  # worlds 0 and 2 request a takeover; whoever takes it drives
        phase = np.where(control, HUMAN_CODE, np.where(asking, request, 0)).astype(np.int8)
        out = fleet.act(obs, info, venv, HumanViews(phase, asking & ~control, np.zeros(3),
                                                     np.zeros(3), np.full(3, 0.1 * t)))
        served = out.has_action
        assert served.sum() <= 1  # one human
        assert np.isfinite(out.intent[served]).all() and np.isnan(out.intent[~served]).all()
        assert out.intent[served].tobytes() == inner.answers[-1].intent[served].tobytes()
        served_steps += int(served.sum())
        control |= out.wants_control
    assert served_steps >= 10  # the human took one world over and drove it


def test_a_per_world_scripted_human_gives_its_batched_models_intent():
    import gymnasium as gym

    from takeover.supervisor.humans import ScriptedHuman
    from takeover.types import HumanView

    env = gym.make("takeover/Plain-v2")
    obs, info = env.reset(seed=4)
    human = ScriptedHuman("average", seed=4)
    human.reset(seed=4)
    got = human.act(obs, info, env, HumanView(Phase.HUMAN, False, 0.0, 0.0, 0.0))
    assert got.action is not None
    assert got.intent is not None and got.intent.shape == (2,) and np.isfinite(got.intent).all()
