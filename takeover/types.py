"""The small typed interfaces between the layers (env -> agent -> supervisor -> human): every
Protocol of the project and the frozen dataclasses they exchange, in one module.

Each is a frozen dataclass or a ``Protocol``, so a new agent, estimator, gate or human
model plugs in by writing one class and adding one registry line.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class Controller(str, enum.Enum):
    """Who produced the executed action of a step."""

    AGENT = "agent"
    HUMAN = "human"
    FALLBACK = "fallback"  # the minimal-risk manoeuvre after an unanswered takeover request


class Phase(str, enum.Enum):
    """The handover protocol's states (see ``takeover.supervisor.handover``)."""

    AGENT = "agent"  # the agent drives
    TOR = "tor"  # a takeover request is pending; the agent still drives
    HUMAN = "human"  # the human drives
    FALLBACK = "fallback"  # minimal-risk manoeuvre: nobody answered the request


@dataclass(frozen=True)
class AgentOutput:
    """What an agent says about one observation.

    Attributes:
        action: the action the agent would execute, in the env's action space:
            ``(A,)`` float32 for Box spaces, an ``int`` for Discrete.
        member_actions: ``(K, A)`` float32 actions of the K ensemble members for Box
            spaces, ``(K,)`` int for Discrete; ``None`` for a single policy.
        probs: ``(K, n)`` (ensemble) or ``(n,)`` action probabilities for Discrete spaces.
        mean: ``(K, A)`` or ``(A,)`` Gaussian means for Box spaces (before squashing).
        log_std: same shape as ``mean``; log standard deviations.
        risk: the risk critic's probability of failure within its horizon, or ``None``.
        extra: any further estimator inputs (e.g. MC-dropout samples), by name.
    """

    action: Any
    member_actions: np.ndarray | None = None
    probs: np.ndarray | None = None
    mean: np.ndarray | None = None
    log_std: np.ndarray | None = None
    risk: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentOutputs:
    """:class:`AgentOutput` of N observations at once, every field with a leading world axis
    (what the supervision engine passes to estimators and gates; agents may return it from
    ``act_arrays(obs)`` to skip building N objects).

    Attributes:
        action: ``(N,)`` int64 (Discrete) or ``(N, A)`` float32 (Box).
        member_actions: ``(N, K)`` int or ``(N, K, A)`` float32, or ``None``.
        probs: ``(N, K, n)`` or ``(N, n)``, or ``None``.
        mean, log_std: ``(N, K, A)`` or ``(N, A)``, or ``None``.
        risk: ``(N,)`` float64, or ``None``.
        extra: by name, arrays with a leading ``N`` axis; ``risk_by_horizon`` is
            ``{horizon_s: (N,) array}``.
    """

    action: np.ndarray
    member_actions: np.ndarray | None = None
    probs: np.ndarray | None = None
    mean: np.ndarray | None = None
    log_std: np.ndarray | None = None
    risk: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.action)

    def row(self, i: int) -> AgentOutput:
        """World ``i``'s output as one :class:`AgentOutput`."""
        extra: dict[str, Any] = {}
        for k, v in self.extra.items():
            extra[k] = ({h: float(a[i]) for h, a in v.items()} if isinstance(v, dict)
                        else v[i])
        act = self.action[i]
        return AgentOutput(
            action=int(act) if self.action.ndim == 1 else act,
            member_actions=None if self.member_actions is None else self.member_actions[i],
            probs=None if self.probs is None else self.probs[i],
            mean=None if self.mean is None else self.mean[i],
            log_std=None if self.log_std is None else self.log_std[i],
            risk=None if self.risk is None else float(self.risk[i]), extra=extra)

    @classmethod
    def stack(cls, outs: list[AgentOutput] | tuple[AgentOutput, ...]) -> AgentOutputs:
        """N single outputs as one batch (fields ``None`` in the first are ``None``)."""
        first = outs[0]

        def col(name: str) -> np.ndarray | None:
            if getattr(first, name) is None:
                return None
            return np.stack([np.asarray(getattr(o, name)) for o in outs])

        a0 = np.asarray(first.action)
        if a0.ndim == 0 and np.issubdtype(a0.dtype, np.integer):
            action = np.array([int(o.action) for o in outs], dtype=np.int64)
        else:
            action = np.stack([np.asarray(o.action, dtype=np.float32).reshape(-1)
                               for o in outs])
        extra: dict[str, Any] = {}
        for k, v in first.extra.items():
            if isinstance(v, dict):
                extra[k] = {h: np.array([float(o.extra[k][h]) for o in outs]) for h in v}
            else:
                extra[k] = np.stack([np.asarray(o.extra[k]) for o in outs])
        risk = None if first.risk is None else np.array(
            [math.nan if o.risk is None else float(o.risk) for o in outs])
        return cls(action=action, member_actions=col("member_actions"), probs=col("probs"),
                   mean=col("mean"), log_std=col("log_std"), risk=risk, extra=extra)


@runtime_checkable
class Agent(Protocol):
    """A driving policy the supervisor can query."""

    def act(self, obs: np.ndarray) -> AgentOutput: ...


@dataclass(frozen=True)
class HumanView:
    """What the supervisor tells the human each step.

    Attributes:
        phase: the protocol state before this step.
        tor_active: a takeover request is being shown (alert on).
        tor_elapsed: seconds since the current request was issued (0 when none).
        urgency: 0..1, how urgent the request is (e.g. predicted risk), shortens reactions.
        time: simulation time, s.
    """

    phase: Phase
    tor_active: bool
    tor_elapsed: float
    urgency: float
    time: float


@dataclass(frozen=True)
class HumanInput:
    """A human's answer for one step.

    Attributes:
        action: the human's action in the env's action space, or ``None`` for "no input"
            (never replaced by a default no-op: a missing input stays missing in the log).
        wants_control: the human takes (or keeps) control this step.
        releases: the human hands control back to the agent this step.
        intent: ``(2,)`` float32, what the human meant by ``action`` (the row
            :attr:`HumanInputs.intent` describes), or ``None``: a per-world scripted human
            gives the label its batched model computes, so a per-world run logs the same
            ``human_intent`` as a batched one; a keyboard or gamepad has none.
    """

    action: Any = None
    wants_control: bool = False
    releases: bool = False
    intent: np.ndarray | None = None


NO_INPUT = HumanInput()


@runtime_checkable
class Human(Protocol):
    """A person at the keyboard, a scripted model, or a replay of a recorded drive."""

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: np.ndarray, info: Mapping[str, Any], env: Any, view: HumanView) -> HumanInput:
        """``env`` is the unwrapped env (scripted humans may read its true state)."""
        ...


# --- the batched human interface -------------------------------------------------------
# The supervision engine steps N worlds at once, so humans are advanced N at a time too:
# scripted models hold their state as arrays over worlds; a person at the keyboard, a
# gamepad or a replay is N = 1 behind ``PerWorldHumans`` (supervisor), which adapts any
# per-world ``Human`` above.

PHASES: tuple[Phase, ...] = (Phase.AGENT, Phase.TOR, Phase.HUMAN, Phase.FALLBACK)
"""Phase codes of the batched interface: ``PHASES[code]`` is the phase, so AGENT=0, TOR=1,
HUMAN=2, FALLBACK=3 (int8 arrays)."""


@dataclass(frozen=True)
class HumanViews:
    """What the supervisor tells N humans (one per world) this step; every field is ``(N,)``.

    Attributes:
        phase: int8 phase codes (see :data:`PHASES`) before this step.
        tor_active: bool, a takeover request is being shown (alert on).
        tor_elapsed: float64 s since the current request was issued (0 when none).
        urgency: float64 in 0..1, how urgent the request is; shortens reactions.
        time: float64 simulation time, s.
    """

    phase: np.ndarray
    tor_active: np.ndarray
    tor_elapsed: np.ndarray
    urgency: np.ndarray
    time: np.ndarray


@dataclass(frozen=True)
class HumanInputs:
    """N humans' answers for one step.

    Attributes:
        action: ``(N, A)`` float32 for Box action spaces, ``(N,)`` int64 for Discrete; a row
            is meaningful only where ``has_action`` is set (a missing input stays missing:
            it is never replaced by a default no-op).
        has_action: ``(N,)`` bool, the human gave an action this step.
        wants_control: ``(N,)`` bool, the human takes (or keeps) control this step.
        releases: ``(N,)`` bool, the human hands control back to the agent this step.
        intent: ``(N, 2)`` float32, what the human meant by its action, or ``None`` for a
            human with no intent beyond its inputs (keyboard, gamepad). Column 0 is the
            acceleration it wants, m/s^2 (the one its action realises, before motor noise
            or a wrong-action slip); column 1 the lane it wants relative to the ego's lane
            now (-1 left, 0 keep, +1 right; rarely further). NaN rows where ``has_action``
            is not set. Logged as a label because a scripted human's intent is what makes
            its driving learnable, more than the discrete meta-actions that realise it.
    """

    action: np.ndarray
    has_action: np.ndarray
    wants_control: np.ndarray
    releases: np.ndarray
    intent: np.ndarray | None = None


@runtime_checkable
class Humans(Protocol):
    """N humans, one per world, advanced together.

    ``world`` is the batched world the humans may read the true state of: for the
    takeover envs, an object with ``vehicles`` ``(N, S, C)``, ``world`` ``(N, W)`` and
    ``config`` (the ``HighwayConfig``); ``info`` holds the batched env's info arrays
    (``info[key][i]`` is world i's value).
    """

    def reset(self, worlds: np.ndarray, seeds: list[int | None]) -> None:
        """Start new episodes in ``worlds`` (int indices), seeded by ``seeds`` (same length);
        the others keep their state."""
        ...

    def act(self, obs: np.ndarray, info: dict[str, Any], world: Any,
            views: HumanViews) -> HumanInputs: ...


# --- the supervisor's plugin interfaces: estimators and gates ------------------------------
@runtime_checkable
class Estimator(Protocol):
    """Scores N steps at once (one per world); higher means the agent is less trustworthy.

    ``score_batch(obs, out, info)``: ``obs`` ``(N, *obs_shape)``, ``out`` the agent's
    :class:`~takeover.types.AgentOutputs`, ``info`` the env's info arrays by key (``(N,)``
    each) -> ``(N,)`` float64. ``needs`` names what the estimator must be given at build
    time (``"reference_obs"``: the agent's training observations), so callers wire it by
    capability, not by name."""

    name: str
    needs: frozenset[str]

    def score_batch(self, obs: np.ndarray, out: AgentOutputs,
                    info: Mapping[str, Any]) -> np.ndarray: ...


@dataclass(frozen=True)
class GateContext:
    """What a gate may look at besides its score, for N worlds.

    Attributes:
        time: ``(N,)`` simulation time, s.
        phase: ``(N,)`` int8 protocol state before this step (``takeover.types.PHASES``).
        info: the env's info for the current observations, ``(N,)`` arrays by key.
        out: the agent's outputs for the current observations.
        human_action: ``(N, A)`` float64 latest human action (previous steps), NaN rows
            where the human has given none this episode.
        scores: every estimator's ``(N,)`` scores this step, by name (non-finite -> +inf).
        dt: control period, s.
    """

    time: np.ndarray
    phase: np.ndarray
    info: Mapping[str, Any]
    out: AgentOutputs
    human_action: np.ndarray
    scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    dt: float = 0.1


@dataclass(frozen=True)
class GateDecision:
    """``(N,)`` arrays. ``request``: the human should drive; ``threshold``: the level the
    score was compared to (NaN if none); ``release``: the gate allows handing control back."""

    request: np.ndarray
    threshold: np.ndarray
    release: np.ndarray


@runtime_checkable
class Gate(Protocol):
    name: str
    accepts_human_initiative: bool

    def bind(self, n: int) -> None:
        """Size the per-world state for ``n`` worlds (keeps what was learned online)."""
        ...

    def decide(self, score: np.ndarray, ctx: GateContext) -> GateDecision: ...

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None: ...

    def end_episode(self, worlds: np.ndarray) -> None: ...


# --- learning from interventions --------------------------------------------------------
class Step(Protocol):
    """One logged step as a learner reads it: the fields ``takeover.records.StepRecord``
    (straight from a supervisor) and ``takeover.agents.learners.base.LoggedStep`` (read
    back from a log) share. Read-only, as both are frozen dataclasses."""

    @property
    def episode(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def time(self) -> float:
        """simulation time at the end of the step, s"""
    @property
    def obs(self) -> np.ndarray: ...
    @property
    def action(self) -> np.ndarray: ...
    @property
    def agent_action(self) -> np.ndarray: ...
    @property
    def human_action(self) -> np.ndarray | None: ...
    @property
    def controller(self) -> str: ...
    @property
    def reward(self) -> float: ...
    @property
    def terminated(self) -> bool: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def info(self) -> Mapping[str, Any]: ...


Episodes = Sequence[Sequence[Step]]
"""Complete logged episodes, each a list of its steps in order (``LoggedStep`` from
:func:`read_episodes`, or ``StepRecord`` straight from a supervisor)."""


@runtime_checkable
class Learner(Protocol):
    """One method of learning from interventions.

    Attributes:
        name: the registry name.
        agent_kind: ``"actor-critic"`` (SB3 PPO/A2C policies: ``agent.policies``) or
            ``"q"`` (an SB3 DQN/TD3 model: ``agent.model``), so a runner can pick the
            starting agent and refuse a mismatch before any episode is played.
    """

    name: str
    agent_kind: str

    def start(self, agent: Any) -> None:
        """Called once with the starting agent, before the first update."""

    def update(self, agent: Any, episodes: Episodes, *, seed: int) -> dict[str, float]:
        """Fine-tune ``agent`` in place on ``episodes``; returns a few scalar diagnostics
        (losses, sample counts). Deterministic for a given ``seed``."""


@runtime_checkable
class CloningLearner(Learner, Protocol):
    """A learner that behaviour-clones the human's labels into an actor-critic agent
    (``hg-dagger``, ``thrifty``).

    Attributes:
        references: one frozen policy per member that the update's KL anchor keeps each
            member close to on the agent-driven steps (``None``: no anchor); set by
            ``start`` or by the caller.
        history: the first member's BC loss per epoch in the last ``update``.
    """

    references: list[Any] | None
    history: list[float]
