"""Small builders shared by several test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces


def tiny_checkpoint(path, seed: int = 0):
    """A 3-member random-weight PPO ensemble (8 hidden units) saved as a safe checkpoint:
    an agent that loads in milliseconds for tests of everything around agents."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    from takeover.agents.checkpoint import save_agent
    from takeover.agents.policy import EnsembleAgent

    torch.manual_seed(seed)
    obs, act = spaces.Box(-1, 1, (9, 7), np.float32), spaces.Discrete(5)
    pols = [ActorCriticPolicy(obs, act, lambda _: 1e-3, net_arch=[8]) for _ in range(3)]
    return save_agent(EnsembleAgent(pols), path)


class ConstantAgent:
    """Holds lane and speed: fails every hazard (stateless, so counterfactual rollouts
    cannot disturb it)."""

    def __init__(self, env):
        self.env = env.unwrapped

    def act(self, obs):
        from takeover.envs.drivers import ConstantSpeedDriver
        from takeover.types import AgentOutput

        return AgentOutput(action=ConstantSpeedDriver()(self.env))
