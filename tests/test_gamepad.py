"""Gamepad / wheel input, headless: pygame JOYAXISMOTION / JOYBUTTONDOWN events posted into the
live loop; the deadzone, the take-over button and the axes driving."""

from __future__ import annotations

import pygame
import pytest

from takeover.logio import records_equal
from takeover.supervisor.gamepad import PadConfig, PadState, deadzone, pad_events
from takeover.supervisor.live import LiveSession, LiveSettings, LoopOptions, comparable, replay
from takeover.supervisor.replay import load_recording


def test_deadzone_zeroes_the_rest_and_keeps_full_travel():
    assert deadzone(0.1, 0.12) == 0.0 and deadzone(-0.12, 0.12) == 0.0
    assert deadzone(1.0, 0.12) == 1.0 and deadzone(-1.0, 0.12) == -1.0
    assert deadzone(0.56, 0.12) == pytest.approx(0.5)
    assert deadzone(3.0, 0.1) == 1.0  # out-of-range readings are clipped


def test_wheel_pedals_rest_at_minus_one():
    st = PadState(PadConfig(throttle_axis=2, brake_axis=3, pedals=True, deadzone=0.05))
    assert st.throttle() == 0.0  # both pedals at rest (-1)
    st.raw[2] = 1.0
    assert st.throttle() == 1.0
    st.raw[3] = 1.0  # full brake too
    assert st.throttle() == 0.0
    st.raw[2] = -1.0
    assert st.throttle() == -1.0


def _axis(axis, value):
    return pygame.event.Event(pygame.JOYAXISMOTION, joy=0, instance_id=0, axis=axis, value=value)


def _button(down, button=0):
    kind = pygame.JOYBUTTONDOWN if down else pygame.JOYBUTTONUP
    return pygame.event.Event(kind, joy=0, instance_id=0, button=button)


def test_pad_events_map_axes_button_and_half_travel_presses():
    st = PadState(PadConfig())
    evs = pad_events(_axis(0, 0.9), st, 0.5, 5)
    keys = {(e.key, e.down) for e in evs}
    assert ("right", True) in keys and all(e.step == 5 for e in evs)
    steer = next(e for e in evs if e.key == "steer")
    assert steer.value == pytest.approx((0.9 - 0.12) / 0.88)
    assert [e.key for e in pad_events(_button(True), st, 0.5, 5)] == ["toggle"]
    assert pad_events(_button(True, button=3), st, 0.5, 5) == []  # not the take-over button


def test_gamepad_drive_takes_over_steers_and_hands_back(tmp_path):
    plan = {10: [_axis(0, 0.08)],  # inside the deadzone: no takeover
            40: [_button(True)], 41: [_button(False)],  # take over
            60: [_axis(0, 0.6), _axis(1, -0.5)], 100: [_axis(0, 0.0), _axis(1, 0.0)],
            150: [_button(True)], 151: [_button(False)],  # hand back
            200: [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="",
                                     scancode=0)]}

    def hook(frame):
        for ev in plan.get(frame, []):
            pygame.event.post(ev)

    s = LiveSettings(scenario="Plain-v2", agent="idm", gate="never", input="gamepad")
    opts = LoopOptions(fixed_clock=True, sound=False, start_screen=False, end_screen=False,
                       before_frame=hook, max_frames=400)
    # seed 3: a plain-traffic drive the scripted stick moves through without a collision
    ep = LiveSession(s, 3, opts, record=tmp_path / "pad.json").run().episodes[0]
    trans = {r.step: r.transition for r in ep.records if r.transition}
    assert list(trans.values()) == ["human_initiated", "human_release"], (
        trans, ep.records[-1].outcome)
    take, back = sorted(trans)
    assert take == 7  # frame 40 at 60 fps / 10 Hz: the step starting at frame 42
    assert all(r.controller == "agent" for r in ep.records[:take])  # deadzone: no input
    held = ep.records[take:back]
    assert all(r.controller == "human" for r in held)
    steer = [float(r.human_action[0]) for r in held]
    thr = [float(r.human_action[1]) for r in held]
    assert max(steer) == pytest.approx((0.6 - 0.12) / 0.88)  # the stick, not a key ramp
    assert max(thr) == pytest.approx((0.5 - 0.12) / 0.88)  # stick up = throttle
    # the recording replays the pad exactly
    again = replay(load_recording(tmp_path / "pad.json"))[0]
    assert all(records_equal(comparable(a), comparable(b))
               for a, b in zip(ep.records, again, strict=True))
