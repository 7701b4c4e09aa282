"""Simulated seconds per wall second of the single and batched env, and of highway-env's
``highway-fast-v0`` with a matched vehicle count when it is installed, measured in the same
run so the ratios hold on a noisy machine.

    python -m takeover.experiments.benchmarks.env      # or: takeover bench env
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def _rate(step: Callable[[], float], seconds: float) -> float:
    """Simulated seconds per wall second; best of three windows (noise only slows)."""
    best = 0.0
    for _ in range(3):
        sim = 0.0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            sim += step()
        best = max(best, sim / elapsed)
    return best


def single_env(seconds: float, **config) -> float:
    import gymnasium as gym

    import takeover.envs  # noqa: F401

    env = gym.make("takeover/Highway-v1", **config)
    env.reset(seed=0)
    dt = env.unwrapped.config.dt
    action = np.zeros(2, dtype=np.float32)

    def step() -> float:
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
        return dt

    return _rate(step, seconds)


def batched_env(seconds: float, num_envs: int, **config) -> float:
    from takeover.envs.vector import make_vector_env

    env = make_vector_env("takeover/Highway-v1", num_envs, **config)
    env.reset(seed=0)
    dt = env.config.dt
    actions = np.zeros((num_envs, 2))

    def step() -> float:
        env.step(actions)
        return dt * num_envs

    return _rate(step, seconds)


def highway_fast(seconds: float, vehicles: int) -> float | None:
    try:
        import gymnasium as gym
        import highway_env  # noqa: F401
    except ImportError:
        return None
    env = gym.make("highway-fast-v0", config={"vehicles_count": vehicles})
    env.reset(seed=0)
    cfg = env.unwrapped.config
    dt = 1.0 / cfg["policy_frequency"]
    idle = 1  # IDLE meta-action

    def step() -> float:
        _, _, term, trunc, _ = env.step(idle)
        if term or trunc:
            env.reset()
        return dt

    return _rate(step, seconds)


def main(seconds: float = 6.0, num_envs: int = 256) -> dict[str, float | None]:
    """Measure everything; returns sim-seconds per wall-second and the ratios."""
    single_env(0.2)  # compile / warm caches outside the timed windows
    batched_env(0.2, 4)
    out: dict[str, float | None] = {
        "single": single_env(seconds),
        "batched": batched_env(seconds, num_envs),
        # highway-fast-v0 runs physics at 5 Hz and the policy at 1 Hz; the same rates here
        "single_matched_rates": single_env(seconds, control_hz=1.0, substeps=5),
        "batched_matched_rates": batched_env(seconds, num_envs, control_hz=1.0, substeps=5),
        "highway_fast": highway_fast(seconds, vehicles=20),
    }
    ref = out["highway_fast"]
    if ref:
        for key in ("single", "batched", "single_matched_rates", "batched_matched_rates"):
            out[f"{key}_ratio"] = out[key] / ref
    return out


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k:28s} {v if v is None else round(v, 1)}")
