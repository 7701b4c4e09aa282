"""``HighwayVectorEnv.set_next_seeds``: the same-step autoreset starts the queued episodes,
so a caller that re-seeds ended worlds (the supervision engine) starts each episode once,
and the result is bit for bit what the reset after the step gives."""

from __future__ import annotations

import numpy as np

from takeover.envs.vector import HighwayVectorEnv

CFG = dict(scenario="mixed", duration=2.0)  # 20 steps: episodes end by the time limit


def _run(queue: bool, steps: int = 65) -> tuple[list, int, int]:
    """Steps 4 worlds, re-seeding each ended world from a running list of seeds (as the
    engine does), queueing the next seeds first if ``queue``; returns every step's
    observations, how many episodes ended and how many worlds the env reset outside its
    autoreset."""
    env = HighwayVectorEnv(4, CFG)
    resets = []
    real_reset = env._reset
    env._reset = lambda idx: (resets.append(len(idx)), real_reset(idx))
    nxt = iter(range(100, 10_000))
    upcoming = [next(nxt) for _ in range(8)]
    obs, _ = env.reset(seed=7)
    out = [obs]
    ends = 0
    actions = np.zeros((4, 2))
    for _ in range(steps):
        if queue:
            env.set_next_seeds(upcoming)
        obs, _, term, trunc, _ = env.step(actions)
        ended = np.flatnonzero(term | trunc)
        ends += ended.size
        if ended.size:
            seeds = upcoming[: ended.size]
            del upcoming[: ended.size]
            upcoming += [next(nxt) for _ in range(ended.size)]
            obs, _ = env.reset_worlds(ended, seeds)
        out.append(obs)
    return out, ends, sum(resets) - 4  # the first reset starts 4 episodes


def test_queued_seeds_start_each_episode_once_with_identical_trajectories():
    plain, ends, extra_plain = _run(queue=False)
    queued, ends_queued, extra_queued = _run(queue=True)
    assert ends == ends_queued >= 12  # at least the 3 time limits x 4 worlds in 65 steps
    assert extra_plain == ends  # without the queue every ended world is reset twice
    assert extra_queued == 0
    for a, b in zip(plain, queued, strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_autoreset_from_a_queued_seed_is_the_seeded_reset():
    """The worlds take the queue in the order they end (by world within a step); a seed
    starts exactly ``reset(seed=...)``'s episode, ``None`` the world's own next one."""
    env = HighwayVectorEnv(3, CFG)
    env.reset(seed=1)
    queue = [50, None, 51]
    env.set_next_seeds(queue)
    first: dict[int, tuple[int, np.ndarray, bytes, int | None]] = {}  # world -> (step, ...)
    for t in range(60):
        obs, _, term, trunc, _ = env.step(np.zeros((3, 2)))
        for i in np.flatnonzero(term | trunc):
            if int(i) not in first:
                first[int(i)] = (t, obs[i], env.get_state(int(i)).to_bytes(), queue.pop(0))
        if len(first) == 3:
            break
    assert len(first) == 3 and not queue
    for i, (t, o, state, seed) in first.items():
        ref = HighwayVectorEnv(1, CFG)
        ref_obs, _ = ref.reset(seed=1 + i if seed is None else seed)
        if seed is None:  # the world's own stream: its episode after the one it ended
            for _ in range(t + 1):
                ref_obs, *_ = ref.step(np.zeros((1, 2)))
        np.testing.assert_array_equal(o, ref_obs[0])
        if seed is not None:
            assert state == ref.get_state(0).to_bytes()


def test_a_wrong_guess_or_a_changed_world_is_reset_again():
    env = HighwayVectorEnv(2, CFG)
    env.reset(seed=3)
    env.set_next_seeds([60, 61])
    for _ in range(20):
        env.step(np.zeros((2, 2)))
    env.set_mrm(np.array([False, True]))  # world 1 is no longer as its reset left it
    obs, _ = env.reset_worlds([0, 1], [62, 61])  # world 0: another seed than it started
    ref = HighwayVectorEnv(2, CFG)
    ref_obs, _ = ref.reset(seed=[62, 61])
    np.testing.assert_array_equal(obs, ref_obs)
    assert not env.mrm.any()
