"""A person at the keyboard as a :class:`~takeover.types.Human`.

The input logic is a pure state machine, :class:`KeyState`, fed with logical keys and
simulated time; pygame appears only in :func:`key_event` (key code -> logical key). So the
keyboard path is testable without a window, and a recorded drive (its :class:`KeyEvent`
list) replays bit for bit through the same code (``takeover.supervisor.replay``).

Design choices, each fixing a known problem of existing tools:

* Steering and throttle move at rates **per simulated second**: the state changes only as
  a function of event times and step times, never of frames, so the feel is the same at any
  frame rate (and identical in a replay).
* **Any** held driving key is an input: steering right while braking is a takeover even if
  the two "cancel" (MetaDrive's ``abs(sum(action)) > 0.01`` misses it).
* While the person holds control the agent never acts: with no key pressed the person's
  **standing command** holds (continuous: the controls as the keys leave them, the wheel
  self-centring and the pedals released; discrete: ``idle``, keep lane and target speed).
  While the agent drives, no key held -> ``action=None`` ("no input"), never a fabricated
  no-op (``gymnasium.utils.play`` steps a no-op).
* Every event is stamped with the index of the **control step that consumes it** (and the
  simulated time it arrived, for integrating held keys), so a replay feeds each event to the
  same step whatever the frame timing was.
* No randomness (MetaDrive's keyboard adds unseeded noise, so its replays diverge).
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from takeover.envs import layout as L
from takeover.types import HumanInput, HumanView, Phase

KEYS = ("takeover", "release", "toggle", "left", "right", "up", "down", "steer", "throttle",
        "quit")
"""Logical inputs: ``toggle`` takes over or hands back (a gamepad button); ``steer`` and
``throttle`` are analogue axes (``KeyEvent.value`` in [-1, 1]); ``quit`` is the session's."""
DRIVE_KEYS = ("left", "right", "up", "down")
AXES = ("steer", "throttle")

LEGEND = ("SPACE take over", "R hand back", "arrows/WASD drive", "P pause", "ESC quit")


@dataclass(frozen=True)
class KeyEvent:
    """A logical input at simulation time ``time`` (s), consumed by control step ``step``.

    Attributes:
        time: simulated time the event arrived, s (held keys are integrated from it).
        key: one of :data:`KEYS`.
        down: pressed (True) or released; for an axis always True.
        step: index (within the episode) of the control step that consumes the event;
            ``-1`` (old recordings): consumed by the first step at or after ``time``.
        value: the axis position in [-1, 1] for ``steer``/``throttle``, else 1.
    """

    time: float
    key: str
    down: bool
    step: int = -1
    value: float = 1.0

    def __post_init__(self) -> None:
        if self.key not in KEYS:
            raise ValueError(f"unknown key {self.key!r}; keys are {', '.join(KEYS)}")


@dataclass(frozen=True)
class KeyRates:
    """How fast the controls move, in normalised action units per simulated second.

    Attributes:
        steer: steering change per second while left/right is held (full lock in 1.25 s).
        steer_return: self-centring per second when neither is held (a wheel's caster).
        throttle: throttle / brake change per second while up/down is held.
        throttle_return: relaxation toward zero when neither is held.
    """

    steer: float = 0.8
    steer_return: float = 1.6
    throttle: float = 1.5
    throttle_return: float = 3.0


def _toward(value: float, rate: float, dt: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return float(min(max(value + rate * dt, lo), hi))


def _relax(value: float, rate: float, dt: float) -> float:
    step = rate * dt
    return max(value - step, 0.0) if value > 0 else min(value + step, 0.0)


class KeyState:
    """Held keys, continuous ``steer``/``throttle`` in [-1, 1], and edge-triggered presses.

    ``apply(event)`` first advances to the event's time, so the state is a function of the
    event sequence and the times it is read at, not of how often anyone looks.
    """

    def __init__(self, rates: KeyRates | None = None) -> None:
        self.rates = rates or KeyRates()
        self.reset()

    def reset(self) -> None:
        self.time = 0.0
        self.held: set[str] = set()
        self.steer = 0.0
        self.throttle = 0.0
        self.presses: list[str] = []  # keys pressed since the last take_presses()
        self.axes: dict[str, float] = {}  # analogue axes (gamepad / wheel), by name

    def advance(self, time: float) -> None:
        """Integrate the controls up to simulation time ``time`` (no-op if in the past)."""
        dt = time - self.time
        if dt <= 0:
            return
        self.time = time
        r = self.rates
        h = self.held
        d_steer = ("right" in h) - ("left" in h)
        if d_steer:
            self.steer = _toward(self.steer, d_steer * r.steer, dt)
        else:
            self.steer = _relax(self.steer, r.steer_return, dt)
        d_thr = ("up" in h) - ("down" in h)
        if d_thr:
            self.throttle = _toward(self.throttle, d_thr * r.throttle, dt)
        elif "up" in h:  # up and down together: hold the throttle where it is
            pass
        else:
            self.throttle = _relax(self.throttle, r.throttle_return, dt)

    def apply(self, event: KeyEvent) -> None:
        self.advance(event.time)
        if event.key in AXES:
            self.axes[event.key] = float(event.value)
        elif event.down:
            if event.key not in self.held:
                self.presses.append(event.key)
            self.held.add(event.key)
        else:
            self.held.discard(event.key)

    def update(self, pressed: set[str] | frozenset[str], dt: float) -> None:
        """Polling form: these keys are held for the next ``dt`` simulated seconds."""
        for key in set(pressed) - self.held:
            self.presses.append(key)
        self.held = set(pressed)
        self.advance(self.time + dt)

    def take_presses(self) -> list[str]:
        out, self.presses = self.presses, []
        return out

    @property
    def driving(self) -> bool:
        """Any driving key is held or an axis is off centre (an input, whatever the
        resulting action)."""
        return any(k in self.held for k in DRIVE_KEYS) or any(
            v != 0.0 for v in self.axes.values())

    def controls(self) -> tuple[float, float]:
        """``(steer, throttle)`` in [-1, 1]: the axes where a gamepad set them, else the
        key-integrated values."""
        return (self.axes.get("steer", self.steer), self.axes.get("throttle", self.throttle))


DISCRETE_KEYS = {"up": L.FASTER, "down": L.SLOWER, "left": L.LANE_LEFT, "right": L.LANE_RIGHT}


class KeyHuman:
    """A :class:`~takeover.types.Human` driven by :class:`KeyEvent` s.

    Events are queued with :meth:`push` (live) or given up front (replay); the ``k``-th
    ``act`` of an episode applies every queued event stamped for step ``<= k``, advances the
    controls to ``view.time`` and answers:

    * takeover (or toggle) pressed, or any driving input while the agent drives -> take
      control; release (or toggle while holding control) -> hand back;
    * while holding control the action is never ``None``: continuous ``[steer, throttle]``
      (the standing command when no key is held), discrete the pressed arrow's meta-action
      or ``idle`` (keep lane and target speed);
    * otherwise ``None`` (no input).
    """

    def __init__(self, events: list[KeyEvent] | None = None,
                 rates: KeyRates | None = None) -> None:
        self.state = KeyState(rates)
        self._script = sorted(events or [], key=lambda e: (e.step, e.time))
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Start an episode (the seed is unused: a keyboard has no randomness)."""
        self.state.reset()
        self._queue: list[tuple[KeyEvent, float]] = [(e, 0.0) for e in self._script]
        self._cursor = 0
        self.step = 0  # index of the next control step (the next act call)
        self.events: list[KeyEvent] = []  # every event consumed, in order (the recording)
        self.latencies: list[tuple[str, float]] = []  # (key, wall s from event to use)
        self.press_walls: list[tuple[int, str, float]] = []  # (step, key, wall arrival)
        self._consumed_wall: list[float] = []

    def push(self, event: KeyEvent, wall_time: float | None = None) -> None:
        """Queue a live event (``wall_time``: when it arrived, for latency measurement)."""
        self._queue.append((event, _time.perf_counter() if wall_time is None else wall_time))

    def _due(self, event: KeyEvent, t: float) -> bool:
        return event.step <= self.step if event.step >= 0 else event.time <= t

    def act(self, obs: np.ndarray, info: Mapping[str, Any], env: Any, view: HumanView) -> HumanInput:
        t = float(view.time)
        st = self.state
        self._consumed_wall = []
        while self._cursor < len(self._queue) and self._due(self._queue[self._cursor][0], t):
            event, wall = self._queue[self._cursor]
            self._cursor += 1
            st.apply(dataclasses.replace(event, time=min(event.time, t)))
            self.events.append(event)
            if wall > 0.0 and event.down and event.key not in AXES:
                self._consumed_wall.append(wall)
                self.latencies.append((event.key, wall))
                self.press_walls.append((self.step, event.key, wall))
        st.advance(t)
        self.step += 1
        presses = st.take_presses()
        holds = view.phase == Phase.HUMAN
        releases = "release" in presses or ("toggle" in presses and holds)
        takes = "takeover" in presses or ("toggle" in presses and not holds)
        discrete = _discrete(env)
        moved = (any(k in DISCRETE_KEYS for k in presses) if discrete else st.driving)
        holding = (holds and not releases) or takes or (moved and not releases)
        action = self._command(discrete, presses) if holding else None
        return HumanInput(action=action, wants_control=holding, releases=releases)

    def _command(self, discrete: bool, presses: list[str]) -> Any:
        """The person's action while they hold control (never ``None``)."""
        if discrete:
            for key in presses:
                if key in DISCRETE_KEYS:
                    return DISCRETE_KEYS[key]
            return L.IDLE
        return np.array(self.state.controls(), dtype=np.float32)

    def mark_stepped(self, wall_time: float | None = None) -> list[float]:
        """Call right after the ``env.step`` that used the last ``act``: returns and records
        the input-to-step latencies (s) of the key presses that step consumed."""
        now = _time.perf_counter() if wall_time is None else wall_time
        lat = [now - w for w in self._consumed_wall]
        n = len(lat)
        if n:
            self.latencies[-n:] = [(k, d) for (k, _), d in zip(self.latencies[-n:], lat,
                                                               strict=True)]
        self._consumed_wall = []
        return lat


def _discrete(env: Any) -> bool:
    base = getattr(env, "unwrapped", env)
    cfg = getattr(base, "config", None)
    if cfg is not None and getattr(cfg, "action_type", None) == "discrete":
        return True
    space = getattr(base, "action_space", None)
    return space is not None and type(space).__name__ == "Discrete"


class KeyboardHuman(KeyHuman):
    """The live keyboard: the drive loop turns pygame events into :class:`KeyEvent` s (see
    :func:`key_event`) and pushes them; everything else is :class:`KeyHuman`."""


def keymap() -> dict[int, str]:
    """pygame key code -> logical key (SPACE/T, R, arrows and WASD, ESC; P and the screens'
    keys are the session's, see ``takeover.supervisor.live``)."""
    import pygame

    return {
        pygame.K_SPACE: "takeover", pygame.K_t: "takeover", pygame.K_r: "release",
        pygame.K_LEFT: "left", pygame.K_a: "left", pygame.K_RIGHT: "right",
        pygame.K_d: "right", pygame.K_UP: "up", pygame.K_w: "up", pygame.K_DOWN: "down",
        pygame.K_s: "down", pygame.K_ESCAPE: "quit",
    }


def key_event(event: Any, time: float, mapping: dict[int, str] | None = None,
              step: int = -1) -> KeyEvent | None:
    """A pygame KEYDOWN/KEYUP event as a :class:`KeyEvent` at simulation ``time`` for control
    step ``step``; ``None`` for other events and unmapped keys."""
    import pygame

    if event.type not in (pygame.KEYDOWN, pygame.KEYUP):
        return None
    key = (mapping or keymap()).get(event.key)
    if key is None:
        return None
    return KeyEvent(float(time), key, event.type == pygame.KEYDOWN, int(step))
