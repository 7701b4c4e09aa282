"""The driving world: a numpy/numba highway simulator with hazards, as Gymnasium envs."""

from __future__ import annotations

import gymnasium as gym

from takeover.envs.config import SCENARIOS, HighwayConfig
from takeover.envs.hazards import HAZARDS, MIXED
from takeover.envs.highway import HighwayEnv, WorldState
from takeover.envs.outcomes import MRM_OUTCOMES, OUTCOMES, SAFE_OUTCOMES, SUCCESS_OUTCOMES

VERSION = "v2"
"""The world's version (Gymnasium's rule: changed dynamics or reward bump it)."""

ENV_IDS = {
    f"takeover/Highway-{VERSION}": "mixed",
    f"takeover/Plain-{VERSION}": "none",
    **{f"takeover/{h.env_name}-{VERSION}": name for name, h in HAZARDS.items()},
}
"""Registered ids and their scenario; ``Highway`` draws one hazard per episode from the
pinned ``hazards.MIXED`` and ``Plain`` has none (the novice agent's training world)."""

HAZARD_IDS = tuple(k for k, v in ENV_IDS.items() if v not in ("mixed", "none"))


def register_envs() -> None:
    """Register every id once (safe to call again, e.g. after a reload).

    ``gymnasium.make`` returns the env itself, without the ``OrderEnforcing`` and
    ``PassiveEnvChecker`` wrappers: the env enforces the order itself (``step`` before
    ``reset`` or after the episode's end raises, naming the fix) and checks every action
    (NaN and out-of-space actions raise), and the tests run Gymnasium's full env checker on
    every id; the two pass-through wrappers cost ~0.5 us of a ~7 us step (``takeover bench
    env``). ``gymnasium.make(id, disable_env_checker=False)`` still adds the checker."""
    for env_id, scenario in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="takeover.envs.highway:HighwayEnv",
                         vector_entry_point="takeover.envs.vector:HighwayVectorEnv",
                         kwargs={"scenario": scenario}, order_enforce=False,
                         disable_env_checker=True)

register_envs()

__all__ = ["ENV_IDS", "HAZARDS", "HAZARD_IDS", "MIXED", "MRM_OUTCOMES", "OUTCOMES",
           "SAFE_OUTCOMES", "SCENARIOS", "SUCCESS_OUTCOMES", "VERSION", "HighwayConfig",
           "HighwayEnv", "WorldState", "register_envs"]
