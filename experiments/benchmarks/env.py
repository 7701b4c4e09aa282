"""How fast the world runs: simulated seconds per wall second of the single env and of the
batched env at 1, 16, 256 and 4,096 worlds, as ratios against highway-env's
``highway-fast-v0`` (matched vehicle count) measured in the same run, plus microseconds per
world-step and where they go (``takeover.envs.profile``).

Every policy does nothing (zero action; highway-fast's IDLE), and resets are counted: an
ended episode is reset inside the timed window. The measurements are interleaved in
``repeats`` rounds, each round timing every subject once for ``seconds``; a ratio is the
median over rounds of the ratio within a round, so load that comes and goes on a shared
machine hits both sides of it.

    python -m takeover.experiments.benchmarks.env      # or: takeover bench env [--json]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np

SIZES = (1, 16, 256, 4096)
HEADLINE = 256
"""The batched size the acceptance ratio is quoted at."""


def _window(step: Callable[[], float], seconds: float) -> tuple[float, float, float]:
    """Run ``step`` (returns the simulated seconds it advanced) for ``seconds`` of wall
    time; return (simulated s, wall s, this process's CPU s)."""
    sim = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        sim += step()
    return sim, elapsed, time.process_time() - cpu


def single_env(**config) -> tuple[Callable[[], float], float]:
    """``gymnasium.make`` of the mixed world (its wrappers included, as highway-fast's)."""
    import gymnasium as gym

    import takeover.envs  # noqa: F401

    env = gym.make("takeover/Highway-v2", **config)
    env.reset(seed=0)
    dt = cast(Any, env.unwrapped).config.dt
    action = np.zeros(2, dtype=np.float32)

    def step() -> float:
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
        return dt

    return step, dt


def batched_env(num_envs: int, threads: int = 1, **config):
    from takeover.envs.vector import make_vector_env

    env = make_vector_env("takeover/Highway-v2", num_envs, threads=threads, **config)
    env.reset(seed=0)
    dt = env.config.dt
    actions = np.zeros((num_envs, 2))

    def step() -> float:
        env.step(actions)
        return dt * num_envs

    return step, env, actions


def highway_fast(vehicles: int = 20) -> Callable[[], float] | None:
    try:
        import gymnasium as gym
        import highway_env  # noqa: F401
    except ImportError:
        return None
    env = gym.make("highway-fast-v0", config={"vehicles_count": vehicles})
    env.reset(seed=0)
    dt = 1.0 / cast(Any, env.unwrapped).config["policy_frequency"]
    idle = 1  # IDLE meta-action

    def step() -> float:
        _, _, term, trunc, _ = env.step(idle)
        if term or trunc:
            env.reset()
        return dt

    return step


def main(seconds: float = 1.0, repeats: int = 5, sizes: tuple[int, ...] = SIZES,
         profile_steps: int = 200) -> dict:
    """Measure everything (about ``repeats * seconds * (2 len(sizes) + 2)`` s of wall time).

    Returns a flat dict: ``highway_fast`` (sim s per wall s, or None without highway-env),
    ``single`` / ``batched_<N>`` (sim s per wall s), their ``_ratio`` to highway-fast,
    ``single_us_per_step`` / ``batched_<N>_us_per_world_step`` (wall), the same per CPU
    second of this process (``_cpu_ratio``, ``_cpu_us_per_...``: what the work costs when
    other processes share the cores), ``batched_<N>_threads<T>`` (the same worlds stepped
    in ``T`` blocks on numba's ``T`` threads, ``HighwayVectorEnv(threads=T)``: wall time
    falls, CPU time does not), ``batched_<N>_matched`` (at highway-fast's own
    rates: decisions at 1 Hz, physics at 5 Hz), ``repeats``, ``seconds``, and ``profile``
    (ns per world-step per phase at ``HEADLINE`` worlds, medians over steps).
    """
    import numba

    from takeover.envs.profile import profile

    subjects: dict[str, Callable[[], float]] = {}
    per_step: dict[str, float] = {}  # world-steps per sim second, to turn rates into us
    step, dt = single_env()
    subjects["single"], per_step["single"] = step, 1.0 / dt
    for n in sizes:
        step, env, _ = batched_env(n)
        subjects[f"batched_{n}"], per_step[f"batched_{n}"] = step, 1.0 / env.config.dt
    threads = numba.get_num_threads()  # the cores numba may use (2 on the CI machine)
    for n in [n for n in sizes if n >= 16 and threads > 1]:  # in `threads` blocks at once
        step, env, _ = batched_env(n, threads=threads)
        key = f"batched_{n}_threads{threads}"
        subjects[key], per_step[key] = step, 1.0 / env.config.dt
    headline = HEADLINE if HEADLINE in sizes else sizes[-1]
    step, env, _ = batched_env(headline, control_hz=1.0, substeps=5)
    subjects[f"batched_{headline}_matched"] = step
    ref = highway_fast()
    fn: Callable[[], float] | None
    for fn in subjects.values():  # compile, warm caches, reach typical traffic
        _window(fn, 0.05)
    names = ("highway_fast", *subjects)
    rates: dict[str, list[float]] = {k: [] for k in names}  # sim s per wall s
    cpu_rates: dict[str, list[float]] = {k: [] for k in names}  # sim s per CPU s
    for _ in range(repeats):
        for name in names:
            fn = ref if name == "highway_fast" else subjects[name]
            if fn is None:
                continue
            sim, wall, cpu = _window(fn, seconds)
            rates[name].append(sim / wall)
            cpu_rates[name].append(sim / max(cpu, 1e-9))
    out: dict = {"repeats": repeats, "seconds": seconds}
    hf = np.array(rates["highway_fast"]) if ref is not None else None
    hf_cpu = np.array(cpu_rates["highway_fast"]) if ref is not None else None
    out["highway_fast"] = float(np.median(hf)) if hf is not None else None
    for name in subjects:
        r, c = np.array(rates[name]), np.array(cpu_rates[name])
        out[name] = float(np.median(r))
        if hf is not None:
            out[f"{name}_ratio"] = float(np.median(r / hf))
            out[f"{name}_cpu_ratio"] = float(np.median(c / hf_cpu))
        if name in per_step:
            unit = "us_per_step" if name == "single" else "us_per_world_step"
            out[f"{name}_{unit}"] = float(np.median(1e6 / (r * per_step[name])))
            out[f"{name}_cpu_{unit}"] = float(np.median(1e6 / (c * per_step[name])))
    _, env, actions = batched_env(headline)
    profile(env, actions, 20)
    out["profile"] = {"worlds": headline, **profile(env, actions, profile_steps)}
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=1))
