"""Evaluate an agent over N seeds per scenario: success, collision and off-road rates and
mean speed, each with a 95% percentile-bootstrap confidence interval.

An episode is a *success* when it arrives at the route's end (``info["outcome"] ==
"arrived"``, the env's only success outcome); ``stopped`` counts standstills in a live lane and
``hazard_met`` the episodes whose hazard fired. Seeds ``seed0 .. seed0 + n_seeds - 1`` are used for every scenario, so two agents
evaluated with the same arguments face the same traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from takeover.agents.rollout import Episode, run_episodes

METRICS = ("success", "collision", "offroad", "mean_speed")
EXTRA_METRICS = ("stopped", "timeout", "hazard_met")


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% bootstrap confidence interval ``[lo, hi]``."""

    mean: float
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> Estimate:
    """Percentile bootstrap of the mean (resampling episodes with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot estimate a mean from zero episodes")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (n_boot, values.size))].mean(1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return Estimate(float(values.mean()), float(lo), float(hi))


def summarize(episodes: list[Episode]) -> dict[str, Estimate]:
    from takeover.envs import SUCCESS_OUTCOMES

    def rate(pred) -> Estimate:
        return bootstrap_ci(np.array([pred(e) for e in episodes], dtype=np.float64))

    return {
        "success": rate(lambda e: e.outcome in SUCCESS_OUTCOMES),
        "collision": rate(lambda e: e.outcome == "collision"),
        "offroad": rate(lambda e: e.outcome == "off_road"),
        "mean_speed": bootstrap_ci(np.array([e.mean_speed for e in episodes])),
        "stopped": rate(lambda e: e.outcome == "stopped"),
        "timeout": rate(lambda e: e.outcome == "timeout"),
        "hazard_met": rate(lambda e: e.hazard_fired),
    }


def evaluate(agent, env_ids: list[str], *, n_seeds: int = 50, seed0: int = 0,
             **env_kwargs) -> dict[str, dict[str, Estimate]]:
    """Run ``agent`` (anything with ``predict(obs_batch)`` and ``action_space``) for
    ``n_seeds`` episodes on each env; returns ``{env_id: {metric: Estimate}}``."""
    if n_seeds < 1:
        raise ValueError(f"n_seeds={n_seeds} must be at least 1")
    action_type = "discrete" if isinstance(agent.action_space, spaces.Discrete) else "continuous"
    env_kwargs.setdefault("action_type", action_type)
    seeds = list(range(seed0, seed0 + n_seeds))
    return {env_id: summarize(run_episodes(agent.predict, env_id, seeds, **env_kwargs))
            for env_id in env_ids}


def render_table(results: dict[str, dict[str, Estimate]], title: str = "evaluation"):
    """A rich ``Table`` of ``evaluate``'s results."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("scenario")
    for m in METRICS:
        table.add_column(m.replace("_", " ") + (" (m/s)" if m == "mean_speed" else ""),
                         justify="right")
    for env_id, row in results.items():
        cells = [f"{row[m].mean:.2f} [{row[m].lo:.2f}, {row[m].hi:.2f}]" for m in METRICS[:3]]
        speed = row["mean_speed"]
        cells.append(f"{speed.mean:.1f} [{speed.lo:.1f}, {speed.hi:.1f}]")
        table.add_row(env_id.removeprefix("takeover/"), *cells)
    return table
