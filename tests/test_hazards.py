"""The merge and the lane closure as a driver meets them: a car that merges into a short
gap it chose, a closure announced by a taper of cones that blocks only the closed lane."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.envs import layout as L
from takeover.envs.drivers import ConstantSpeedDriver

MERGE, CLOSURE = "takeover/Merge-v2", "takeover/LaneClosure-v2"
SEEDS = range(20)  # development seeds


def test_merging_car_takes_a_short_gap_beside_the_ego_and_merges_slower():
    env = gym.make(MERGE).unwrapped
    driver = ConstantSpeedDriver()  # it holds the gap exactly: same speed as the car
    fired = 0
    for seed in SEEDS:
        env.reset(seed=seed)
        j, s = int(env.world[L.HZ_IDX]), env.world[L.HZ_SEV]
        veh = env.vehicles
        assert veh[j, L.LANE] == env.config.lanes  # the acceleration lane (shoulder)
        while True:
            v_ego = float(veh[0, L.V])
            _, _, term, trunc, info = env.step(driver(env))
            if info["hazard_fired"] or term or trunc:
                break
        if not info["hazard_fired"]:
            continue  # it ran into ordinary traffic before the onset
        fired += 1
        gap = veh[j, L.X] - veh[0, L.X] - 0.5 * (veh[j, L.LEN] + veh[0, L.LEN])
        # 25 - 10 s m ahead of the nose (it held station until the onset; within 1 m: up to 6 m/s slower for the rest of the
        # step it fired in)
        assert abs(gap - (25.0 - 10.0 * s)) < 1.0, (seed, gap, s)
        assert 14.0 < gap < 26.0
        # bound for the ego's lane, settling 3 + 4 s m/s below the ego's speed
        assert veh[j, L.LANE] == env.config.lanes - 1
        assert veh[j, L.V0] == pytest.approx(v_ego - (3.0 + 4.0 * s), abs=0.5)
    assert fired >= 15, fired  # 18 of these 20 seeds


def _cones(env):
    veh = env.vehicles
    return veh[veh[:, L.KIND] == L.CONE]


def test_lane_closure_is_a_taper_from_the_far_edge_to_the_open_lane():
    env = gym.make(CLOSURE).unwrapped
    w, n = env.config.lane_width, env.config.lanes
    sides = set()
    for seed in SEEDS:
        env.reset(seed=seed)
        cones = _cones(env)
        lane = cones[0, L.LANE]
        off = cones[:, L.Y] - lane * w  # lateral offset from the closed lane's centre
        x = cones[:, L.X]
        assert len(cones) == 5 and np.all(np.diff(x) > 0.0)
        assert env.world[L.HZ_X] == x[0] and env.world[L.HZ_XEND] == x[-1]
        taper = x[3] - x[0]
        assert 70.0 - 1e-9 <= taper <= 120.0 + 1e-9, taper
        side = np.sign(off[-1])
        open_lane = lane + side
        assert 0 <= open_lane < n, (lane, side)  # the cones end beside a travel lane
        sides.add((lane, side))
        # the first cone leaves the ego's corridor free (half widths 1.0 + 0.3 m), the
        # taper's next ones close it, as does the work area's
        ego_half, cone_half = 1.0, 0.3
        assert abs(off[0]) > ego_half + cone_half and off[0] * side < 0.0
        assert np.all(np.abs(off[1:]) < ego_half + cone_half)
        assert np.all(np.diff(off[:4] * side) > 0.0)  # monotone across the lane
        # no cone reaches into the open lane's corridor (a car centred there passes)
        assert np.all(np.abs(cones[:, L.Y] - open_lane * w) > ego_half + cone_half + 0.5)
    # both sides of the middle lane occur, and each edge lane opens toward the middle
    assert (1.0, 1.0) in sides and (1.0, -1.0) in sides
    assert all(s == (1.0 if lane == 0 else -1.0) for lane, s in sides if lane != 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", [MERGE, CLOSURE])
def test_the_shipped_novice_has_a_fighting_chance_but_needs_help(env_id):
    """Room for a human to help (issue 10: the novice arrives in 15-75% of a hazard's
    episodes). Measured with the shipped (v1-migrated) novice on development seeds 0..199:
    Merge 0.195 [0.14, 0.25], LaneClosure 0.135 [0.09, 0.18] (the first versions: 0.045 and
    0.015); hazard met 0.995 and 0.97. Allowed on these 60 seeds: 0.05-0.85, about 2
    binomial sd below the lower one and far above the first versions' rates."""
    from takeover.agents.checkpoint import load_agent
    from takeover.agents.evaluate import evaluate

    res = evaluate(load_agent("novice"), [env_id], n_seeds=60, seed0=0)[env_id]
    assert res["hazard_met"].mean >= 0.9, res
    assert 0.05 <= res["success"].mean <= 0.85, res
