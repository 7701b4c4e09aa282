"""The live keyboard path, headless: pygame key events posted into ``takeover drive``'s loop,
the frame-rate-independent KeyState, and bit-identical replay of a recorded drive."""

from __future__ import annotations

import numpy as np
import pygame
import pytest

from takeover.commands.drive import DriveOptions, make_agent, run_drive
from takeover.supervisor.keyboard import KeyEvent, KeyHuman, KeyState
from takeover.supervisor.replay import ReplayHuman, load_events, save_events
from takeover.types import HumanView, Phase


def _script(plan: dict[int, list[tuple[int, int]]]):
    """``{frame: [(KEYDOWN|KEYUP, key), ...]}`` -> a before_frame hook posting them."""

    def hook(frame: int) -> None:
        for kind, key in plan.get(frame, []):
            pygame.event.post(pygame.event.Event(kind, key=key, mod=0, unicode="",
                                                 scancode=0))

    return hook


def _opts(tmp_path, plan, **kw) -> DriveOptions:
    base = dict(scenario="Plain-v1", agent="idm", gate="never", seed=3, fixed_clock=True,
                max_frames=240, sound=False, before_frame=_script(plan),
                log=tmp_path / "log", record=tmp_path / "keys.json")
    base.update(kw)
    return DriveOptions(**base)


D, U = pygame.KEYDOWN, pygame.KEYUP


@pytest.mark.parametrize("fps", [15, 30, 60])
def test_keystate_holding_one_simulated_second_is_frame_rate_independent(fps):
    ref = KeyState()
    ref.update({"right", "up"}, 1.0)
    st = KeyState()
    for _ in range(fps):
        st.update({"right", "up"}, 1.0 / fps)
    assert st.steer == pytest.approx(ref.steer, abs=1e-9) and st.steer == pytest.approx(0.8)
    assert st.throttle == pytest.approx(ref.throttle, abs=1e-9)
    for _ in range(fps):  # released: self-centring at its own per-second rate
        st.update(set(), 1.0 / fps)
    assert st.steer == pytest.approx(0.0, abs=1e-9)


def test_cancelling_keys_still_count_as_input():
    human = KeyHuman([KeyEvent(0.0, "right", True), KeyEvent(0.0, "down", True)])
    human.reset()
    view = HumanView(Phase.TOR, True, 0.0, 0.5, 0.0)
    out = human.act(np.zeros((9, 7)), {}, None, view)
    assert out.action is not None  # steer 0 + brake 0 at t=0: still an input
    out = human.act(np.zeros((9, 7)), {}, None, HumanView(Phase.TOR, True, 0.1, 0.5, 0.1))
    assert out.action[0] > 0 and out.action[1] < 0
    idle = KeyHuman()
    idle.reset()
    assert idle.act(np.zeros((9, 7)), {}, None, view).action is None


def test_takeover_drive_and_hand_back(tmp_path):
    from takeover.logio import read_log

    plan = {10: [(D, pygame.K_SPACE)], 11: [(U, pygame.K_SPACE)],
            30: [(D, pygame.K_RIGHT), (D, pygame.K_UP)], 60: [(U, pygame.K_RIGHT)],
            90: [(U, pygame.K_UP)], 120: [(D, pygame.K_r)], 121: [(U, pygame.K_r)]}
    res = run_drive(_opts(tmp_path, plan))
    recs = res.records
    phases = [r.phase for r in recs]
    assert "human" in phases
    first = phases.index("human")
    assert recs[first].transition == "human_initiated"
    human_recs = [r for r in recs if r.controller == "human"]
    assert human_recs, "held arrows produced no human actions"
    steer = [r.human_action[0] for r in human_recs]
    assert max(steer) > 0.3  # steering built up at its per-second rate
    assert all(r.action is not None and np.array_equal(r.action, r.human_action)
               for r in human_recs)
    # hand back: the agent drives again and the human gives no input
    assert phases[-1] == "agent" and "human_release" in {r.transition for r in recs}
    assert recs[-1].human_action is None and recs[-1].controller == "agent"
    # the episode ended at max_frames as a user quit, flushed to the log
    assert recs[-1].truncated and recs[-1].reason == "user_quit"
    log = read_log(tmp_path / "log")
    (ep,) = log.episodes.values()
    assert len(ep) == len(recs) and ep[-1].reason == "user_quit"
    assert [r.controller for r in ep] == [r.controller for r in recs]
    assert (tmp_path / "log" / "input_latency.json").exists()
    assert all(0 <= x < 1000 for x in res.latencies_ms) and res.latencies_ms


def test_escape_ends_the_episode_as_user_quit(tmp_path):
    from takeover.logio import read_log

    res = run_drive(_opts(tmp_path, {25: [(D, pygame.K_ESCAPE)]}, max_frames=None))
    assert res.reason == "user_quit" and res.frames == 25
    assert res.records[-1].truncated and res.records[-1].reason == "user_quit"
    assert read_log(tmp_path / "log").ok


def test_window_close_is_a_user_quit(tmp_path):
    def hook(frame):
        if frame == 12:
            pygame.event.post(pygame.event.Event(pygame.QUIT))

    res = run_drive(_opts(tmp_path, {}, before_frame=hook, max_frames=None, log=None))
    assert res.reason == "user_quit" and res.records[-1].reason == "user_quit"


def test_discrete_arrow_press_is_one_meta_action(tmp_path):
    plan = {20: [(D, pygame.K_UP)], 40: [(U, pygame.K_UP)]}
    res = run_drive(_opts(tmp_path, plan, action_type="discrete", max_frames=80))
    given = [r.human_action for r in res.records if r.human_action is not None]
    assert [a.tolist() for a in given] == [[1.0]]  # "faster", once per press
    assert sum(r.controller == "human" for r in res.records) == 1


def test_recorded_drive_replays_bit_identically(tmp_path):
    import gymnasium as gym

    from takeover.supervisor.estimators import make_estimators
    from takeover.supervisor.gates import GATES
    from takeover.supervisor.handover import HandoverConfig
    from takeover.supervisor.loop import Supervisor

    plan = {5: [(D, pygame.K_t)], 6: [(U, pygame.K_t)], 13: [(D, pygame.K_LEFT)],
            17: [(D, pygame.K_DOWN)], 47: [(U, pygame.K_LEFT)], 71: [(U, pygame.K_DOWN)],
            100: [(D, pygame.K_RIGHT)], 133: [(U, pygame.K_RIGHT)]}
    live = run_drive(_opts(tmp_path, plan, scenario="CutIn-v1", gate="threshold",
                           max_frames=200))
    events, meta = load_events(tmp_path / "keys.json")
    assert events == live.events and meta["seed"] == 3
    save_events(tmp_path / "again.json", events)
    assert load_events(tmp_path / "again.json")[0] == events
    env = gym.make("takeover/CutIn-v1")
    sup = Supervisor(env, make_agent("idm", env), make_estimators(["ttc"]),
                     GATES.make("threshold"), ReplayHuman(events), gate_score="ttc",
                     handover=HandoverConfig(human_initiative=True))
    sup.reset(3)
    replayed = [sup.step() for _ in range(len(live.records)) if not sup.done]
    assert any(r.controller == "human" for r in live.records)
    for a, b in zip(live.records, replayed, strict=True):
        assert a.obs.tobytes() == b.obs.tobytes() and a.action.tobytes() == b.action.tobytes()
        assert a.controller == b.controller and a.phase == b.phase


def test_bad_replay_file_is_refused(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="--record"):
        load_events(p)


def test_drive_benchmark_reports_frame_time_percentiles():
    from takeover.experiments.benchmarks.drive import main

    out = main(frames=40, agent="idm")
    assert out["frames"] == 40 and out["p50_ms"] > 0 and out["p99_ms"] >= out["p50_ms"]


def test_default_action_type_follows_the_agent():
    """`takeover drive` with no options must build the env the shipped (discrete) novice
    was trained on, and the IDM stand-in drives the default continuous env."""
    from takeover.commands.drive import DriveOptions, _action_type

    assert _action_type(DriveOptions(agent="novice")) == "discrete"
    assert _action_type(DriveOptions(agent="idm")) == "continuous"
    assert _action_type(DriveOptions(agent="novice", action_type="continuous")) == "continuous"
