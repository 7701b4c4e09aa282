"""PVP-style value learning: after training on a log, the human's action is valued above
the agent action it overrode, at the states where the human intervened."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN, PPO, TD3

from takeover.agents.learners.pvp import TwoBuffers, pvp_update, q_values, transitions
from takeover.envs.drivers import IDMDriver  # noqa: F401  (registers the env ids)
from takeover.records import StepRecord

FASTER, SLOWER = 1, 2


def synthetic_log(discrete: bool, episodes: int = 6, steps: int = 20, seed: int = 0):
    """The agent always speeds up; the human intervenes (brakes) when the lead car is close
    (``obs[1, 1] < 0``)."""
    rng = np.random.default_rng(seed)
    out = []
    for e in range(episodes):
        recs = []
        for k in range(steps):
            obs = rng.uniform(-1, 1, (9, 7)).astype(np.float32)
            close = obs[1, 1] < 0
            agent = np.array([FASTER], np.float32) if discrete else np.array([0, 1], np.float32)
            human = np.array([SLOWER], np.float32) if discrete else np.array([0, -1], np.float32)
            recs.append(StepRecord(
                episode=f"e{e}", step=k, time=0.1 * (k + 1), wall_time=0.0, obs=obs,
                agent_action=agent, member_actions=None,
                human_action=human if close else None, action=human if close else agent,
                controller="human" if close else "agent", phase="human" if close else "agent"))
        out.append(recs)
    return out


def test_transitions_and_two_buffers():
    eps = synthetic_log(True, episodes=2, steps=5)
    data = transitions(eps)
    assert len(data) == 10 and data.obs.shape == (10, 9, 7)
    assert data.done.tolist() == [0, 0, 0, 0, 1] * 2
    assert np.array_equal(data.next_obs[0], eps[0][1].obs)
    assert np.array_equal(data.next_obs[4], eps[0][4].obs)  # last step: no next obs logged
    iv = data.intervened
    assert np.all(data.action[iv, 0] == SLOWER) and np.all(data.novice[:, 0] == FASTER)
    batch, n_h = TwoBuffers(data, seed=0).sample(8)
    assert n_h == 4 and batch.intervened[:4].all() and not batch.intervened[4:].any()
    no_iv = data.subset(~iv)
    with pytest.raises(ValueError, match="no intervention"):
        TwoBuffers(no_iv)


def test_dqn_values_the_human_action_above_the_overridden_one():
    env = gym.make("takeover/Plain-v2", action_type="discrete")
    model = DQN("MlpPolicy", env, policy_kwargs=dict(net_arch=[32]), buffer_size=100,
                learning_starts=0, seed=0, device="cpu")
    eps = synthetic_log(True)
    data = transitions(eps)
    states = data.obs[data.intervened]
    before = q_values(model, states, np.full(len(states), SLOWER)) - q_values(
        model, states, np.full(len(states), FASTER))
    losses = pvp_update(model, data, gradient_steps=300, batch_size=32, lr=1e-3, seed=0)
    after = q_values(model, states, np.full(len(states), SLOWER)) - q_values(
        model, states, np.full(len(states), FASTER))
    assert np.mean(after > 0) > 0.95 and np.mean(after > 0) > np.mean(before > 0)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    # the greedy policy now takes the human's action where the human intervened
    pred, _ = model.predict(states, deterministic=True)
    assert np.mean(pred == SLOWER) > 0.9
    # and it is reproducible
    model2 = DQN("MlpPolicy", env, policy_kwargs=dict(net_arch=[32]), buffer_size=100,
                 learning_starts=0, seed=0, device="cpu")
    assert pvp_update(model2, data, gradient_steps=300, batch_size=32, lr=1e-3, seed=0) == losses
    env.close()


def test_td3_values_the_human_action_above_the_overridden_one():
    env = gym.make("takeover/Plain-v2")
    model = TD3("MlpPolicy", env, policy_kwargs=dict(net_arch=[32]), buffer_size=100,
                learning_starts=0, seed=0, device="cpu")
    data = transitions(synthetic_log(False))
    states = data.obs[data.intervened]
    n = len(states)
    pvp_update(model, data, gradient_steps=300, batch_size=32, lr=1e-3, seed=0)
    qh = q_values(model, states, np.tile([0.0, -1.0], (n, 1)))
    qa = q_values(model, states, np.tile([0.0, 1.0], (n, 1)))
    assert np.mean(qh > qa) > 0.95
    env.close()


def test_pvp_refuses_wrong_models_and_logs():
    env = gym.make("takeover/Plain-v2", action_type="discrete")
    data = transitions(synthetic_log(False, episodes=1))
    with pytest.raises(TypeError, match="DQN"):
        pvp_update(PPO("MlpPolicy", env, n_steps=16, device="cpu"), data)
    dqn = DQN("MlpPolicy", env, buffer_size=10, device="cpu")
    with pytest.raises(ValueError, match="continuous actions"):
        pvp_update(dqn, data)
    with pytest.raises(ValueError, match="no logged steps"):
        transitions([])
    env.close()
