"""Episodes come from a counter-based RNG inside the kernel (``takeover.envs.streams``): an
episode is a function of (seed, episode number), snapshots carry that state, autoreset
continues it, and the start-state distributions are the documented ones."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.envs import MIXED
from takeover.envs import layout as L
from takeover.envs.highway import WorldState
from takeover.envs.streams import seed_key
from takeover.envs.vector import HighwayVectorEnv


def _starts(scenario: str, n: int) -> np.ndarray:
    """``(n, WLD_COLS)`` world rows and ``(n, slots, VEH_COLS)`` vehicles of ``n`` first
    episodes (development seeds 0..n-1), reset in one kernel call."""
    env = HighwayVectorEnv(n, scenario=scenario)
    env.reset(seed=0)
    return env.world.copy(), env.vehicles.copy()


def test_start_states_have_the_documented_distributions():
    n = 4000
    wld, veh = _starts("mixed", n)
    # KS / chi-square p-values on 4000 development episodes; a wrong range or a biased
    # draw gives p < 1e-6 at this size, a correct one p > 0.001 in 999 runs of 1000
    onset = wld[:, L.HZ_ONSET][wld[:, L.HZ_TRIGGER] == L.TRIGGER_TIME]
    assert stats.kstest(onset, stats.uniform(5.0, 9.0).cdf).pvalue > 1e-3
    assert stats.kstest(wld[:, L.HZ_SEV], "uniform").pvalue > 1e-3
    assert stats.kstest(veh[:, 0, L.V], stats.uniform(22.0, 6.0).cdf).pvalue > 1e-3
    codes = np.bincount(wld[:, L.HZ_KIND].astype(int), minlength=6)[1:]
    assert len(MIXED) == 5 and stats.chisquare(codes).pvalue > 1e-3
    not_merge = wld[:, L.HZ_KIND] != 4  # the merge starts the ego in the right lane
    lanes = np.bincount(veh[not_merge, 0, L.LANE].astype(int), minlength=3)
    assert stats.chisquare(lanes).pvalue > 1e-3
    cars = veh[:, 1:21]
    placed = cars[:, :, L.KIND] == L.CAR
    assert placed.mean() > 0.95  # nearly every car finds a place in 30 tries
    assert stats.kstest(cars[placed][:, L.V0], stats.uniform(21.0, 8.0).cdf).pvalue > 1e-3
    assert stats.kstest(cars[placed][:, L.POLITE], stats.uniform(0.0, 0.5).cdf).pvalue > 1e-3


def test_reset_without_seed_goes_on_and_a_seed_restarts():
    env = gym.make("takeover/Highway-v2").unwrapped
    first = [env.reset(seed=7)[0]] + [env.reset()[0] for _ in range(3)]
    again = [env.reset(seed=7)[0]] + [env.reset()[0] for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len({a.tobytes() for a in first}) == 4  # four different episodes


def test_autoreset_draws_the_single_envs_next_episodes():
    """World i's episodes after autoreset are the single env's ``reset()`` sequence."""
    venv = HighwayVectorEnv(2, scenario="sudden_brake")
    venv.reset(seed=40)
    starts: list[list[np.ndarray]] = [[], []]
    for _ in range(400):
        *_, infos = venv.step(np.zeros((2, 2)))
        for i in np.flatnonzero(infos.get("_final_obs", np.zeros(2, bool))):
            starts[i].append(venv._obs[i].copy())
    for i in range(2):
        env = gym.make("takeover/SuddenBrake-v2").unwrapped
        env.reset(seed=40 + i)
        assert starts[i], "no episode ended"
        for obs in starts[i]:
            assert np.array_equal(env.reset()[0], obs)


def test_a_snapshot_carries_the_rng_so_the_next_episodes_repeat():
    env = gym.make("takeover/Highway-v2").unwrapped
    env.reset(seed=3)
    env.reset()
    snap = env.get_state().to_bytes()
    after = [env.reset()[0] for _ in range(2)]
    other = gym.make("takeover/Highway-v2").unwrapped
    other.reset(seed=99)
    other.set_state(snap)
    assert all(np.array_equal(a, other.reset()[0]) for a in after)
    state = WorldState.from_bytes(snap)
    assert state.rng_state == {"key": seed_key(3), "episode": 2}


def test_bad_seeds_and_rng_states_are_refused():
    env = gym.make("takeover/Plain-v2").unwrapped
    for bad in (-1, 1.5, "3", True):
        with pytest.raises((ValueError, TypeError), match="seed"):
            env.reset(seed=bad)
    env.reset(seed=2**70 + 5)  # any non-negative integer is a seed
    state = env.get_state()
    broken = WorldState(state.veh, state.wld, {"key": -1, "episode": 0}, False, state.config)
    with pytest.raises(ValueError, match="rng_state"):
        env.set_state(broken)
    assert seed_key(0) != seed_key(1) and seed_key(2**64) != seed_key(0)
