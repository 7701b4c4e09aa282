"""The per-step intervention record and per-run metadata: what every supervised step leaves
behind, field by field. Storage lives in ``takeover.logio``.

Actions are stored as 1-D float32 arrays in every action space (a Discrete index ``i`` is
``[i]``), so one schema covers both action types and float bits round-trip exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA_VERSION = "2.0"
"""``major.minor``: readers refuse a newer major version, accept any minor.

2.0 (columnar episode files, manifest journal) added ``outcome``, ``hazard_fired``,
``hazard_onset``, ``mrm``, ``score_nonfinite`` and ``terminal_obs``; records read from a 1.0
log carry those fields' defaults. ``human_intent`` came later within 2.0 as an optional
column both ways: a reader without it ignores the column, and a 2.0 log written before it
reads with ``human_intent`` ``None`` on every step (no label, never a fabricated one)."""


@dataclass(frozen=True)
class StepRecord:
    """One control step of a supervised episode.

    Attributes:
        episode: episode id, unique within a run (e.g. ``"s0007-e0003"``).
        step: control step index within the episode, from 0.
        time: simulation time at the end of the step, s.
        wall_time: Unix time when the step was taken, s.
        obs: ``(*obs_shape,)`` float32, the observation the decision was made on.
        agent_action: ``(A,)`` float32, the agent's (ensemble mean) action.
        member_actions: ``(K, A)`` float32 per-member actions, or ``None``.
        human_action: ``(A,)`` float32 human action, or ``None`` when the human gave no
            input (never a fabricated no-op).
        action: ``(A,)`` float32, the action executed in the env.
        controller: ``"agent"``, ``"human"`` or ``"fallback"`` (who produced ``action``).
        phase: handover protocol state after the step (``takeover.types.Phase`` value).
        transition: why the phase changed this step (e.g. ``"gate_request"``,
            ``"human_response"``,
            ``"human_initiated"``, ``"tor_timeout"``), ``""`` if it did not.
        scores: every estimator's score this step, by estimator name.
        threshold: the gate's threshold this step (NaN for gates without one).
        gate_request: the gate asked for the human this step.
        tor_time: simulation time the pending/last takeover request was issued, or NaN.
        takeover_time: simulation time the human took control in this intervention, or NaN.
        reward: env reward.
        terminated: env terminated (collision / off-road).
        truncated: env truncated (time limit, user quit).
        reason: ``info["reason"]`` or ``"user_quit"``; ``""`` while running.
        info: the env's ground-truth info (scalars and strings only).
        outcome: ``info["outcome"]`` at the episode's last step (one of
            ``takeover.envs.OUTCOMES``: ``"arrived"``, ``"collision"``, ...), ``""`` on every
            other step.
        hazard_fired: ``info["hazard_fired"]``: the scenario's hazard has been triggered.
        hazard_onset: ``info["hazard_onset"]``, s: when it fired; NaN until then.
        mrm: ``info["mrm"]``: the minimal-risk manoeuvre was engaged this step (never a human
            intervention).
        score_nonfinite: an estimator returned a non-finite score this step and the gate
            treated it as maximal risk (the raw value stays in ``scores``).
        terminal_obs: ``(*obs_shape,)`` float32, the observation the env returned after the
            episode's last step (what a learner bootstraps from); set on the last record of
            an episode only, ``None`` elsewhere.
        human_intent: ``(2,)`` float32, what the human meant by ``human_action``: the
            acceleration it wants (m/s^2) and the lane it wants relative to the ego's lane
            at the step (-1 left, 0 keep, +1 right); ``None`` when the human gave no action
            or has no intent beyond its inputs (keyboard, gamepad), and in logs written
            before the field existed (``takeover.types.HumanInputs.intent``).
    """

    episode: str
    step: int
    time: float
    wall_time: float
    obs: np.ndarray
    agent_action: np.ndarray
    member_actions: np.ndarray | None
    human_action: np.ndarray | None
    action: np.ndarray
    controller: str
    phase: str
    transition: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    threshold: float = math.nan
    gate_request: bool = False
    tor_time: float = math.nan
    takeover_time: float = math.nan
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""
    hazard_fired: bool = False
    hazard_onset: float = math.nan
    mrm: bool = False
    score_nonfinite: bool = False
    terminal_obs: np.ndarray | None = None
    human_intent: np.ndarray | None = None


@dataclass(frozen=True)
class RunMeta:
    """Provenance of a log: enough to re-run it.

    Attributes:
        run_id: unique id of the run.
        seed: the run's base seed.
        config: the resolved configuration, as plain data.
        versions: package versions (python, numpy, torch, gymnasium, takeover, ...).
        git_rev: git revision of the code, ``""`` if unknown.
        git_dirty: the work tree had uncommitted changes.
        created: ISO 8601 creation time.
        schema_version: ``SCHEMA_VERSION`` of the writer.
    """

    run_id: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_rev: str = ""
    git_dirty: bool = False
    created: str = ""
    schema_version: str = SCHEMA_VERSION


def as_action_array(action: Any) -> np.ndarray:
    """Any env action (Box array or Discrete index) as the record's 1-D float32 array."""
    return np.atleast_1d(np.asarray(action, dtype=np.float32)).reshape(-1)
