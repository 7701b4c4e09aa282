"""The world's mission: the route's end is the only success, stopping never pays, hazards
always fire for a driver who keeps driving, and the minimal-risk manoeuvre ends safe."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.envs import ENV_IDS, HAZARD_IDS, HAZARDS, MIXED, OUTCOMES, SAFE_OUTCOMES, VERSION
from takeover.envs import layout as L
from takeover.envs.config import ROUTE_FRACTION, HighwayConfig
from takeover.envs.controllers import (
    idm_accel,
    idm_accel_batch,
    lane_keep_steer,
    lane_keep_steer_batch,
)
from takeover.envs.drivers import ConstantSpeedDriver, IDMDriver, StandstillDriver
from takeover.envs.vector import make_vector_env

PLAIN = "takeover/Plain-v2"


brake_to_stop = StandstillDriver()


def _episode(env_id, driver, seed, **kw):
    env = gym.make(env_id, **kw).unwrapped
    env.reset(seed=seed)
    if hasattr(driver, "reset"):
        driver.reset()
    ret, infos = 0.0, []
    while True:
        _, r, term, trunc, info = env.step(driver(env))
        ret += r
        infos.append(info)
        if term or trunc:
            return ret, infos


def test_outcome_names_are_the_shared_ones():
    assert OUTCOMES == ("arrived", "collision", "off_road", "stopped", "pulled_over",
                        "stopped_in_lane", "timeout")
    assert takeover.envs.SUCCESS_OUTCOMES == ("arrived",)
    assert set(SAFE_OUTCOMES) == set(OUTCOMES) - {"collision", "off_road"}


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_careful_driver_arrives_and_outcome_is_empty_before_the_end(action_type):
    ret, infos = _episode(PLAIN, IDMDriver(), 0, action_type=action_type)
    route = HighwayConfig().route  # 436.8 m for the default 30 s
    assert infos[-1]["outcome"] == "arrived" and infos[-1]["route_progress"] == route
    assert all(i["outcome"] == "" for i in infos[:-1])
    # route_progress grows with the ego's x; route_length is constant
    assert infos[-2]["route_progress"] < route and {i["route_length"] for i in infos} == {route}


def test_default_route_takes_the_careful_driver_70_percent_of_the_limit_in_free_flow():
    """The route's definition (issue 10), re-measured: the careful driver's distance in
    plain traffic over the whole limit. Measured 625 m mean on seeds 0..99 (20.8 m/s); on
    seeds 0..19 it is 620 m (within 1%); allowed: 5%."""
    cfg = HighwayConfig()
    far = []
    for seed in range(20):
        _, infos = _episode(PLAIN, IDMDriver(), seed, route_length=1150.0)
        far.append(infos[-1]["route_progress"])
    assert cfg.route == pytest.approx(ROUTE_FRACTION * np.mean(far), rel=0.05)


@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
@pytest.mark.parametrize("env_id", [PLAIN, *HAZARD_IDS])
def test_braking_to_a_standstill_never_arrives_and_returns_less_than_careful(env_id,
                                                                            action_type):
    for seed in range(3):
        stop_ret, stop = _episode(env_id, brake_to_stop, seed, action_type=action_type)
        care_ret, care = _episode(env_id, IDMDriver(), seed, action_type=action_type)
        assert stop[-1]["outcome"] in ("stopped", "collision", "timeout"), stop[-1]["outcome"]
        assert stop_ret < care_ret, (seed, stop_ret, care_ret)


def test_standing_on_a_free_road_ends_stopped_after_the_grace_period():
    ret, infos = _episode(PLAIN, brake_to_stop, 1, vehicles=0)
    still = [i["time"] for i in infos if i["speed"] < 0.5]
    assert infos[-1]["outcome"] == "stopped"
    # the 30th 0.1 s step at a standstill (3 s grace) ends it, 2.9 s after the first
    assert abs(infos[-1]["time"] - still[0] - 2.9) < 1e-6
    assert ret < -40.0  # -50 for stopping, barely offset by the braking steps


def test_constant_speed_arrives_on_an_empty_road_and_timeout_is_not_a_success():
    _, infos = _episode(PLAIN, ConstantSpeedDriver(), 0, vehicles=0)
    assert infos[-1]["outcome"] == "arrived"
    _, infos = _episode(PLAIN, ConstantSpeedDriver(), 0, vehicles=0, route_length=1000.0)
    assert infos[-1]["outcome"] == "timeout" and infos[-1]["reason"] == "time_limit"


def test_traffic_never_uses_the_shoulder():
    venv = make_vector_env("takeover/Highway-v2", 8)
    venv.reset(seed=0)
    venv.action_space.seed(0)
    n = venv.config.lanes
    w = venv.config.lane_width
    for _ in range(300):
        venv.step(np.zeros((8, 2)))
        veh = venv.vehicles
        cars = (veh[..., L.KIND] == L.CAR) & (veh[..., L.MODE] == L.NORMAL)
        assert not np.any(cars & (veh[..., L.Y] > (n - 0.5) * w + 0.5))


def test_driving_on_the_shoulder_costs_and_past_it_is_off_road():
    env = gym.make(PLAIN, vehicles=0).unwrapped
    env.reset(seed=0)
    env.vehicles[0, L.Y] = env.config.lanes * env.config.lane_width  # onto the shoulder
    _, r, term, _, info = env.step(np.zeros(2, np.float32))
    assert not term and info["lane"] == env.config.lanes and r < 0.0
    for _ in range(100):
        _, _, term, _, info = env.step(np.array([1.0, 0.0], np.float32))
        if term:
            break
    assert info["outcome"] == "off_road"


# --- hazards ---------------------------------------------------------------------------
def test_ids_and_scenarios_derive_from_the_registry_and_mixed_is_pinned():
    assert set(ENV_IDS.values()) == {"mixed", "none", *HAZARDS}
    assert all(f"takeover/{h.env_name}-{VERSION}" in ENV_IDS for h in HAZARDS.values())
    assert MIXED == ("sudden_brake", "cut_in", "stalled_car", "merge", "lane_closure")
    assert len({h.code for h in HAZARDS.values()}) == len(HAZARDS)


def test_a_new_hazard_in_the_registry_does_not_change_old_seeds(monkeypatch):
    from takeover.envs import hazards
    from takeover.envs.hazards.sudden_brake import SuddenBrake

    def first_obs(env_id):
        return [gym.make(env_id).reset(seed=s)[0] for s in range(5)]

    before = first_obs("takeover/Highway-v2"), first_obs("takeover/CutIn-v2")

    class Extra(SuddenBrake):
        name, env_name, code = "aaa_extra", "Extra", 99

    monkeypatch.setattr(hazards, "HAZARDS", {"aaa_extra": Extra(), **hazards.HAZARDS})
    after = first_obs("takeover/Highway-v2"), first_obs("takeover/CutIn-v2")
    assert all(np.array_equal(a, b) for x, y in zip(before, after) for a, b in zip(x, y))


@pytest.mark.parametrize("env_id", HAZARD_IDS)
def test_careful_driver_meets_every_hazard_and_onset_is_exact(env_id):
    lo, hi = 5.0, 14.0  # HighwayConfig.onset
    arrived = 0
    for seed in range(20):
        _, infos = _episode(env_id, IDMDriver(), seed)
        arrived += infos[-1]["outcome"] == "arrived"
        fired = [k for k, i in enumerate(infos) if i["hazard_fired"]]
        assert fired, f"seed {seed}: the hazard never fired"
        k = fired[0]
        assert all(not i["hazard_fired"] and math.isnan(i["hazard_onset"]) for i in infos[:k])
        onset = infos[k]["hazard_onset"]
        # fired at a sub-step of this step (at its start the clock read time - 0.1)
        assert infos[k]["time"] - 0.1 - 1e-9 <= onset < infos[k]["time"]
        assert all(i["hazard_onset"] == onset for i in infos[k:])
        if HAZARDS[ENV_IDS[env_id]].trigger == L.TRIGGER_TIME:
            assert lo <= onset <= hi + 0.05
    # and it gets through: traffic lets a signalling car out of a blocked lane. Measured on
    # these seeds: 15-19 of 20 per hazard (sudden brake 16, stalled car 18, lane closure 15;
    # 0.80-0.97 on seeds 0..99); without yielding traffic 0.5-0.7. Allowed: 14 of 20.
    assert arrived >= 14, arrived


@pytest.mark.parametrize("env_id", [e for e in HAZARD_IDS
                                    if HAZARDS[ENV_IDS[e]].trigger == L.TRIGGER_TIME])
def test_timed_hazards_fire_even_for_an_ego_that_stands_still(env_id):
    _, infos = _episode(env_id, brake_to_stop, 0, stop_grace=20.0)
    assert any(i["hazard_fired"] for i in infos)


# --- the minimal-risk manoeuvre --------------------------------------------------------
@pytest.mark.parametrize("action_type", ["continuous", "discrete"])
def test_mrm_pulls_over_onto_the_shoulder_from_any_lane(action_type):
    env = gym.make(PLAIN, action_type=action_type).unwrapped
    outcomes = []
    for seed in range(6):
        env.reset(seed=seed)
        env.set_mrm(True)
        while True:
            _, _, term, trunc, info = env.step(env.action_space.sample())
            assert info["mrm"]
            if term or trunc:
                break
        outcomes.append(info["outcome"])
    assert outcomes.count("pulled_over") >= 5, outcomes
    assert set(outcomes) <= set(SAFE_OUTCOMES)


def test_mrm_with_the_shoulder_blocked_stops_in_lane():
    env = gym.make(PLAIN, vehicles=0).unwrapped
    env.reset(seed=0)
    n = env.config.lanes
    env.vehicles[0, L.Y] = (n - 1) * env.config.lane_width  # right lane
    veh = env.vehicles
    j = 1  # a hazard slot: a car holding station on the shoulder beside the ego
    veh[j, L.X], veh[j, L.Y], veh[j, L.LANE] = 0.0, n * env.config.lane_width, n
    veh[j, L.LEN], veh[j, L.WID], veh[j, L.KIND], veh[j, L.MODE] = 5.0, 2.0, L.CAR, L.SHADOW
    veh[j, L.V] = veh[0, L.V]
    env.set_mrm(True)
    for _ in range(300):
        _, _, term, trunc, info = env.step(np.zeros(2, np.float32))
        if term or trunc:
            break
    assert info["outcome"] == "stopped_in_lane" and info["lane"] == n - 1


def test_mrm_ignores_the_action_and_release_hands_back():
    a = gym.make(PLAIN).unwrapped
    b = gym.make(PLAIN).unwrapped
    for env, act in ((a, [1.0, 1.0]), (b, [-1.0, -1.0])):
        env.reset(seed=4)
        env.set_mrm(True)
        for _ in range(20):
            env.step(np.array(act, np.float32))
    assert np.array_equal(a.vehicles, b.vehicles)
    a.set_mrm(False)
    v = a.vehicles[0, L.V]
    _, _, _, _, info = a.step(np.array([0.0, 1.0], np.float32))
    assert not info["mrm"] and info["speed"] > v


def test_vector_set_mrm_matches_single_env():
    n = 3
    venv = make_vector_env("takeover/Highway-v2", n, action_type="discrete")
    venv.reset(seed=10)
    singles = [gym.make("takeover/Highway-v2", action_type="discrete").unwrapped
               for _ in range(n)]
    for i, e in enumerate(singles):
        e.reset(seed=10 + i)
    mask = np.array([True, False, True])
    venv.set_mrm(mask)
    for i, e in enumerate(singles):
        e.set_mrm(bool(mask[i]))
    with pytest.raises(ValueError, match="bool mask"):
        venv.set_mrm([1, 0, 1])
    for _ in range(300):
        obs, rew, term, trunc, infos = venv.step(np.zeros(n, dtype=np.int64))
        steps = [e.step(0) for e in singles]
        assert all(s[1] == r for s, r in zip(steps, rew))
        if (term | trunc).any():
            break
        assert list(infos["mrm"]) == list(mask)
        assert all(np.array_equal(s[0], o) for s, o in zip(steps, obs))
    ended = {s[-1]["outcome"] for s, m in zip(steps, mask) if m and s[2]}
    assert ended <= {"pulled_over", "stopped_in_lane"}


# --- the shared controllers ------------------------------------------------------------
def test_controllers_scalar_and_batch_agree_and_idm_keeps_its_meaning():
    rng = np.random.default_rng(0)
    v, v0, gap, vl = rng.uniform(0, 30, (4, 50))
    gap[::7] = np.inf
    batch = idm_accel_batch(v, v0, gap, vl, 1.5, 1.5, 2.0, 2.5)
    assert np.array_equal(batch, [idm_accel(*x, 1.5, 1.5, 2.0, 2.5)
                                  for x in zip(v, v0, gap, vl)])
    assert idm_accel(20.0, 25.0, np.inf, 0.0, 1.5, 1.5, 2.0, 2.5) > 0.0  # free road: speed up
    assert idm_accel(20.0, 25.0, 5.0, 0.0, 1.5, 1.5, 2.0, 2.5) < -5.0  # stopped car close
    err, psi, sp = rng.uniform(-4, 4, 50), rng.uniform(-0.2, 0.2, 50), rng.uniform(0, 30, 50)
    steer = lane_keep_steer_batch(err, psi, sp, 2.5)
    assert np.array_equal(steer, [lane_keep_steer(*x, 2.5) for x in zip(err, psi, sp)])
    assert lane_keep_steer(1.0, 0.0, 20.0, 2.5) < 0.0  # right of the centre: steer left


# --- cooperative yielding ----------------------------------------------------------------
def _merge_scene(lean: float):
    """An ego standing 20 m behind a stalled car in lane 1, leaning ``lean`` m toward lane
    0, and one car in lane 0 coming from 100 m back at 15 m/s; returns the env."""
    env = gym.make(PLAIN, vehicles=1).unwrapped
    env.reset(seed=0)
    w = env.config.lane_width
    veh = env.vehicles
    veh[0, [L.X, L.Y, L.V, L.PSI]] = 0.0, w - lean, 0.0, 0.0
    car, stalled = veh[1], veh[2]
    car[[L.X, L.Y, L.LANE, L.V, L.V0, L.VY, L.PSI]] = -100.0, 0.0, 0.0, 15.0, 15.0, 0.0, 0.0
    car[[L.THW, L.AMAX, L.BCOMF, L.S0, L.POLITE]] = 1.5, 1.5, 2.0, 2.5, 0.25
    car[L.KIND], car[L.MODE] = L.CAR, L.NORMAL
    stalled[[L.X, L.Y, L.LANE, L.V, L.LEN, L.WID]] = 25.0, w, 1.0, 0.0, 5.0, 2.0
    stalled[L.KIND], stalled[L.MODE] = L.STALLED, L.STATIC
    return env


@pytest.mark.parametrize("lean", [0.0, 0.6])
def test_traffic_lets_a_blocked_car_that_signals_in(lean):
    """A car in the open lane stops behind a blocked ego that leans toward it (the signal,
    ``controllers.SIGNAL_LEAN``) and drives past one that does not."""
    env = _merge_scene(lean)
    for _ in range(150):  # 15 s: the car reaches the ego after ~7 s at its speed
        env.step(np.array([0.0, -1.0], np.float32))
    car, ego = env.vehicles[1], env.vehicles[0]
    if lean:
        # it waits behind the ego with room to angle in (s0 + YIELD_ROOM = 8.5 m bumper gap)
        assert car[L.V] < 0.5 and ego[L.X] - car[L.X] - 5.0 > 6.0, car
    else:
        assert car[L.X] > ego[L.X] + 10.0, car


def test_reward_timeout_is_paid_once_on_the_timeout_step_in_both_envs():
    """``reward_timeout`` makes waiting out the limit cost something (fine-tuning on
    hazards crawls without it); it is added on the last step of a ``timeout`` episode
    only, in the single and the batched env alike, and 0 leaves the rewards unchanged."""
    kw = {"action_type": "discrete", "duration": 2.0, "route_length": 70.0}  # cannot arrive

    def rewards(penalty):
        env = gym.make(PLAIN, reward_timeout=penalty, **kw)
        env.reset(seed=3)
        out, done, info = [], False, {}
        while not done:
            _, r, term, trunc, info = env.step(L.IDLE)
            out.append(r)
            done = term or trunc
        venv = make_vector_env(PLAIN, 2, reward_timeout=penalty, **kw)
        venv.reset(seed=[3, 4])
        vec = []
        for _ in out:
            _, r, *_ = venv.step(np.full(2, L.IDLE))
            vec.append(r[0])
        return info["outcome"], np.array(out), np.array(vec)

    outcome, base, vbase = rewards(0.0)
    assert outcome == "timeout"
    _, paid, vpaid = rewards(-100.0)
    np.testing.assert_allclose(paid - base, [0.0] * (len(base) - 1) + [-100.0])
    np.testing.assert_allclose(vpaid - vbase, [0.0] * (len(base) - 1) + [-100.0])
    np.testing.assert_allclose(vbase, base, rtol=1e-6)
