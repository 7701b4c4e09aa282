"""The handover protocol: who drives, as an explicit state machine over
:class:`~takeover.types.Phase`.

::

    AGENT --gate_request--> TOR --human_response--> HUMAN --human_release / gate_release--> AGENT
      |                      |                        ^
      +--human_initiated-----)------------------------+  (human/hybrid gates only)
                             +--tor_timeout--> FALLBACK --human_response--> HUMAN

* **TOR** (takeover request): the alert is on, the agent still drives, the human has
  ``timeout`` seconds to respond (``HumanInput.wants_control`` or any action).
* **FALLBACK** (minimal-risk manoeuvre): nobody answered. The car brakes in its lane at a
  fixed moderate ``fallback_decel`` with lane keeping (on Discrete meta-actions: ``slower``
  every step) until it stops or the human finally responds. Its steps are logged with
  controller ``"fallback"``; the human's action stays ``None``: a missing input is never
  turned into a fabricated human action.
* In HUMAN, a step where the human gives no action executes the agent's action and is
  logged as the agent's (the human is in charge but did not act).

Every phase change carries a reason string (``gate_request``, ``human_response``,
``human_initiated``, ``human_release``, ``gate_release``, ``tor_timeout``) for the log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from takeover.config import option, validate
from takeover.types import Controller, HumanInput, HumanView, Phase

from .gates import GateDecision

HANDBACK = ("human", "gate", "either")


@dataclass(frozen=True)
class HandoverConfig:
    timeout: float = option(5.0, "s a takeover request waits for the human before the "
                                 "minimal-risk manoeuvre", range=(0.0, None))
    handback: str = option("either", "who may hand control back to the agent: the human "
                                     "(releases), the gate (release) or either",
                           choices=HANDBACK)
    min_human_time: float = option(1.0, "s the human drives before the gate may hand back",
                                   range=(0.0, None))
    human_initiative: bool | None = option(None, "the human may take over unasked; None = "
                                                 "as the gate says (human/hybrid gates)")
    fallback_decel: float = option(3.0, "m/s^2 braking of the minimal-risk manoeuvre",
                                   range=(0.1, 12.0))
    fallback_action: int = option(2, "Discrete action of the manoeuvre on takeover/* envs "
                                      "this is 'slower' (2); on other Discrete envs the index "
                                      "to repeat", range=(0, None))

    def __post_init__(self) -> None:
        validate(self)


def minimal_risk_action(env: Any, info: dict[str, Any], config: HandoverConfig) -> Any:
    """The fallback's action this step.

    ``takeover/*`` envs: continuous -> lane keeping toward the nearest lane centre and
    ``-fallback_decel / brake_max`` throttle; discrete -> ``fallback_action`` (``slower``).
    An env (or wrapper) offering ``minimal_risk_action()`` decides for itself (see
    ``adapters``). Any other env: ``fallback_action`` for Discrete, the zero action (clipped
    into the space) for Box: documented as a neutral action, not a stop.
    """
    try:
        custom = env.get_wrapper_attr("minimal_risk_action")
    except AttributeError:
        custom = None
    if custom is not None:
        return custom()
    base = env.unwrapped
    if hasattr(base, "vehicles") and hasattr(getattr(base, "config", None), "lane_width"):
        return _highway_stop(base, config)  # a takeover/* world (single or batched view)
    space = env.action_space
    if isinstance(space, spaces.Discrete):
        return int(space.start + min(config.fallback_action, space.n - 1))
    if isinstance(space, spaces.Box):
        return np.clip(np.zeros(space.shape, space.dtype), space.low, space.high)
    raise TypeError(f"no minimal-risk manoeuvre for action space {space}; give the env a "
                    f"minimal_risk_action() method")


def _highway_stop(env: Any, config: HandoverConfig) -> Any:
    from takeover.envs import layout as L

    cfg = env.config
    if cfg.action_type == "discrete":
        return int(config.fallback_action)
    ego = env.vehicles[0]
    w = cfg.lane_width
    lane = min(max(round(float(ego[L.Y]) / w), 0), cfg.lanes - 1)
    err = float(ego[L.Y]) - lane * w
    v = max(float(ego[L.V]), 1.0)
    psi_ref = math.asin(min(max(-0.6 * err / v, -0.25), 0.25))
    steer = math.atan(3.0 * (psi_ref - float(ego[L.PSI])) * 2.5 / v) / cfg.steer_max
    brake = -min(config.fallback_decel / cfg.brake_max, 1.0)
    return np.array([np.clip(steer, -1.0, 1.0), brake], dtype=np.float32)


def responded(hin: HumanInput) -> bool:
    """The human answered: asked for control or gave any action."""
    return bool(hin.wants_control or hin.action is not None)


class Handover:
    """The protocol's state for one episode. Per step call :meth:`on_gate` (before asking the
    human: issues requests, gate handbacks) then :meth:`on_human` (responses, releases,
    timeout), which says who produced the executed action."""

    def __init__(self, config: HandoverConfig | None = None, *,
                 human_initiative: bool = False) -> None:
        self.config = config or HandoverConfig()
        hi = self.config.human_initiative
        self.human_initiative = human_initiative if hi is None else hi
        self.reset()

    def reset(self) -> None:
        self.phase = Phase.AGENT
        self.tor_time = math.nan
        self.takeover_time = math.nan
        self.transitions: list[str] = []

    def _go(self, phase: Phase, reason: str) -> None:
        self.phase = phase
        self.transitions.append(reason)

    def tor_elapsed(self, time: float) -> float:
        if self.phase in (Phase.TOR, Phase.FALLBACK):
            return max(time - self.tor_time, 0.0)
        return 0.0

    def on_gate(self, decision: GateDecision, time: float, urgency: float = 0.5) -> HumanView:
        """Apply the gate's decision at the start of a step; returns what the human sees."""
        self.transitions = []
        cfg = self.config
        if self.phase is Phase.AGENT and decision.request:
            self.tor_time = time
            self.takeover_time = math.nan
            self._go(Phase.TOR, "gate_request")
        elif (self.phase is Phase.HUMAN and decision.release and cfg.handback != "human"
              and time - self.takeover_time >= cfg.min_human_time - 1e-9):
            self._go(Phase.AGENT, "gate_release")
        alert = self.phase in (Phase.TOR, Phase.FALLBACK)
        return HumanView(phase=self.phase, tor_active=alert, tor_elapsed=self.tor_elapsed(time),
                         urgency=min(max(float(urgency), 0.0), 1.0) if alert else 0.0, time=time)

    def on_human(self, hin: HumanInput, time: float) -> Controller:
        """Apply the human's input; returns who produces this step's action."""
        answer = responded(hin)
        if self.phase is Phase.AGENT and answer and self.human_initiative:
            self.takeover_time = time
            self._go(Phase.HUMAN, "human_initiated")
        elif self.phase in (Phase.TOR, Phase.FALLBACK) and answer:
            self.takeover_time = time
            self._go(Phase.HUMAN, "human_response")
        elif (self.phase is Phase.TOR
              and time - self.tor_time >= self.config.timeout - 1e-9):
            self._go(Phase.FALLBACK, "tor_timeout")
        elif self.phase is Phase.HUMAN and hin.releases and self.config.handback != "gate":
            self._go(Phase.AGENT, "human_release")
        if self.phase is Phase.FALLBACK:
            return Controller.FALLBACK
        if self.phase is Phase.HUMAN and hin.action is not None:
            return Controller.HUMAN
        return Controller.AGENT

    @property
    def transition(self) -> str:
        """This step's reasons, comma-joined (``""`` when the phase did not change)."""
        return ",".join(self.transitions)
