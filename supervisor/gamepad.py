"""A gamepad or a steering wheel as input for the live session, through pygame's joystick API.

The pad does not get its own human model: :func:`pad_events` turns pygame joystick events
into the same :class:`~takeover.supervisor.keyboard.KeyEvent` s the keyboard produces (axes
as ``steer`` / ``throttle`` with their value, the take-over button as ``toggle``, and the
stick's crossings of half travel as ``left`` / ``right`` / ``up`` / ``down`` presses for
discrete meta-actions), so :class:`~takeover.supervisor.keyboard.KeyHuman` drives, records and
replays a pad exactly as it does keys.

* **Deadzone**: an axis within ``deadzone`` of its rest reads 0 (a worn stick never rests at
  exactly 0, and any non-zero axis is an input, i.e. a takeover); beyond it the value is
  rescaled so that full travel is still 1.
* **Pedals** (wheels) rest at -1 and travel to +1: ``pedals=True`` maps them to 0..1, the
  brake pedal subtracting from the throttle.
* One button (``button``, 0 = A / cross on most pads) takes over and hands back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from takeover.config import option, validate
from takeover.supervisor.keyboard import KeyEvent


@dataclass(frozen=True)
class PadConfig:
    """Which axes and button drive, and how.

    Attributes:
        steer_axis: axis index of steering (left stick x / wheel).
        throttle_axis: axis index of throttle; on a pad the left stick's y (up is negative in
            pygame, so ``invert_throttle``), on a wheel the accelerator pedal.
        brake_axis: axis index of a separate brake (wheel pedal, pad trigger), or -1.
        invert_throttle: negate the throttle axis (pad sticks read -1 when pushed up).
        pedals: throttle/brake axes rest at -1 and travel to +1 (wheel pedals, triggers).
        deadzone: |value| below this reads 0 (fraction of travel).
        button: the button that takes over and hands back.
    """

    steer_axis: int = option(0, "axis index of steering", range=(0, 31))
    throttle_axis: int = option(1, "axis index of throttle (pad: left stick y)", range=(0, 31))
    brake_axis: int = option(-1, "axis index of a separate brake, -1 for none", range=(-1, 31))
    invert_throttle: bool = option(True, "negate the throttle axis (stick up reads -1)")
    pedals: bool = option(False, "throttle/brake axes rest at -1 (wheel pedals, triggers)")
    deadzone: float = option(0.12, "fraction of travel that reads 0", range=(0.0, 0.9))
    button: int = option(0, "button that takes over and hands back", range=(0, 63))

    def __post_init__(self) -> None:
        validate(self)


def deadzone(value: float, zone: float) -> float:
    """0 within ``zone`` of centre, else rescaled so that +-1 stays +-1 (clipped)."""
    v = min(max(float(value), -1.0), 1.0)
    if abs(v) <= zone:
        return 0.0
    return math.copysign((abs(v) - zone) / (1.0 - zone), v)


@dataclass
class PadState:
    """The raw axis positions seen so far, and which half-travel 'keys' are down."""

    config: PadConfig = field(default_factory=PadConfig)
    raw: dict[int, float] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)

    def reset(self) -> None:
        self.raw.clear()
        self.held.clear()

    def _pedal(self, axis: int) -> float:
        v = self.raw.get(axis, -1.0 if self.config.pedals else 0.0)
        return 0.5 * (v + 1.0) if self.config.pedals else v

    def steer(self) -> float:
        return deadzone(self.raw.get(self.config.steer_axis, 0.0), self.config.deadzone)

    def throttle(self) -> float:
        c = self.config
        thr = self._pedal(c.throttle_axis)
        if c.invert_throttle and not c.pedals:
            thr = -thr
        if c.brake_axis >= 0:
            thr -= self._pedal(c.brake_axis)
        return deadzone(thr, c.deadzone)


def pad_events(event: Any, state: PadState, time: float, step: int) -> list[KeyEvent]:
    """The :class:`KeyEvent` s of one pygame joystick event (none for other events)."""
    import pygame

    c = state.config
    if event.type in (pygame.JOYBUTTONDOWN, pygame.JOYBUTTONUP):
        if event.button != c.button:
            return []
        return [KeyEvent(time, "toggle", event.type == pygame.JOYBUTTONDOWN, step)]
    if event.type != pygame.JOYAXISMOTION:
        return []
    if event.axis not in (c.steer_axis, c.throttle_axis, c.brake_axis):
        return []
    state.raw[event.axis] = float(event.value)
    steer, thr = state.steer(), state.throttle()
    out = [KeyEvent(time, "steer", True, step, steer), KeyEvent(time, "throttle", True, step, thr)]
    for key, on in (("left", steer < -0.5), ("right", steer > 0.5), ("up", thr > 0.5),
                    ("down", thr < -0.5)):
        if on != (key in state.held):
            (state.held.add if on else state.held.discard)(key)
            out.append(KeyEvent(time, key, on, step))
    return out


def open_joysticks() -> list[Any]:
    """Initialise pygame's joystick module and open every connected device (pygame sends
    joystick events only for opened devices); returns them (may be empty)."""
    import pygame

    pygame.joystick.init()
    return [pygame.joystick.Joystick(i) for i in range(pygame.joystick.get_count())]
