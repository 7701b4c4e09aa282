"""A risk critic in the style of ThriftyDAgger's Q_risk: the probability that the current
policy, left alone, fails (collides or leaves the road) within the next H seconds.

ThriftyDAgger learns Q_risk by TD on a sparse failure signal; here failures are labelled
directly from episode outcomes, which is exact for a fixed policy and needs no bootstrapping:
a step ``t`` of an episode that ends in a failure at step ``T`` is positive for horizon
``H`` when ``T - t < H * control_hz``. One network predicts several horizons at once (one
logit each), so a gate can ask "failure within 1 s?" as well as "within 5 s?". Dropout in
the hidden layers doubles as an MC-dropout head (``sample``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from takeover.agents.rollout import run_episodes


@dataclass(frozen=True)
class RiskSpec:
    """How a risk critic is built and what it predicts (stored in the checkpoint manifest).

    Attributes:
        obs_dim: flattened observation size.
        horizons: look-ahead horizons in seconds, one output each.
        primary: the horizon (s) reported as ``AgentOutput.risk``.
        control_hz: decisions per second of the env the labels came from.
        hidden: hidden layer sizes.
        dropout: dropout rate after each hidden layer (also used for MC-dropout samples).
    """

    obs_dim: int
    horizons: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
    primary: float = 2.0
    control_hz: float = 10.0
    hidden: tuple[int, ...] = (64, 64)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.primary not in self.horizons:
            raise ValueError(f"primary horizon {self.primary} s is not one of {self.horizons}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> RiskSpec:
        return cls(**cast("dict[str, Any]",
                          {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}))


class RiskCritic(nn.Module):
    """MLP ``obs -> P(failure within h)`` for each horizon ``h`` of its spec."""

    def __init__(self, spec: RiskSpec) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        last = spec.obs_dim
        for width in spec.hidden:
            layers += [nn.Linear(last, width), nn.ReLU(), nn.Dropout(spec.dropout)]
            last = width
        layers.append(nn.Linear(last, len(spec.horizons)))
        self.net = nn.Sequential(*layers)
        self.primary_index = spec.horizons.index(spec.primary)
        self.eval()

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.reshape(obs.shape[0], -1).to(torch.float32))

    @torch.no_grad()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """``(B, n_horizons)`` failure probabilities (dropout off)."""
        self.eval()
        return torch.sigmoid(self.logits(torch.as_tensor(obs))).numpy()

    @torch.no_grad()
    def sample(self, obs: np.ndarray, n: int = 10, seed: int = 0) -> np.ndarray:
        """``(n, B, n_horizons)`` MC-dropout samples (dropout on), reproducible by ``seed``."""
        self.train()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                x = torch.as_tensor(obs)
                return torch.stack([torch.sigmoid(self.logits(x)) for _ in range(n)]).numpy()
        finally:
            self.eval()


def failure_labels(n_steps: int, failed: bool, horizons_steps: np.ndarray) -> np.ndarray:
    """``(n_steps, H)`` bool labels for one episode of ``n_steps`` decisions.

    The episode's last decision (index ``n_steps - 1``) led to the failure, so it is 1 step
    from failure; decision ``t`` is ``n_steps - t`` steps away."""
    if not failed:
        return np.zeros((n_steps, len(horizons_steps)), dtype=bool)
    steps_to_fail = n_steps - np.arange(n_steps)
    return steps_to_fail[:, None] <= horizons_steps[None, :]


@dataclass
class RiskData:
    """Observations of policy rollouts with their failure labels."""

    obs: np.ndarray  # (N, *obs_shape) float32
    labels: np.ndarray  # (N, H) bool
    episode: np.ndarray  # (N,) int episode index (for grouped splits)
    outcomes: list[str] = field(default_factory=list)  # one reason per episode


def collect_rollouts(predict: Callable[[np.ndarray], np.ndarray], env_id: str,
                     seeds: list[int], spec: RiskSpec, **env_kwargs) -> RiskData:
    """Run the policy ``predict`` (``(B, *obs) -> (B,)`` actions) on one episode per seed
    and label every observation it acted on."""
    horizons_steps = np.round(np.asarray(spec.horizons) * spec.control_hz).astype(int)
    episodes = run_episodes(predict, env_id, seeds, keep_obs=True, **env_kwargs)
    return RiskData(
        np.concatenate([e.obs for e in episodes]),
        np.concatenate([failure_labels(len(cast(np.ndarray, e.obs)), e.failed, horizons_steps)
                        for e in episodes]),  # keep_obs=True: obs is set
        np.concatenate([np.full(len(cast(np.ndarray, e.obs)), i) for i, e in enumerate(episodes)]),
        [e.reason for e in episodes],
    )


def fit_risk(critic: RiskCritic, data: RiskData, *, epochs: int = 30, batch_size: int = 256,
             lr: float = 1e-3, seed: int = 0, pos_weight: float | None = None) -> list[float]:
    """Train ``critic`` by binary cross-entropy on ``data`` (in place); returns the mean loss
    per epoch. Positives are re-weighted (``pos_weight``, default the negative/positive
    ratio capped at 10) because failures are rare in ordinary driving."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = torch.as_tensor(data.obs).reshape(len(data.obs), -1)
        y = torch.as_tensor(data.labels, dtype=torch.float32)
        if pos_weight is None:
            pos = y.mean(0).clamp_min(1e-3)
            pw = ((1 - pos) / pos).clamp(1.0, 10.0)
        else:
            pw = torch.full((y.shape[1],), float(pos_weight))
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pw)
        opt = torch.optim.Adam(critic.parameters(), lr=lr)
        history = []
        critic.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(x), batch_size):
                idx = perm[i:i + batch_size]
                loss = loss_fn(critic.logits(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(x))
        critic.eval()
    return history
