"""``takeover drive`` as a person meets it: the key state machine, the CLI's options, and bad
input refused with one clear line (no traceback) before any window opens."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from takeover.cli import app
from takeover.supervisor.keyboard import KeyEvent, KeyHuman, KeyState
from takeover.types import HumanView, Phase


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


def test_holding_control_never_answers_none():
    """While the person holds control, no key is a standing command, not 'no input'."""
    human = KeyHuman()
    human.reset()
    out = human.act(np.zeros((9, 7)), {}, None, HumanView(Phase.HUMAN, False, 0.0, 0.0, 0.0))
    assert out.wants_control and out.action is not None and not out.releases


def test_events_are_consumed_by_their_step_not_their_time():
    human = KeyHuman([KeyEvent(0.0, "takeover", True, step=2)])
    human.reset()
    views = [HumanView(Phase.AGENT, False, 0.0, 0.0, 0.1 * k) for k in range(3)]
    outs = [human.act(np.zeros(1), {}, None, v) for v in views]
    assert [o.wants_control for o in outs] == [False, False, True]


def _run(*args):
    return CliRunner().invoke(app, ["drive", *args])


def test_unknown_scenario_lists_the_valid_ones_without_a_traceback():
    res = _run("--scenario", "CutIm-v0", "--agent", "idm")
    assert res.exit_code == 2
    assert "Valid scenarios" in res.output and "CutIn-v2" in res.output
    assert "Traceback" not in res.output


def test_bad_record_path_is_refused_before_the_drive(tmp_path):
    res = _run("--agent", "idm", "--record", str(tmp_path))
    assert res.exit_code == 2 and str(tmp_path) in res.output and "directory" in res.output
    res = _run("--agent", "idm", "--record", "/proc/nope/x.json")
    assert res.exit_code == 2 and "/proc/nope/x.json" in res.output


def test_bad_replay_file_is_refused_naming_it(tmp_path):
    p = tmp_path / "junk.json"
    p.write_text("{}")
    res = _run("--replay", str(p))
    assert res.exit_code == 2 and "junk.json" in res.output and "Traceback" not in res.output
    res = _run("--replay", str(tmp_path / "missing.json"))
    assert res.exit_code == 2 and "missing.json" in res.output


def test_replay_refuses_a_different_scenario(tmp_path):
    from takeover.supervisor.replay import EpisodeRecording, Recording, save_recording

    p = tmp_path / "r.json"
    save_recording(p, Recording({"scenario": "CutIn-v2", "agent": "idm", "gate": "never"}, {},
                                [EpisodeRecording(3, [], "quit", 4)]))
    res = _run("--replay", str(p), "--scenario", "Merge-v2")
    assert res.exit_code == 2 and "CutIn-v2" in res.output and "--scenario" in res.output
    res = _run("--replay", str(p), "--seed", "5")
    assert res.exit_code == 2 and "seed 3" in res.output


def test_bad_gate_names_the_closest_one():
    res = _run("--agent", "idm", "--gate", "treshold")
    assert res.exit_code == 2 and "threshold" in res.output and "Traceback" not in res.output


def test_cli_drive_headless_records_and_logs(tmp_path):
    res = _run("--agent", "idm", "--scenario", "Plain", "--fixed-clock", "--max-frames", "60",
               "--no-sound", "--record", str(tmp_path / "r.json"), "--log", str(tmp_path / "log"))
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["settings"]["scenario"] == "Plain" and data["settings"]["agent"] == "idm"
    assert data["episodes"][0]["seed"] == 1 and data["episodes"][0]["end"] == "max_frames"


def test_default_action_type_follows_the_agent():
    """`takeover drive` with no options must build the env the shipped (discrete) novice
    was trained on, and the IDM stand-in drives the default continuous env."""
    from takeover.supervisor.live import LiveSettings, resolve_action_type

    assert resolve_action_type(LiveSettings(agent="novice")) == "discrete"
    assert resolve_action_type(LiveSettings(agent="idm")) == "continuous"
    assert resolve_action_type(LiveSettings(agent="novice", action_type="continuous")) == \
        "continuous"


def test_drive_benchmark_reports_frame_time_percentiles():
    from takeover.experiments.benchmarks.drive import frames

    out = frames(frames=40, agent="idm")
    assert out["frames"] == 40 and out["p50_ms"] > 0 and out["p99_ms"] >= out["p50_ms"]
