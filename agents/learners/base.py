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
from dataclasses import dataclass
from typing import Any

import numpy as np

# the interfaces live in the base
from takeover.types import Episodes, Learner, Step  # noqa: F401


@dataclass(frozen=True, slots=True)
class LoggedStep:
    """One logged step as the learners read it: a row of
    ``takeover.logio.read_columns`` (the durable columnar log), with the same field names
    as ``takeover.records.StepRecord`` plus ``next_obs``: the next step's observation, or
    at an episode's last step the terminal observation the env returned (``None`` when the
    log has none, e.g. a schema-1.0 log). ``human_intent`` is the ``(2,)`` float32 label of
    what the human meant (acceleration m/s^2, lane relative to the ego's), ``None`` where
    the log holds none (no action, a human without intent, a log older than the column)."""

    episode: str
    step: int
    time: float
    obs: np.ndarray
    next_obs: np.ndarray | None
    action: np.ndarray
    agent_action: np.ndarray
    human_action: np.ndarray | None
    controller: str
    reward: float
    terminated: bool
    truncated: bool
    reason: str
    outcome: str
    info: dict[str, Any]
    human_intent: np.ndarray | None = None


def _steps(cols: dict[str, np.ndarray], episode: str) -> list[LoggedStep]:
    n = len(cols["step"])
    has_next = np.ones(n, bool)
    has_next[-1] = bool(cols["has_terminal_obs"][0])
    intent, has_intent = cols.get("human_intent"), cols.get("has_human_intent")
    if intent is None or has_intent is None:
        has_intent = np.zeros(n, bool)
    info_keys = [k for k in cols if k.startswith("info.") and cols[k].dtype.kind in "fbiU"]
    info_rows = [dict(zip([k[5:] for k in info_keys], vals, strict=True))
                 for vals in zip(*(cols[k].tolist() for k in info_keys), strict=True)] \
        if info_keys else [{} for _ in range(n)]
    return [LoggedStep(
        episode=episode, step=int(cols["step"][i]), time=float(cols["time"][i]),
        obs=cols["obs"][i], next_obs=cols["next_obs"][i] if has_next[i] else None,
        action=cols["action"][i], agent_action=cols["agent_action"][i],
        human_action=cols["human_action"][i] if cols["has_human_action"][i] else None,
        controller=str(cols["controller"][i]), reward=float(cols["reward"][i]),
        terminated=bool(cols["terminated"][i]), truncated=bool(cols["truncated"][i]),
        reason=str(cols["reason"][i]), outcome=str(cols["outcome"][i]), info=info_rows[i],
        human_intent=intent[i] if intent is not None and has_intent[i] else None,
    ) for i in range(n)]


def read_episodes(*run_dirs: str | os.PathLike) -> list[list[LoggedStep]]:
    """The complete episodes of the intervention logs in ``run_dirs``, in log order.

    Every learner reads the log through this one function, and it reads the durable
    columnar format (``takeover.logio.read_columns``), so training always exercises what
    was written to disk. Incomplete or damaged episodes are skipped (as ``read_columns``
    skips them)."""
    from takeover.logio import read_columns

    out: list[list[LoggedStep]] = []
    for d in run_dirs:
        out += [_steps(cols, ep) for ep, cols in read_columns(d, by_episode=True).items()
                if len(cols["step"])]
    return out


def ended_in_failure(record: Any) -> bool:
    """The episode's last step ended in a failure (collision, off-road), by its outcome
    (v1: arriving also terminates, so ``terminated`` alone is not a failure); records of a
    log without outcomes fall back to their reason."""
    from takeover.agents.rollout import FAILURE_REASONS

    return (getattr(record, "outcome", "") or record.reason) in FAILURE_REASONS


def intervened(record: Step) -> bool:
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
