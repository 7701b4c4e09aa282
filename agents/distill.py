"""A bootstrapped ensemble around one trained policy, for epistemic uncertainty.

PPO runs with different seeds learn different driving styles, so they disagree everywhere
(idle vs faster is a matter of taste in open traffic) and their disagreement says little
about danger. ThriftyDAgger's ensemble instead fits every member to the *same* behaviour on
bootstrap resamples of the states it was trained on: members agree where the data is dense
and extrapolate differently where it is not. Here each student copies the teacher's action
distribution (KL to its probabilities, or its Gaussian mean) on a bootstrap resample of the
states the teacher visits in its training env, from its own random initialisation.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from takeover.agents.checkpoint import architecture, build_policy


def _targets(policy, obs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        dist = policy.get_distribution(obs).distribution
        if isinstance(policy.action_space, spaces.Discrete):
            return dist.probs
        return dist.mean


def distill(teacher, obs: np.ndarray, *, seed: int, bootstrap: bool = True, epochs: int = 20,
            batch_size: int = 256, lr: float = 1e-3, activation: str | None = None,
            fraction: float = 1.0):
    """One student SB3 policy (the teacher's architecture, optionally with another
    ``activation`` such as ``"ReLU"``) fitted to ``teacher`` on ``obs`` ``(N, *obs_shape)``,
    resampled with replacement when ``bootstrap`` (``fraction`` of ``N`` draws: smaller
    resamples leave rare states to fewer members, so members disagree more there); seeded."""
    discrete = isinstance(teacher.action_space, spaces.Discrete)
    arch = architecture(teacher)
    if activation is not None:
        arch["policy_kwargs"]["activation_fn"] = activation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = build_policy(arch, teacher.observation_space, teacher.action_space)
        rng = np.random.default_rng(seed)
        n = max(1, int(round(fraction * len(obs))))
        idx = rng.integers(0, len(obs), n) if bootstrap else np.arange(len(obs))
        x = torch.as_tensor(np.asarray(obs, np.float32)[idx])
        y = _targets(teacher, x)
        opt = torch.optim.Adam(student.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        student.set_training_mode(True)
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                b = perm[i:i + batch_size]
                dist = student.get_distribution(x[b]).distribution
                if discrete:  # KL(teacher || student)
                    loss = (y[b] * (torch.log(y[b] + 1e-8) - dist.logits)).sum(-1).mean()
                else:
                    loss = ((dist.mean - y[b]) ** 2).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        student.set_training_mode(False)
    return student


def bootstrap_ensemble(teacher, obs: np.ndarray, k: int, *, seed: int = 0,
                       include_teacher: bool = True, **kwargs) -> list:
    """``k`` policies: the teacher itself (member 0, if ``include_teacher``) and students
    distilled on independent bootstrap resamples of ``obs`` (seeds ``seed + 1, ...``)."""
    members = [teacher] if include_teacher else []
    while len(members) < k:
        members.append(distill(teacher, obs, seed=seed + len(members) + 1, **kwargs))
    return members
