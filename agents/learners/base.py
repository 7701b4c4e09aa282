"""What every learner shares: the interface, the one function that reads the intervention
log, and the human time a log cost.

A learner turns logged supervised episodes into an update of the agent, in place::

    learner = LEARNERS.make("hg-dagger", epochs=10)
    learner.start(agent)                       # once, before round 0 (e.g. freeze references)
    stats = learner.update(agent, read_episodes(*round_dirs), seed=round)

``update`` always receives *every* logged episode so far (the aggregate of all rounds):
DAgger-family methods aggregate by definition, and the off-policy methods replay it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from takeover.records import StepRecord

Episodes = Sequence[Sequence[StepRecord]]
"""Complete logged episodes, each a list of its step records in order."""


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


def read_episodes(*run_dirs: str | os.PathLike) -> list[list[StepRecord]]:
    """The complete episodes of the intervention logs in ``run_dirs``, in log order.

    Every learner reads the log through this one function, so it can be re-pointed at a
    faster (columnar) reader without touching the methods. Incomplete or damaged episodes
    are skipped (``takeover.logio.read_log`` only returns complete ones)."""
    from takeover.logio import read_log

    out: list[list[StepRecord]] = []
    for d in run_dirs:
        out += [list(recs) for recs in read_log(d).episodes.values()]
    return out


def intervened(record: StepRecord) -> bool:
    """The human drove this step and gave an input (a missing input is never a label)."""
    return record.controller == "human" and record.human_action is not None


def human_seconds(episodes: Episodes) -> float:
    """Simulated seconds under human control (the cost of supervision in human time, not
    steps): each human-controlled step counts its own duration, from the record times
    (``time`` is the simulated clock at the end of the step, from 0 at reset, s)."""
    total = 0.0
    for recs in episodes:
        t = np.array([r.time for r in recs], float)
        dt = np.diff(t, prepend=0.0)
        human = np.array([r.controller == "human" for r in recs])
        total += float(dt[human].sum())
    return total
