"""The live session, headless: pygame key events posted into the loop (``SDL_VIDEODRIVER=dummy``,
a fixed clock). Control belongs to whoever holds it, the request's countdown and withdrawal,
start / pause / end screens, and exact replay of a recording."""

from __future__ import annotations

import math

import numpy as np
import pygame
import pytest

from takeover.config import ConfigError
from takeover.logio import read_log, records_equal
from takeover.supervisor.gates import GATES, BaseGate, GateDecision
from takeover.supervisor.keyboard import KeyEvent
from takeover.supervisor.live import (
    LiveSession,
    LiveSettings,
    LiveSupervisor,
    LoopOptions,
    comparable,
    env_id,
    merge_settings,
    replay,
)
from takeover.supervisor.replay import (
    EpisodeRecording,
    Recording,
    RecordingError,
    ReplayHuman,
    load_recording,
)

D, U = pygame.KEYDOWN, pygame.KEYUP


class StepGate(BaseGate):
    """A gate scripted by the episode's step index: ``request(k)`` / ``release(k)`` say what
    it decides on step ``k`` of each world's episode (the batched Gate API: per-world step
    counters sized by ``bind``, cleared by ``reset``)."""

    name = "test_step"

    def bind(self, n: int) -> None:
        self.k = np.full(n, -1, dtype=np.int64)
        super().bind(n)

    def reset(self, worlds, seeds) -> None:
        self.k[worlds] = -1

    def request(self, k: np.ndarray) -> np.ndarray:
        return np.zeros(len(k), dtype=bool)

    def release(self, k: np.ndarray) -> np.ndarray:
        return ~self.request(k)

    def decide(self, score, ctx):
        self.k += 1
        return GateDecision(self.request(self.k), np.full(self.n, 0.5), self.release(self.k))


@GATES.register("test_pulse")
class PulseGate(StepGate):
    """Requests on steps 3..7 of an episode, then never again (the risk clears)."""

    name = "test_pulse"

    def request(self, k):
        return (3 <= k) & (k <= 7)


def _post(plan):
    """``{frame: [(KEYDOWN|KEYUP, key), ...]}`` -> a before_frame hook posting them."""

    def hook(frame: int) -> None:
        for kind, key in plan.get(frame, []):
            pygame.event.post(pygame.event.Event(kind, key=key, mod=0, unicode="", scancode=0))

    return hook


def _tap(frame, key):
    return {frame: [(D, key)], frame + 1: [(U, key)]}


def _plan(*parts):
    out: dict = {}
    for p in parts:
        for f, evs in p.items():
            out.setdefault(f, []).extend(evs)
    return out


def _session(tmp_path, plan, *, settings=None, seed=3, max_frames=400, fps=60.0, **loop):
    s = settings or LiveSettings(scenario="Plain-v2", agent="idm", gate="never")
    opts = LoopOptions(fps=fps, fixed_clock=True, sound=False, before_frame=_post(plan),
                       max_frames=max_frames, **{"start_screen": False, "end_screen": False,
                                                 **loop})
    return LiveSession(s, seed, opts, log=tmp_path / "log", record=tmp_path / "rec.json",
                       max_episodes=loop.pop("max_episodes", None))


def test_takeover_holds_control_with_no_key_until_r(tmp_path):
    """SPACE takes over; with no key pressed the person's standing command drives (never
    the agent) even where the gate would release; only R hands back."""
    s = LiveSettings(scenario="CutIn-v2", agent="idm", gate="threshold", estimator="ttc")
    plan = _plan(_tap(12, pygame.K_SPACE), _tap(300, pygame.K_r))
    ep = _session(tmp_path, plan, settings=s, max_frames=360).run().episodes[0]
    trans = [(r.step, r.transition) for r in ep.records if r.transition]
    take = next(k for k, t in trans if "human_initiated" in t)
    back = next(k for k, t in trans if "human_release" in t)
    held = ep.records[take:back]
    assert len(held) > 30  # 288 frames at 60 fps / 10 Hz: about 48 steps
    assert all(r.controller == "human" and r.human_action is not None for r in held)
    assert all(r.phase == "human" for r in held)
    assert not any("gate_release" in t for _, t in trans)
    # the standing command: no key held -> wheel centred, pedals released
    assert all(np.array_equal(r.action, [0.0, 0.0]) for r in held)
    assert ep.records[back].controller == "agent" and ep.records[-1].phase == "agent"


def test_gate_release_policy_hands_back_without_r():
    """release='gate' is the configurable opposite: the gate may hand back on its own."""

    class Risky(StepGate):
        """Asks for the person on steps 0..19 while also 'allowing' release throughout (a
        contradictory gate: the request wins)."""

        name = "x"

        def request(self, k):
            return k < 20

        def release(self, k):
            return np.ones(len(k), dtype=bool)

    GATES.register("test_release_after_20", lambda: Risky())
    for policy, expect in (("gate", True), ("human", False)):
        s = LiveSettings(scenario="Plain-v2", agent="idm", gate="test_release_after_20",
                         release=policy)
        live = LiveSupervisor(s, ReplayHuman([KeyEvent(0.0, "takeover", True, 2)]))
        live.reset(0)
        recs = [live.step() for _ in range(40)]
        assert recs[2].transition == "human_response"
        back = [r.step for r in recs if "gate_release" in r.transition]
        # min_human_time (1 s) allows it from step 12, but the gate asks until step 19
        assert back == ([20] if expect else []), policy
        live.close()


def test_a_gate_on_the_old_per_world_api_is_refused_naming_it():
    """A gate answering scalars (the pre-batch API) fails at its first decision with a
    message naming it and the batched API, not an IndexError deep in the records."""

    class Scalar(BaseGate):
        name = "scalar"

        def decide(self, score, ctx):
            return GateDecision(False, 0.5, True)

    GATES.register("test_scalar", lambda: Scalar())
    live = LiveSupervisor(LiveSettings(scenario="Plain-v2", agent="idm", gate="test_scalar"),
                          ReplayHuman([]))
    live.reset(0)
    with pytest.raises(TypeError, match=r"gate 'scalar' .*\(N,\) arrays.*BaseGate"):
        live.step()
    live.close()


def test_countdown_to_the_fallback_and_withdrawal():
    s = LiveSettings(scenario="Plain-v2", agent="idm", gate="test_pulse", withdraw=True)
    live = LiveSupervisor(s, ReplayHuman([]))
    live.reset(0)
    seen = []
    for _ in range(12):
        seen.append(live.countdown())
        rec = live.step()
        if "tor_withdrawn" in rec.transition:
            withdrawn = rec
    # steps 0-3 start in AGENT; the request is issued at step 3 and shown from step 4 on
    assert seen[3] == ("", pytest.approx(math.nan, nan_ok=True))
    kinds = [k for k, _ in seen[4:8]]
    left = [v for _, v in seen[4:8]]
    assert kinds == ["fallback"] * 4
    assert left == pytest.approx([4.9, 4.8, 4.7, 4.6], abs=1e-9)  # 5 s timeout, 0.1 s steps
    assert withdrawn.step == 8 and withdrawn.phase == "agent"
    assert live.phase == "agent" and live.countdown()[0] == ""
    live.close()
    # without withdrawal the same request runs out into the fallback
    live = LiveSupervisor(dataclass_replace(s, withdraw=False), ReplayHuman([]))
    live.reset(0)
    recs = [live.step() for _ in range(60)]
    assert not any("tor_withdrawn" in r.transition for r in recs)
    assert any("tor_timeout" in r.transition for r in recs) and recs[-1].controller == "fallback"
    live.close()


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_calm_release_counts_down_and_hands_back():
    class Calm(BaseGate):
        name = "calm"

        def decide(self, score, ctx):
            return self._const(False, True, 0.5)

    GATES.register("test_calm", lambda: Calm())
    s = LiveSettings(scenario="Plain-v2", agent="idm", gate="test_calm", release="calm",
                     calm_time=2.0)
    live = LiveSupervisor(s, ReplayHuman([KeyEvent(0.0, "takeover", True, 1)]))
    live.reset(0)
    recs, counts = [], []
    for _ in range(40):
        counts.append(live.countdown())
        recs.append(live.step())
    back = next(r for r in recs if "calm_release" in r.transition)
    assert recs[1].transition == "human_initiated"
    assert back.step == 22  # calm from step 2 on (0.2 s), 2 s later
    hand = [v for k, v in counts if k == "handback"]
    # shown from the step after calm began (t = 0.3 s) down to 0 at the hand-back step
    assert hand == pytest.approx([1.9 - 0.1 * i for i in range(20)], abs=1e-9)
    assert all(r.controller == "human" for r in recs[1:22])
    live.close()


def test_start_screen_holds_the_episode_until_space(tmp_path):
    plan = _plan(_tap(40, pygame.K_SPACE), {100: [(D, pygame.K_ESCAPE)]})
    ep = _session(tmp_path, plan, start_screen=True).run().episodes[0]
    # nothing is simulated before SPACE (frame 40); then one step per 6 frames
    assert ep.records[0].info["wall_s"] == pytest.approx(0.0, abs=1e-9)
    assert len(ep.records) == 10  # frames 40..99 -> steps at 40, 46, ..., 94
    assert ep.end == "quit" and ep.records[-1].reason == "user_quit"


def test_pause_freezes_the_world_and_the_clock(tmp_path):
    plan = _plan(_tap(30, pygame.K_p), _tap(150, pygame.K_p), {210: [(D, pygame.K_ESCAPE)]})
    ep = _session(tmp_path, plan).run().episodes[0]
    # 210 frames, 120 of them paused: 90 frames of driving -> 15 steps
    assert len(ep.records) == 15
    assert ep.sim_s == pytest.approx(ep.wall_s, abs=0.1)  # pause excluded from wall time


def test_the_world_stays_as_it_ended_for_the_end_screen():
    """After the last step the window still draws the world that ended (the crash, the
    stop), not a fresh reset, and the clock reads the episode's end."""
    from takeover.envs import layout as L

    s = LiveSettings(scenario="Plain-v2", agent="idm", gate="never", env={"duration": 1.0, "route_length": 39.0})
    live = LiveSupervisor(s, ReplayHuman([]))
    live.reset(0)
    recs = []
    while not live.done:
        recs.append(live.step())
    assert recs[-1].truncated and live.time == pytest.approx(recs[-1].time)
    assert live.world.vehicles[0, L.X] > 15.0  # 1 s at highway speed (about 23 m) from 0
    live.close()


def test_end_screen_shows_the_outcome_and_waits(tmp_path):
    """The window stays after the episode ends; N starts the next seed, ESC leaves."""
    s = LiveSettings(scenario="Plain-v2", agent="idm", gate="never", env={"duration": 1.0, "route_length": 39.0})
    plan = _plan(_tap(200, pygame.K_n), _tap(400, pygame.K_ESCAPE))
    durable = []
    hook = _post(plan)

    def look(frame):
        hook(frame)
        if frame == 150:  # on the first end screen: the episode is already on disk
            durable.append(len(read_log(tmp_path / "log").episodes))

    sess = _session(tmp_path, plan, settings=s, end_screen=True, max_frames=2000)
    sess.loop.before_frame = look
    res = sess.run()
    assert durable == [1]
    first, second = res.episodes
    assert first.summary.outcome == "timeout" and first.then == "next"
    assert first.frames > 150  # 10 steps take 60 frames; the end screen waited for N
    assert (first.seed, second.seed) == (3, 4) and second.then == "quit"
    log = read_log(tmp_path / "log")
    assert len(log.episodes) == 2


def test_outcome_comes_from_the_world_when_it_reports_one():
    from takeover.records import StepRecord
    from takeover.supervisor.live import outcome

    z = np.zeros(1, np.float32)
    rec = StepRecord("e", 0, 0.1, 0.0, z, z, None, None, z, "agent", "agent",
                     terminated=True, reason="collision",
                     info={"reason": "collision", "outcome": "pulled_over"})
    assert outcome(rec, "done") == "pulled_over"
    assert outcome(dataclass_replace(rec, info={"reason": "collision"}), "done") == "collision"


def test_replay_equals_the_live_log_record_by_record(tmp_path):
    """Keys at awkward frame times (47 fps against a 10 Hz control rate: events in the frame
    right after a step, right before one, during a pause), a restart from the pause, ESC in
    the second episode; the recording replays to the same records but wall-clock fields."""
    s = LiveSettings(scenario="CutIn-v2", agent="idm", gate="threshold", estimator="ttc")
    plan = _plan(_tap(5, pygame.K_t), {14: [(D, pygame.K_LEFT)], 19: [(D, pygame.K_DOWN)],
                                       24: [(U, pygame.K_LEFT)]},
                 _tap(60, pygame.K_p), {66: [(U, pygame.K_DOWN)]}, _tap(70, pygame.K_p),
                 {95: [(D, pygame.K_RIGHT)], 96: [(U, pygame.K_RIGHT)]},
                 _tap(120, pygame.K_p), _tap(125, pygame.K_r),  # restart from the pause
                 _tap(140, pygame.K_SPACE), {150: [(D, pygame.K_UP)], 180: [(U, pygame.K_UP)]},
                 _tap(185, pygame.K_r), {233: [(D, pygame.K_ESCAPE)]})
    live = _session(tmp_path, plan, settings=s, fps=47.0, max_frames=1000).run()
    assert [ep.end for ep in live.episodes] == ["restart", "quit"]
    assert any(r.controller == "human" for r in live.records)
    rec = load_recording(tmp_path / "rec.json")
    assert [(e.seed, e.end) for e in rec.episodes] == [(3, "restart"), (3, "quit")]
    again = replay(rec)
    for ep, rp in zip(live.episodes, again, strict=True):
        assert len(ep.records) == len(rp)
        for a, b in zip(ep.records, rp, strict=True):
            assert records_equal(comparable(a), comparable(b)), (a.step, a.transition)
    # and the log on disk holds the same records
    disk = read_log(tmp_path / "log")
    assert sum(len(v) for v in disk.episodes.values()) == len(live.records)


def test_replay_in_the_window_reproduces_the_log(tmp_path):
    plan = _plan(_tap(10, pygame.K_SPACE), {20: [(D, pygame.K_RIGHT)], 33: [(U, pygame.K_RIGHT)]},
                 {90: [(D, pygame.K_ESCAPE)]})
    live = _session(tmp_path, plan).run()
    rec = load_recording(tmp_path / "rec.json")
    opts = LoopOptions(fixed_clock=True, sound=False, start_screen=False, end_screen=False)
    again = LiveSession(merge_settings(rec, {}), 0, opts, recording=rec).run()
    a = [comparable(r) for r in live.records]
    b = [comparable(r) for r in again.records]
    assert len(a) == len(b) and all(records_equal(x, y) for x, y in zip(a, b, strict=True))


def test_discrete_standing_command_is_idle():
    from takeover.envs import layout as L

    s = LiveSettings(scenario="Plain-v2", agent="idm", gate="never", action_type="discrete")
    live = LiveSupervisor(s, ReplayHuman([KeyEvent(0.0, "takeover", True, 1),
                                          KeyEvent(0.0, "up", True, 5),
                                          KeyEvent(0.0, "up", False, 6)]))
    live.reset(0)
    recs = [live.step() for _ in range(12)]
    acts = [int(r.action[0]) for r in recs[1:]]
    assert all(r.controller == "human" for r in recs[1:])
    assert acts[4] == L.FASTER and set(acts[:4] + acts[5:]) == {L.IDLE}
    live.close()


def test_replay_refuses_what_it_cannot_honour(tmp_path):
    rec = Recording({"scenario": "CutIn-v2", "agent": "idm", "gate": "never"}, {},
                    [EpisodeRecording(3, [])])
    with pytest.raises(ConfigError, match="scenario"):
        merge_settings(rec, {"scenario": "Merge-v2"})
    assert merge_settings(rec, {"scenario": "CutIn", "agent": None}).scenario == "CutIn-v2"
    bad = Recording(rec.settings, {"lanes": 7}, rec.episodes)
    with pytest.raises(ConfigError, match="lanes"):
        replay(bad)


@pytest.mark.parametrize("content,match", [("not json", "not JSON"), ('{"a": 1}', "--record"),
                                           ('{"format": "takeover-recording", "version": 9}',
                                            "version 9")])
def test_bad_replay_file_is_refused_naming_it(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(RecordingError, match=match) as err:
        load_recording(p)
    assert "bad.json" in str(err.value)
    with pytest.raises(RecordingError, match="does not exist"):
        load_recording(tmp_path / "missing.json")


def test_bad_paths_and_scenarios_are_refused_before_the_drive(tmp_path):
    s = LiveSettings(scenario="Plain-v2", agent="idm", gate="never")
    with pytest.raises(ConfigError, match="is a directory"):
        LiveSession(s, record=tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "meta.json").write_text("{}")
    with pytest.raises(ConfigError, match="already exists"):
        LiveSession(s, log=tmp_path / "run")
    with pytest.raises(ConfigError, match="Valid scenarios: .*CutIn-v2"):
        env_id("Cutin-v9x")
    assert env_id("cut_in") == env_id("CutIn") == "takeover/CutIn-v2"
    with pytest.raises(ConfigError, match="Allowed"):
        LiveSettings(gate="thresold")
