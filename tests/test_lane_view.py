"""The observation's lane rows (``observe_lanes``): what a driver sees of its lane and the
lanes beside it, computed by the drivers' own corridor queries, in single and batched
worlds alike."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import takeover.envs  # noqa: F401
from takeover.envs import layout as L
from takeover.envs.controllers import corridor_follower, corridor_leader
from takeover.envs.lane_view import ANTICIPATION, GAP_SCALE, MARGIN
from takeover.envs.vector import make_vector_env

K = 8


def _lanes(env_id: str = "takeover/Highway-v2", **kw):
    return gym.make(env_id, action_type="discrete", observe_lanes=True, **kw)


def test_lane_rows_follow_the_k_nearest_and_leave_them_unchanged():
    plain = gym.make("takeover/Highway-v2", action_type="discrete")
    lanes = _lanes()
    assert lanes.observation_space.shape == (K + 4, 7)
    for seed in (0, 7):
        a, _ = plain.reset(seed=seed)
        b, _ = lanes.reset(seed=seed)
        for _ in range(30):
            assert np.array_equal(a, b[:K + 1])  # the same world, the same first rows
            assert lanes.observation_space.contains(b)
            a, _, term, trunc, _ = plain.step(1)
            b, *_ = lanes.step(1)
            if term or trunc:
                break


def _expected(veh: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The table of ``lane_view`` written out in Python from the corridor queries."""
    w, n = p[L.LANE_W], p[L.N_LANES]
    v, vs = veh[0, L.V], p[L.V_SCALE]
    lane = min(max(np.floor(veh[0, L.Y] / w + 0.5), 0.0), n)
    rows = np.zeros((3, 7))
    for d, ln in enumerate((lane - 1, lane, lane + 1)):
        if ln < 0 or ln > n or (d != 1 and ln > n - 1):
            continue
        g, vl = corridor_leader(veh, ln * w, MARGIN, 0.0)
        ga, va = corridor_leader(veh, ln * w, MARGIN, ANTICIPATION)
        gb, jb = corridor_follower(veh, ln * w, MARGIN)
        near = [g < GAP_SCALE, gb < GAP_SCALE, ga < GAP_SCALE]
        rows[d] = [1.0, np.clip(g / GAP_SCALE, -1, 1), np.clip((vl - v) / vs, -1, 1) * near[0],
                   np.clip(gb / GAP_SCALE, 0, 1),
                   np.clip((veh[jb, L.V] - v) / vs, -1, 1) * near[1] if jb >= 0 else 0.0,
                   np.clip(ga / GAP_SCALE, -1, 1), np.clip((va - v) / vs, -1, 1) * near[2]]
    return rows


@pytest.mark.parametrize("env_id", ["takeover/StalledCar-v2", "takeover/CutIn-v2",
                                    "takeover/LaneClosure-v2"])
def test_lane_rows_say_what_the_corridor_queries_say(env_id):
    env = _lanes(env_id)
    u = env.unwrapped
    p = u.config.params()
    seen_standing = seen_edge = False
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        for t in range(200):
            np.testing.assert_allclose(obs[K + 1:], _expected(u.vehicles, p), atol=1e-6)
            own = obs[K + 2]
            seen_standing |= bool(own[1] < 1.0 and own[2] < -0.9)  # a standing object ahead
            seen_edge |= bool(obs[K + 1, 0] == 0.0 or obs[K + 3, 0] == 0.0)  # no lane there
            obs, _, term, trunc, _ = env.step(2 if t % 3 else 0)
            if term or trunc:
                break
    assert seen_edge
    if env_id != "takeover/CutIn-v2":
        assert seen_standing  # the obstacle shows as a leader at about -v


def test_batched_world_i_equals_the_single_env_with_lane_rows():
    seeds = [11, 12, 13]
    venv = make_vector_env("takeover/Highway-v2", 3, action_type="discrete",
                           observe_lanes=True)
    vo, _ = venv.reset(seed=seeds[0])
    singles = [_lanes() for _ in seeds]
    so = [e.reset(seed=s)[0] for e, s in zip(singles, seeds)]
    rng = np.random.default_rng(0)
    for _ in range(60):
        for i in range(3):
            assert np.array_equal(vo[i], so[i])
        acts = rng.integers(0, 5, 3)
        vo, _, term, trunc, _ = venv.step(acts)
        so = [e.step(int(a))[0] for e, a in zip(singles, acts)]
        if (term | trunc).any():
            break
