"""Scripted humans: seeded, headless stand-ins for a person supervising the automation.

A scripted human answers takeover requests after a takeover time (a fixed 0.7 s floor plus a
log-normal part fitted to Eriksson & Stanton 2017, shortened by urgency, capped at 30 s),
sometimes misses a request (a lapse), grows complacent while the automation drives, takes
over on its own when it perceives danger, drives in its own style (headway, braking, gap
acceptance, anticipation, precision) with a brake reaction time, and hands control back once
the situation has been calm for a while. ``params`` documents the model and every source.

* :class:`ScriptedHumans` / :class:`AbsentHumans`: N humans over N worlds, arrays advanced by
  one numba call (``takeover.types.Humans``). ``HUMANS.make(name, num_worlds=N, **overrides)``.
* :class:`ScriptedHuman`: the same model as one per-world ``takeover.types.Human`` (a thin
  N = 1 view), for per-world loops and tests.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from takeover.registry import Registry
from takeover.types import PHASES, HumanInput, HumanView, HumanViews, Phase

from .batched import (
    AbsentHumans,
    ScriptedHumans,
    sample_reaction_times,
    sample_takeover_times,
)
from .params import LITERATURE, REACTION_FLOOR, SKILLS, HumanParams, make_params

HUMANS: Registry = Registry("human model")
"""name -> ``(num_worlds, **overrides) -> Humans``."""
HUMANS.register("perfect", functools.partial(ScriptedHumans, skill="perfect"))
HUMANS.register("expert", functools.partial(ScriptedHumans, skill="expert"))
HUMANS.register("average", functools.partial(ScriptedHumans, skill="average"))
HUMANS.register("novice", functools.partial(ScriptedHumans, skill="novice"))
HUMANS.register("absent", AbsentHumans)


class _OneWorld:
    """A single env's arrays seen as a batch of one (views, no copies)."""

    __slots__ = ("vehicles", "world", "config")

    def __init__(self, env: Any) -> None:
        self.vehicles = env.vehicles[None]
        self.world = env.world[None]
        self.config = env.config


_PHASE_CODE = {p: np.int8(i) for i, p in enumerate(PHASES)}


class ScriptedHuman:
    """One human of a registered model (``expert``, ``average``, ``novice``, ``perfect``,
    ``absent``) as a per-world ``takeover.types.Human``: an N = 1 view of the batched class.

    Args:
        skill: a name in :data:`HUMANS`.
        seed: seeds the human now (``reset(seed)`` re-seeds it).
        **overrides: any :class:`HumanParams` field.
    """

    def __init__(self, skill: str = "average", seed: int | None = None,
                 **overrides: Any) -> None:
        self.skill = skill
        self.batch = HUMANS.make(skill, num_worlds=1, **overrides)
        self.params: HumanParams | None = getattr(self.batch, "params", None)
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.batch.reset(np.zeros(1, dtype=np.int64), [seed])

    def act(self, obs: np.ndarray, info: dict[str, Any], env: Any, view: HumanView) -> HumanInput:
        env = getattr(env, "unwrapped", env)
        views = HumanViews(phase=np.array([_PHASE_CODE[Phase(view.phase)]]),
                           tor_active=np.array([bool(view.tor_active)]),
                           tor_elapsed=np.array([float(view.tor_elapsed)]),
                           urgency=np.array([float(view.urgency)]),
                           time=np.array([float(view.time)]))
        batch_info = {k: np.array([info[k]]) for k in ("ttc", "hazard_active") if k in info}
        out = self.batch.act(obs[None], batch_info, _OneWorld(env), views)
        if not out.wants_control[0] and not out.releases[0] and not out.has_action[0]:
            return HumanInput()
        action = intent = None
        if out.has_action[0]:
            action = int(out.action[0]) if out.action.ndim == 1 else out.action[0]
            if out.intent is not None:  # the label the batched model gives with the action
                intent = np.array(out.intent[0], dtype=np.float32)
        return HumanInput(action=action, wants_control=bool(out.wants_control[0]),
                          releases=bool(out.releases[0]), intent=intent)

    @property
    def complacency(self) -> float:
        return float(self.batch.complacency[0])

    @property
    def last_takeover_time(self) -> float:
        return float(self.batch.last_takeover_time[0])


__all__ = [
    "HUMANS", "LITERATURE", "REACTION_FLOOR", "SKILLS", "AbsentHumans", "HumanParams",
    "ScriptedHuman", "ScriptedHumans", "make_params", "sample_reaction_times",
    "sample_takeover_times",
]
