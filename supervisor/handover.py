"""The handover protocol: who drives, as an explicit state machine over
:class:`~takeover.types.Phase`, held as arrays over N worlds.

::

    AGENT --gate_request--> TOR --human_response--> HUMAN --human_release--> AGENT
      |                      |  \\--tor_withdrawn--> AGENT       \\--calm_release / gate_release
      +--human_initiated-----)------------------------^            (release="calm" / "gate")
                             +--tor_timeout--> FALLBACK --human_response--> HUMAN

* **TOR** (takeover request): the alert is on, the agent still drives, the human has
  ``timeout`` seconds to respond (``wants_control`` or any action). With ``withdraw`` the
  request is withdrawn as soon as the gate no longer requests (the risk cleared).
  :meth:`Handover.time_left` is the countdown to the fallback a HUD shows.
* **FALLBACK** (minimal-risk manoeuvre): nobody answered. The world runs its own MRM when
  it has one (``set_mrm``), else the supervisor brakes in lane (:func:`minimal_risk_action`).
  Logged with controller ``"fallback"``; the human's action stays ``None``.
* **HUMAN**: control belongs to whoever holds it. The human keeps it until they release,
  unless ``release`` says otherwise: ``"human"`` (default: only the human's release),
  ``"calm"`` (also once the gate has wanted to release for ``calm_time`` s in a row) or
  ``"gate"`` (also as soon as the gate releases); both after ``min_human_time`` s, and never
  while the gate requests (a decision with both ``request`` and ``release`` set is not
  calm). :meth:`Handover.handback_left` is the calm countdown a HUD shows. While the
  human holds control the agent never acts: a step without a human action executes the
  human's standing command (their last Box action, or ``hold_action`` for Discrete).

Every phase change carries a reason (``TRANSITIONS``) for the log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from takeover.config import option, validate
from takeover.types import HumanViews

RELEASES = ("human", "calm", "gate")

AGENT, TOR, HUMAN, FALLBACK = 0, 1, 2, 3
"""Phase codes (``takeover.types.PHASES``)."""

CTRL_AGENT, CTRL_HUMAN, CTRL_FALLBACK = 0, 1, 2
CONTROLLERS = ("agent", "human", "fallback")
"""Controller codes of the executed action."""

TRANSITIONS = ("gate_request", "tor_withdrawn", "gate_release", "calm_release",
               "human_initiated", "human_response", "tor_timeout", "human_release")
"""Reasons, as bits in the order they can happen within one step (gate, then human)."""
_BIT = {name: np.int16(1 << i) for i, name in enumerate(TRANSITIONS)}
TRANSITION_TEXT = [",".join(t for i, t in enumerate(TRANSITIONS) if code >> i & 1)
                   for code in range(1 << len(TRANSITIONS))]
"""``TRANSITION_TEXT[bits]`` is the record's comma-joined transition string."""


@dataclass(frozen=True)
class HandoverConfig:
    timeout: float = option(5.0, "s a takeover request waits for the human before the "
                                 "minimal-risk manoeuvre", range=(0.0, None))
    release: str = option("human", "who may hand control back from the human: only the "
                                   "human, also a calm gate (calm_time s), or also the gate",
                          choices=RELEASES)
    calm_time: float = option(3.0, "s the gate must want to release in a row before a "
                                   "release='calm' handback", range=(0.0, None))
    min_human_time: float = option(1.0, "s the human drives before a calm/gate handback",
                                   range=(0.0, None))
    withdraw: bool = option(False, "withdraw a pending request once the gate no longer "
                                   "requests (the risk cleared)")
    human_initiative: bool | None = option(None, "the human may take over unasked; None = "
                                                 "as the gate says (human/hybrid gates)")
    fallback_decel: float = option(3.0, "m/s^2 braking of the supervisor's minimal-risk "
                                        "manoeuvre (worlds without set_mrm)", range=(0.1, 12.0))
    fallback_action: int = option(2, "Discrete action of the manoeuvre on takeover/* envs "
                                      "this is 'slower' (2); on other Discrete envs the index "
                                      "to repeat", range=(0, None))
    hold_action: int = option(0, "Discrete action executed while the human holds control "
                                 "without input (takeover/* envs: 0 = idle, keep lane and "
                                 "speed)", range=(0, None))

    def __post_init__(self) -> None:
        validate(self)
        for name in ("timeout", "calm_time", "min_human_time", "fallback_decel"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"handover {name}={getattr(self, name)}: must be finite")


class Handover:
    """The protocol's state for N worlds. Per step call :meth:`on_gate` (before asking the
    humans: requests, withdrawals, handbacks) then :meth:`on_human` (responses, releases,
    timeouts), which returns who produces each world's action."""

    def __init__(self, n: int, config: HandoverConfig | None = None, *,
                 human_initiative: bool = False) -> None:
        self.config = config or HandoverConfig()
        hi = self.config.human_initiative
        self.human_initiative = bool(human_initiative if hi is None else hi)
        self.n = n
        self.phase = np.zeros(n, dtype=np.int8)
        self.tor_time = np.full(n, math.nan)
        self.takeover_time = np.full(n, math.nan)
        self.calm_since = np.full(n, math.nan)
        self.bits = np.zeros(n, dtype=np.int16)

    def reset(self, worlds: np.ndarray) -> None:
        self.phase[worlds] = AGENT
        self.tor_time[worlds] = math.nan
        self.takeover_time[worlds] = math.nan
        self.calm_since[worlds] = math.nan

    def time_left(self, time: np.ndarray) -> np.ndarray:
        """``(N,)`` s until a pending request falls back to the minimal-risk manoeuvre (the
        HUD's countdown); NaN where no request is pending."""
        left = np.maximum(self.config.timeout - (time - self.tor_time), 0.0)
        return np.where(self.phase == TOR, left, math.nan)

    def handback_left(self, time: np.ndarray) -> np.ndarray:
        """``(N,)`` s until a ``release="calm"`` hand-back if the gate stays calm (the HUD's
        countdown: the longer of what is left of ``calm_time`` and of ``min_human_time``);
        NaN where none is running (another policy, not the human's turn, not calm)."""
        cfg = self.config
        if cfg.release != "calm":
            return np.full(self.n, math.nan)
        left = np.maximum(cfg.calm_time - (time - self.calm_since),
                          cfg.min_human_time - (time - self.takeover_time))
        running = (self.phase == HUMAN) & ~np.isnan(self.calm_since)
        return np.where(running, np.maximum(left, 0.0), math.nan)

    def tor_elapsed(self, time: np.ndarray) -> np.ndarray:
        alert = (self.phase == TOR) | (self.phase == FALLBACK)
        return np.where(alert, np.maximum(time - self.tor_time, 0.0), 0.0)

    def on_gate(self, request: np.ndarray, release: np.ndarray, time: np.ndarray,
                urgency: np.ndarray) -> HumanViews:
        """Apply the gate's decisions at the start of a step; returns what the humans see."""
        cfg, ph, eps = self.config, self.phase, 1e-9
        bits = np.zeros(self.n, dtype=np.int16)
        start = (ph == AGENT) & request
        self.tor_time = np.where(start, time, self.tor_time)
        self.takeover_time = np.where(start, math.nan, self.takeover_time)
        bits[start] |= _BIT["gate_request"]
        ph = np.where(start, TOR, ph).astype(np.int8)
        if cfg.withdraw:
            wd = (ph == TOR) & ~request & ~start
            bits[wd] |= _BIT["tor_withdrawn"]
            ph = np.where(wd, AGENT, ph).astype(np.int8)
        if cfg.release != "human":
            human = ph == HUMAN
            held = time - self.takeover_time >= cfg.min_human_time - eps
            release = release & ~request  # never hand back while the gate asks for the human
            self.calm_since = np.where(human & release,
                                       np.where(np.isnan(self.calm_since), time, self.calm_since),
                                       math.nan)
            if cfg.release == "gate":
                back, why = human & release & held, "gate_release"
            else:
                back = human & held & (time - self.calm_since >= cfg.calm_time - eps)
                why = "calm_release"
            bits[back] |= _BIT[why]
            ph = np.where(back, AGENT, ph).astype(np.int8)
        self.phase, self.bits = ph, bits
        alert = (ph == TOR) | (ph == FALLBACK)
        return HumanViews(phase=ph.copy(), tor_active=alert, tor_elapsed=self.tor_elapsed(time),
                          urgency=np.where(alert, np.clip(urgency, 0.0, 1.0), 0.0),
                          time=np.asarray(time, dtype=np.float64))

    def on_human(self, wants_control: np.ndarray, has_action: np.ndarray,
                 releases: np.ndarray, time: np.ndarray) -> np.ndarray:
        """Apply the humans' inputs; returns ``(N,)`` controller codes (``CONTROLLERS``)."""
        ph, bits, eps = self.phase, self.bits, 1e-9
        answer = wants_control | has_action
        initiated = (ph == AGENT) & answer & self.human_initiative
        responded = ((ph == TOR) | (ph == FALLBACK)) & answer
        timeout = (ph == TOR) & ~answer & (time - self.tor_time >= self.config.timeout - eps)
        released = (ph == HUMAN) & releases
        took = initiated | responded
        self.takeover_time = np.where(took, time, self.takeover_time)
        self.calm_since = np.where(took, math.nan, self.calm_since)
        bits[initiated] |= _BIT["human_initiated"]
        bits[responded] |= _BIT["human_response"]
        bits[timeout] |= _BIT["tor_timeout"]
        bits[released] |= _BIT["human_release"]
        ph = np.where(took, HUMAN, np.where(timeout, FALLBACK, np.where(released, AGENT, ph)))
        self.phase = ph.astype(np.int8)
        return np.where(ph == FALLBACK, CTRL_FALLBACK,
                        np.where(ph == HUMAN, CTRL_HUMAN, CTRL_AGENT)).astype(np.int8)

    def transitions(self) -> list[str]:
        """This step's reasons per world, comma-joined (``""`` when the phase did not change)."""
        return [TRANSITION_TEXT[b] for b in self.bits.tolist()]


def minimal_risk_action(env: Any, info: dict[str, Any], config: HandoverConfig) -> Any:
    """The supervisor's fallback action this step, for one world without ``set_mrm``.

    An env (or wrapper) offering ``minimal_risk_action()`` decides for itself (see
    ``adapters``). ``takeover/*`` envs: see :func:`highway_stop`. Any other env:
    ``fallback_action`` for Discrete, the zero action (clipped into the space) for Box:
    documented as a neutral action, not a stop.
    """
    try:
        custom = env.get_wrapper_attr("minimal_risk_action")
    except AttributeError:
        custom = None
    if custom is not None:
        return custom()
    base = env.unwrapped
    if hasattr(base, "vehicles") and hasattr(getattr(base, "config", None), "lane_width"):
        return highway_stop(base.vehicles[None, 0], base.config, config)[0]
    space = env.action_space
    if isinstance(space, spaces.Discrete):
        return int(space.start + min(config.fallback_action, space.n - 1))
    if isinstance(space, spaces.Box):
        return np.clip(np.zeros(space.shape, space.dtype), space.low, space.high)
    raise TypeError(f"no minimal-risk manoeuvre for action space {space}; give the env a "
                    f"minimal_risk_action() method")


def highway_stop(egos: np.ndarray, cfg: Any, config: HandoverConfig) -> np.ndarray:
    """Stop in lane on ``takeover/*`` worlds, for ``(M, VEH_COLS)`` ego rows: discrete ->
    ``fallback_action`` (``slower``); continuous -> lane keeping toward the nearest lane
    centre and ``-fallback_decel / brake_max`` throttle. ``(M,)`` int64 or ``(M, 2)``
    float32."""
    from takeover.envs import layout as L

    m = len(egos)
    if cfg.action_type == "discrete":
        return np.full(m, int(config.fallback_action), dtype=np.int64)
    w = cfg.lane_width
    lane = np.clip(np.round(egos[:, L.Y] / w), 0, cfg.lanes - 1)
    err = egos[:, L.Y] - lane * w
    v = np.maximum(egos[:, L.V], 1.0)
    psi_ref = np.arcsin(np.clip(-0.6 * err / v, -0.25, 0.25))
    steer = np.arctan(3.0 * (psi_ref - egos[:, L.PSI]) * 2.5 / v) / cfg.steer_max
    brake = -min(config.fallback_decel / cfg.brake_max, 1.0)
    return np.stack([np.clip(steer, -1.0, 1.0), np.full(m, brake)], axis=1).astype(np.float32)
