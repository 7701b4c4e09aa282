"""EnsemblePolicy: one batched forward that matches every member's own SB3 forward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC

import takeover.envs  # noqa: F401
from takeover.agents import EnsembleAgent, EnsemblePolicy, PolicyAgent


def _env(action_type):
    return gym.make("takeover/Plain-v2", action_type=action_type)


def _obs(n=32):
    env = _env("discrete")
    obs, _ = env.reset(seed=1)
    out = [obs]
    for _ in range(n - 1):
        obs, *_ = env.step(0)
        out.append(obs)
    return torch.as_tensor(np.stack(out))


def _members(algo, action_type, k=5):
    cls = PPO if algo == "ppo" else SAC
    return [cls("MlpPolicy", _env(action_type), policy_kwargs={"net_arch": [64, 64]}, seed=s,
                device="cpu").policy for s in range(k)]


def test_discrete_batched_forward_matches_members():
    members = _members("ppo", "discrete")
    ens = EnsemblePolicy(members)
    obs = _obs()
    logits = ens.forward(obs)["logits"]
    assert logits.shape == (5, 32, 5)
    with torch.no_grad():
        for k, p in enumerate(members):
            ref = p.get_distribution(obs).distribution.logits
            # SB3 normalises logits (log-softmax); compare the distributions
            torch.testing.assert_close(torch.log_softmax(logits[k], -1), ref, atol=1e-6, rtol=0)
            ref_act, _ = p.predict(obs.numpy(), deterministic=True)
            np.testing.assert_array_equal(ens.actions({"logits": logits})[k], ref_act)


def test_gaussian_batched_forward_matches_members():
    members = _members("ppo", "continuous")
    ens = EnsemblePolicy(members)
    obs = _obs()
    out = ens.forward(obs)
    with torch.no_grad():
        for k, p in enumerate(members):
            dist = p.get_distribution(obs).distribution
            torch.testing.assert_close(out["mean"][k], dist.mean, atol=1e-6, rtol=0)
            torch.testing.assert_close(out["log_std"][k], dist.stddev.log(), atol=1e-6, rtol=0)
            ref_act, _ = p.predict(obs.numpy(), deterministic=True)
            np.testing.assert_allclose(ens.actions(out)[k], ref_act, atol=1e-6)


def test_sac_batched_forward_matches_members():
    members = _members("sac", "continuous", k=3)
    ens = EnsemblePolicy(members)
    obs = _obs()
    out = ens.forward(obs)
    with torch.no_grad():
        for k, p in enumerate(members):
            mean, log_std, _ = p.actor.get_action_dist_params(obs)
            torch.testing.assert_close(out["mean"][k], mean, atol=1e-6, rtol=0)
            torch.testing.assert_close(out["log_std"][k], log_std, atol=1e-6, rtol=0)
            ref_act, _ = p.predict(obs.numpy(), deterministic=True)
            np.testing.assert_allclose(ens.actions(out)[k], ref_act, atol=1e-6)


def test_in_place_update_of_a_member_is_picked_up():
    members = _members("ppo", "discrete", k=2)
    ens = EnsemblePolicy(members)
    obs = _obs(8)
    before = ens.forward(obs)["logits"].clone()
    opt = torch.optim.SGD(members[1].parameters(), lr=1.0)
    members[1].get_distribution(obs).distribution.logits.sum().backward()
    opt.step()
    after = ens.forward(obs)["logits"]
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])
    with torch.no_grad():
        ref = members[1].get_distribution(obs).distribution.logits
    torch.testing.assert_close(torch.log_softmax(after[1], -1), ref, atol=1e-6, rtol=0)


def test_members_must_share_architecture():
    a = PPO("MlpPolicy", _env("discrete"), policy_kwargs={"net_arch": [8]}, device="cpu").policy
    b = PPO("MlpPolicy", _env("discrete"), policy_kwargs={"net_arch": [16]}, device="cpu").policy
    with pytest.raises(ValueError, match="same architecture"):
        EnsemblePolicy([a, b])


def test_agent_outputs_discrete_ensemble():
    agent = EnsembleAgent(_members("ppo", "discrete", k=5))
    obs = _obs(4).numpy()
    out = agent.act(obs[0])
    assert isinstance(out.action, int) and out.member_actions.shape == (5,)
    assert out.probs.shape == (5, 5)
    np.testing.assert_allclose(out.probs.sum(-1), 1.0, atol=1e-5)
    assert out.action == int(out.probs.mean(0).argmax())
    outs = agent.act_batch(obs)
    assert [o.action for o in outs] == agent.predict(obs).tolist()


def test_agent_outputs_continuous_single_and_ensemble():
    members = _members("ppo", "continuous", k=3)
    single = PolicyAgent(members[0]).act(_obs(1).numpy()[0])
    assert single.member_actions is None and single.mean.shape == (2,)
    assert single.action.shape == (2,) and single.action.dtype == np.float32
    out = EnsembleAgent(members).act(_obs(1).numpy()[0])
    assert out.member_actions.shape == (3, 2) and out.mean.shape == (3, 2)
    np.testing.assert_allclose(out.action, out.member_actions.mean(0), atol=1e-6)


def test_mc_dropout_samples_vary_and_are_reproducible():
    members = _members("ppo", "discrete", k=1)
    obs = _obs(2).numpy()
    a = PolicyAgent(members[0], dropout_samples=16, seed=3).act(obs[0])
    b = PolicyAgent(members[0], dropout_samples=16, seed=3).act(obs[0])
    assert a.extra["dropout_probs"].shape == (16, 5)
    assert a.extra["dropout_actions"].shape == (16,)
    np.testing.assert_array_equal(a.extra["dropout_probs"], b.extra["dropout_probs"])
    assert a.extra["dropout_probs"].std(0).max() > 0
    assert "dropout_probs" not in PolicyAgent(members[0]).act(obs[0]).extra


def test_bootstrap_students_copy_the_teacher_in_distribution():
    from takeover.agents.learners.distill import bootstrap_ensemble

    teacher = _members("ppo", "discrete", k=1)[0]
    obs = _obs(64).numpy()
    members = bootstrap_ensemble(teacher, obs, 3, seed=0, epochs=30, lr=3e-3)
    assert members[0] is teacher and len(members) == 3
    ens = EnsembleAgent(members)
    probs = np.stack([o.probs for o in ens.act_batch(obs)])  # (B, K, n)
    assert np.abs(probs[:, 1:] - probs[:, :1]).max() < 0.05  # students match the teacher
    again = bootstrap_ensemble(teacher, obs, 3, seed=0, epochs=30, lr=3e-3)
    a, b = members[1].state_dict(), again[1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded


@pytest.mark.parametrize("algo,action_type", [("ppo", "discrete"), ("ppo", "continuous"),
                                              ("sac", "continuous")])
def test_single_step_numpy_path_matches_the_batched_torch_forward(algo, action_type):
    from takeover.agents.risk import RiskCritic, RiskSpec

    agent = EnsembleAgent(_members(algo, action_type, k=3), risk=RiskCritic(RiskSpec(63)))
    obs = _obs(16).numpy()
    for o, ref in zip(obs, agent.act_batch(obs), strict=True):
        out = agent.act(o)
        np.testing.assert_allclose(out.action, ref.action, atol=1e-6)
        # float32 numpy vs torch: equal to rounding (.round(5) flips at a boundary)
        np.testing.assert_allclose(np.asarray(out.member_actions),
                                   np.asarray(ref.member_actions), atol=2e-5)
        for field in ("probs", "mean", "log_std"):
            if getattr(ref, field) is not None:
                np.testing.assert_allclose(getattr(out, field), getattr(ref, field), atol=1e-6)
        assert out.risk == pytest.approx(ref.risk, abs=1e-6)
        assert out.extra["risk_by_horizon"] == pytest.approx(ref.extra["risk_by_horizon"])
    with pytest.raises(ValueError, match="observation space"):
        agent.act(obs[0, :3])


def test_single_step_path_sees_in_place_updates():
    members = _members("ppo", "discrete", k=2)
    agent = EnsembleAgent(members)
    obs = _obs(4).numpy()
    before = agent.act(obs[0]).probs
    with torch.no_grad():
        members[1].action_net.bias[0] += 1.0
    after = agent.act(obs[0]).probs
    np.testing.assert_allclose(after[0], before[0])
    np.testing.assert_allclose(after, agent.act_batch(obs[:1])[0].probs, atol=1e-6)
    assert not np.allclose(after[1], before[1])


def test_prior_members_act_like_the_teacher_and_disagree_off_distribution():
    """Randomized-prior members share the teacher's trunk, copy it on its states, are plain
    SB3 policies (checkpointable), and disagree more on states unlike the training ones."""
    from takeover.agents.learners.distill import prior_ensemble
    from takeover.supervisor.estimators import ensemble_kl

    teacher = _members("ppo", "discrete", k=1)[0]
    obs = _obs(64).numpy()
    fit = dict(epochs=100, width=16, beta=1.0, batch_size=16, lr=3e-3)
    members = prior_ensemble(teacher, obs, 3, seed=0, **fit)
    ens = EnsembleAgent(members)
    assert ens.ensemble._np.shared and len(ens.ensemble._np.shared) == 2  # frozen trunk
    with torch.no_grad():
        ref = teacher.get_distribution(torch.as_tensor(obs)).distribution.probs.numpy()
    probs = np.stack([o.probs for o in ens.act_batch(obs)])  # (B, K, n)
    assert np.abs(probs - ref[:, None]).mean() < 0.01  # copy the teacher on its states
    far = np.random.default_rng(0).uniform(-1, 1, obs.shape).astype(np.float32)
    far_probs = np.stack([o.probs for o in ens.act_batch(far)])
    assert ensemble_kl(far_probs).mean() > 5 * ensemble_kl(probs).mean()
    again = prior_ensemble(teacher, obs, 1, seed=0, **fit)[0]
    a, b = members[0].state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded
