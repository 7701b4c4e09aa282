"""The step kernel's trajectories are pinned: observations, rewards, terminations and every
info value of a few thousand steps, over every scenario, both action types, the minimal-risk
manoeuvre, autoreset, snapshots and a non-default config, equal bit for bit those of the
reference (unoptimised) v1 kernel, on which the shipped agents are trained.

A speedup of the kernel must not change a single bit of these. The fixture
(``data/kernel_v1.npz``) holds one 32-bit digest per step and part (obs / reward+done /
info) so a failure names the first step that differs; it was generated from the reference
kernel (the world-2 branch, 7a79c6f: the v1 world before the kernel was optimised) with
``python tests/test_kernel_regression.py --write``, and may only be regenerated from a
reference kernel when the world's dynamics change on purpose (with a version bump).
"""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.envs import OUTCOMES
from takeover.envs.vector import HighwayVectorEnv

FIXTURE = Path(__file__).parent / "data" / "kernel_v1.npz"
STEPS = 300

# name -> (num_envs (0 = the single HighwayEnv), seed, config); every scenario in both
# action types, plus a non-default geometry / rate / traffic density
CASES: dict[str, tuple[int, int, dict]] = {
    **{f"{sc}-{at}": (3, 11 * k + (0 if at == "continuous" else 5), dict(scenario=sc,
                                                                          action_type=at))
       for k, sc in enumerate(("mixed", "none", "sudden_brake", "cut_in", "stalled_car",
                               "merge", "lane_closure"))
       for at in ("continuous", "discrete")},
    "dense-4lanes": (4, 101, dict(scenario="mixed", lanes=4, vehicles=40, substeps=3,
                                  control_hz=5.0, observe=12)),
    "sparse-2lanes-discrete": (2, 202, dict(scenario="mixed", lanes=2, vehicles=6,
                                            action_type="discrete", substeps=1)),
    "single-continuous": (0, 3, dict(scenario="mixed")),
    "single-discrete": (0, 5, dict(scenario="cut_in", action_type="discrete")),
}


def _actions(rng: np.random.Generator, info: dict, t: int, discrete: bool,
             lane_width: float) -> np.ndarray:
    """Seeded exploratory actions by world style (world i has style i % 4): 0 keeps its
    lane and brakes when close, 1 cruises, 2 brakes to a standstill from step 60, 3 weaves
    (continuous) -- so collisions, arrivals, standstills, timeouts and off-road all occur."""
    n = len(info["y"])
    style = np.arange(n) % 4
    if discrete:
        a = rng.choice(5, size=n, p=[0.6, 0.15, 0.05, 0.1, 0.1])
        a[(style == 2) & (t >= 60)] = 2
        return a.astype(np.int64)
    y, h = info["y"], info["heading"]
    err = y - np.round(y / lane_width) * lane_width
    steer = -(0.1 * err + 2.0 * h) + rng.normal(0.0, 0.05, n)
    steer = np.where(style == 3, rng.normal(0.0, 0.12, n), steer)
    acc = rng.normal(0.0, 0.2, n)
    risky = (info["ttc"] < 4.0) | (info["headway"] < 0.8)
    acc = np.where((style == 0) & risky, -0.7, acc)
    acc = np.where((style == 2) & (t >= 60), -0.4, acc)
    return np.clip(np.stack([steer, acc], axis=1), -1.0, 1.0).astype(np.float32)


def _mrm_mask(t: int, n: int) -> np.ndarray:
    """World 1 is handed to the minimal-risk manoeuvre for steps 40..159, world 0 from 220."""
    m = np.zeros(n, dtype=bool)
    if n > 1 and 40 <= t < 160:
        m[1] = True
    if t >= 220:
        m[0] = True
    return m


def _canon(value) -> bytes:
    """Bytes naming a value's type and content exactly (NaN included)."""
    if isinstance(value, dict):
        return b"{" + b"".join(k.encode() + b"=" + _canon(value[k]) + b";"
                               for k in sorted(value)) + b"}"
    if value is None:
        return b"None"
    if isinstance(value, str):
        return b"s:" + value.encode()
    if isinstance(value, (bool, np.bool_)):
        return b"b:" + str(bool(value)).encode()
    if isinstance(value, (int, np.integer)):
        return b"i:" + str(int(value)).encode()
    if isinstance(value, float):
        return b"f:" + np.float64(value).tobytes() + type(value).__name__.encode()
    arr = np.asarray(value)
    if arr.dtype == object:
        return b"[" + b",".join(_canon(v) for v in arr.ravel()) + b"]"
    return arr.dtype.str.encode() + str(arr.shape).encode() + arr.tobytes()


def _d32(*parts) -> int:
    return int.from_bytes(hashlib.sha256(b"|".join(_canon(p) for p in parts)).digest()[:4],
                          "little")


def _run_vector(n: int, seed: int, cfg: dict) -> tuple[np.ndarray, set[str]]:
    env = HighwayVectorEnv(n, cfg)
    rng = np.random.default_rng(seed)
    discrete, w = cfg.get("action_type") == "discrete", env.config.lane_width
    obs, info = env.reset(seed=seed)
    out = [(_d32(obs), 0, _d32(info))]
    snap, seen = None, set()
    for t in range(STEPS):
        env.set_mrm(_mrm_mask(t, n))
        if t == 120:
            snap = env.get_state(n - 1).to_bytes()
        if t == 200:  # rewind the last world 80 steps: it must replay its own past
            env.set_state(n - 1, snap)
        obs, rew, term, trunc, info = env.step(_actions(rng, info, t, discrete, w))
        out.append((_d32(obs), _d32(rew, term, trunc), _d32(info)))
        if "final_info" in info:
            seen.update(info["final_info"]["outcome"][info["_final_info"]])
    return np.array(out, dtype=np.uint32), seen


def _run_single(seed: int, cfg: dict) -> tuple[np.ndarray, set[str]]:
    env = gym.make("takeover/Highway-v2", **cfg).unwrapped
    rng = np.random.default_rng(seed)
    discrete, w = cfg.get("action_type") == "discrete", env.config.lane_width
    obs, info = env.reset(seed=seed)
    out, seen = [(_d32(obs), 0, _d32(info))], set()
    for t in range(STEPS):
        env.set_mrm(bool(_mrm_mask(t, 1)[0]))
        batch = {k: np.array([info[k]]) for k in ("y", "heading", "ttc", "headway")}
        a = _actions(rng, batch, t, discrete, w)[0]
        obs, rew, term, trunc, info = env.step(int(a) if discrete else a)
        out.append((_d32(obs), _d32(rew, term, trunc), _d32(info)))
        if term or trunc:
            seen.add(info["outcome"])
            obs, info = env.reset()
            out.append((_d32(obs), 0, _d32(info)))
    return np.array(out, dtype=np.uint32), seen


@functools.cache
def run_case(name: str) -> tuple[np.ndarray, set[str]]:
    """``(steps + 1 [+ resets], 3)`` digests (obs, reward+done, info) of case ``name``, and
    the outcomes its episodes ended with."""
    n, seed, cfg = CASES[name]
    return _run_single(seed, cfg) if n == 0 else _run_vector(n, seed, cfg)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_fixture_covers_every_case(reference):
    assert sorted(reference) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_trajectories_equal_the_reference_kernel_bit_for_bit(name, reference):
    got, want = run_case(name)[0], reference[name]
    if got.shape == want.shape and np.array_equal(got, want):
        return
    rows = min(len(got), len(want))
    diff = np.flatnonzero((got[:rows] != want[:rows]).any(axis=1))
    first = int(diff[0]) if diff.size else rows
    parts = [p for p, k in zip(("obs", "reward/done", "info"), range(3))
             if first < rows and got[first, k] != want[first, k]]
    pytest.fail(f"{name}: first differing record {first} of {len(want)} ({', '.join(parts)}"
                f"{'' if parts else 'length'}); the kernel's trajectories changed")


def test_the_cases_reach_every_outcome():
    """The pinned trajectories pass through every way an episode ends, so no branch of the
    kernel's status logic is unpinned."""
    seen = set().union(*(run_case(name)[1] for name in CASES))
    assert seen == set(OUTCOMES), seen


@pytest.mark.parametrize("observe", [8, 1, 32])
def test_the_nearest_k_bound_changes_no_bit(observe):
    """``_observe_within`` counts the nearest K among the vehicles within a bound only; any
    bound (too small: the fallback counts them all; ``inf``; the neighbour order's) gives
    ``_observe``'s observation, ground truth and reward bit for bit."""
    from takeover.envs.dynamics import _near_bound, _observe, _observe_within, _scratch

    env = HighwayVectorEnv(16, dict(scenario="mixed", observe=observe))
    env.reset(seed=7)
    for _ in range(40):
        env.step(np.zeros((16, 2)))
    b = env._batch
    near, near_d, _ = _scratch(b.p, b.veh.shape[1])
    k = int(observe)
    for n in range(16):
        ob, inf = np.zeros_like(b.obs[n]), np.zeros_like(b.info[n])
        r = _observe(b.veh[n], b.wld[n], b.p, ob, inf, near, near_d)
        tight = _near_bound(b.veh[n], b.order[n], b.rank[n], k)
        for bound in (0.0, 400.0, tight, np.inf):
            ob2, inf2 = np.zeros_like(ob), np.zeros_like(inf)
            r2 = _observe_within(b.veh[n], b.wld[n], b.p, ob2, inf2, near, near_d, bound)
            assert ob2.tobytes() == ob.tobytes() and inf2.tobytes() == inf.tobytes()
            assert np.float64(r2).tobytes() == np.float64(r).tobytes()


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_kernel_regression.py --write  (only with a world "
                 "version bump: the fixture pins the reference v1 kernel)")
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **{name: run_case(name)[0] for name in CASES})
    print(f"wrote {FIXTURE}")
