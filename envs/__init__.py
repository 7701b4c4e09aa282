"""The driving world: a numpy/numba highway simulator with hazards, as Gymnasium envs."""

from __future__ import annotations

import gymnasium as gym

from takeover.envs.config import SCENARIOS, HighwayConfig
from takeover.envs.highway import HighwayEnv, WorldState

ENV_IDS = {
    "takeover/Highway-v0": "mixed",
    "takeover/Plain-v0": "none",
    "takeover/SuddenBrake-v0": "sudden_brake",
    "takeover/CutIn-v0": "cut_in",
    "takeover/StalledCar-v0": "stalled_car",
    "takeover/Merge-v0": "merge",
    "takeover/LaneClosure-v0": "lane_closure",
}
"""Registered ids and their scenario; ``Highway-v0`` draws one hazard per episode and
``Plain-v0`` has none (the novice agent's training world)."""

HAZARD_IDS = tuple(k for k, v in ENV_IDS.items() if v not in ("mixed", "none"))


def register_envs() -> None:
    """Register every id once (safe to call again, e.g. after a reload)."""
    for env_id, scenario in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="takeover.envs.highway:HighwayEnv",
                         vector_entry_point="takeover.envs.vector:HighwayVectorEnv",
                         kwargs={"scenario": scenario})

register_envs()

__all__ = ["ENV_IDS", "HAZARD_IDS", "SCENARIOS", "HighwayConfig", "HighwayEnv", "WorldState",
           "register_envs"]
