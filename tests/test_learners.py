"""The learner interface and what each method must get right regardless of the world:
log reading, human time, RLIF's reward, ensemble refits that keep the disagreement, the
off-policy starting agent's checkpoint, and the learning config."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from takeover.agents.learners import LEARNERS, human_seconds, read_episodes
from takeover.agents.learners.hg_dagger import (
    Aggregate,
    clone_members,
    finetune_params,
    prior_layout,
)
from takeover.agents.learners.rlif import intervention_rewards, rlif_data
from takeover.config import ConfigError
from takeover.envs.drivers import IDMDriver  # noqa: F401  (registers the env ids)
from takeover.records import RunMeta, StepRecord


def _episode(controllers: str, name: str = "e0", seed: int = 0) -> list[StepRecord]:
    """One episode; ``controllers`` spells who drove each 0.1 s step (a = agent, h = human)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, c in enumerate(controllers):
        human = c == "h"
        out.append(StepRecord(
            episode=name, step=k, time=0.1 * (k + 1), wall_time=0.0,
            obs=rng.uniform(-1, 1, (9, 7)).astype(np.float32),
            agent_action=np.array([1], np.float32), member_actions=None,
            human_action=np.array([2], np.float32) if human else None,
            action=np.array([2 if human else 1], np.float32),
            controller="human" if human else "agent", phase="human" if human else "agent"))
    return out


def test_registry_lists_the_methods_with_their_agent_kind():
    assert LEARNERS.names() == ["hg-dagger", "intent-dagger", "pvp", "rlif", "thrifty"]
    kinds = {n: LEARNERS.get(n).agent_kind for n in LEARNERS.names()}
    assert kinds == {"hg-dagger": "actor-critic", "thrifty": "actor-critic", "pvp": "q",
                     "rlif": "q", "intent-dagger": "intent"}
    with pytest.raises(KeyError, match="Did you mean 'rlif'"):
        LEARNERS.get("rlf")


def test_learners_refuse_the_wrong_agent_with_the_fix():
    class NoModel:
        policies: list = []

    with pytest.raises(TypeError, match="pvp or rlif"):
        LEARNERS.make("hg-dagger").start(NoModel())
    with pytest.raises(TypeError, match="load_q_agent"):
        LEARNERS.make("rlif").start(NoModel())
    with pytest.raises(TypeError, match="load_intent_agent"):
        LEARNERS.make("intent-dagger").start(NoModel())
    with pytest.raises(ValueError, match="plain_anchors=-1 must be an episode count"):
        LEARNERS.make("intent-dagger", plain_anchors=-1)
    with pytest.raises(ValueError, match="plain_weight=0.0: each must be positive"):
        LEARNERS.make("intent-dagger", plain_weight=0.0)


def test_read_episodes_round_trips_the_log(tmp_path):
    from dataclasses import replace

    from takeover.agents.learners.pvp import transitions
    from takeover.logio import LogWriter

    eps = [_episode("aahhha", "e0"), _episode("aaaa", "e1", seed=1)]
    terminal = np.full((9, 7), 0.5, np.float32)
    eps[0][-1] = replace(eps[0][-1], terminated=True, outcome="collision", reason="collision",
                         terminal_obs=terminal)
    eps[1][-1] = replace(eps[1][-1], truncated=True, outcome="timeout", reason="timeout",
                         terminal_obs=-terminal)
    with LogWriter(tmp_path / "log", RunMeta(run_id="t", seed=0)) as w:
        for e in eps:
            for r in e:
                w.write(r)
            w.end_episode()
    back = read_episodes(tmp_path / "log")
    assert [len(e) for e in back] == [6, 4]
    assert np.array_equal(back[0][3].obs, eps[0][3].obs)
    assert back[0][2].human_action is not None and back[0][0].human_action is None
    # next_obs is the next step's obs, and the env's terminal observation at the end
    assert np.array_equal(back[0][2].next_obs, eps[0][3].obs)
    assert np.array_equal(back[0][-1].next_obs, terminal)
    data = transitions(back)
    assert np.array_equal(data.next_obs[5], terminal) and np.array_equal(data.next_obs[9],
                                                                         -terminal)
    # a collision is terminal; a timeout (truncation) bootstraps from its terminal obs
    assert data.done.tolist() == [0, 0, 0, 0, 0, 1] + [0, 0, 0, 0]


def test_human_seconds_counts_simulated_time_under_human_control():
    # 3 + 2 human steps of 0.1 s each
    assert human_seconds([_episode("ahhhaa"), _episode("hh")]) == pytest.approx(0.5)
    assert human_seconds([_episode("aaaa")]) == 0.0


def test_rlif_penalises_exactly_the_step_before_each_takeover():
    eps = [_episode("aahhaah"), _episode("haa")]
    r = intervention_rewards(eps)
    assert r.tolist() == [0, -1, 0, 0, 0, -1, 0] + [0, 0, 0]
    data = rlif_data(eps)
    assert np.array_equal(data.reward, r) and data.intervened.sum() == 4


def test_rlif_task_reward_adds_the_logged_reward_on_top_of_the_penalty(monkeypatch):
    import takeover.agents.learners.rlif as rlif
    from takeover.agents.learners.offpolicy import QAgent, build_dqn

    eps = [[dataclasses.replace(r, reward=0.5) for r in _episode("aahhaah")]]
    seen = {}
    monkeypatch.setattr(rlif, "rlif_update", lambda model, data, *a, salient, **k: (
        seen.update(reward=data.reward, salient=salient), [0.0])[1])
    agent = QAgent(build_dqn("takeover/Plain-v2", net_arch=(8,), seed=0))
    stats = rlif.RLIF(penalty=-2.0, task_reward=0.1).update(agent, eps, seed=0)
    assert stats["samples"] == 2  # the two steps before a takeover, not every rewarded one
    assert np.allclose(seen["reward"], [0.05, -1.95, 0.05, 0.05, 0.05, -1.95, 0.05])
    # the salient half of each batch: the penalised and the human-driven steps only
    assert seen["salient"].tolist() == [False, True, True, True, False, True, True]
    with pytest.raises(ValueError, match="task_reward"):
        rlif.RLIF(task_reward=-1.0)


def test_rlif_prior_data_is_the_agents_own_driving_replayed_as_non_salient(monkeypatch):
    import takeover.agents.learners.rlif as rlif
    from takeover.agents.learners.offpolicy import QAgent, build_dqn

    agent = QAgent(build_dqn("takeover/Plain-v2", net_arch=(8,), seed=0))
    prior = rlif.prior_transitions(agent, 100, n_envs=4)
    assert len(prior) == 100 and prior.obs.shape == (100, 9, 7)
    assert np.array_equal(prior.action[:, 0], agent.predict(prior.obs))  # its own greedy actions
    assert not prior.intervened.any() and set(np.unique(prior.done)) <= {0.0, 1.0}
    learner = rlif.RLIF(penalty=-2.0, task_reward=0.1, prior_steps=100)
    learner.start(agent)
    seen = {}
    monkeypatch.setattr(rlif, "rlif_update", lambda model, data, *a, salient, **k: (
        seen.update(n=len(data), salient=salient, reward=data.reward), [0.0])[1])
    learner.update(agent, [_episode("aahhaah")], seed=0)
    assert seen["n"] == 107 and seen["salient"][7:].sum() == 0  # prior rows: the other half
    assert np.allclose(seen["reward"][7:], 0.1 * learner.prior.reward)


def _prior_ensemble(k: int = 3):
    from takeover.agents.learners.distill import prior_ensemble

    env = gym.make("takeover/Plain-v2", action_type="discrete")
    teacher = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [16, 16]}, seed=0,
                  device="cpu").policy
    obs = np.stack([env.reset(seed=s)[0] for s in range(32)])
    return prior_ensemble(teacher, obs, k, seed=0, epochs=5, width=8, batch_size=16), obs


def _logits(policies, obs):
    """``(K, B, n)`` raw (unnormalised) action logits of each member."""
    with torch.no_grad():
        x = torch.as_tensor(obs).reshape(len(obs), -1)
        return torch.stack([p.action_net(p.mlp_extractor.forward_actor(x)) for p in policies])


@pytest.mark.parametrize("refit", ["shared", "correction"])
def test_ensemble_refits_keep_the_random_priors(refit):
    """Fine-tuning a randomized-prior ensemble changes its behaviour but never its frozen
    trunk or its priors; ``shared`` also keeps every member's raw-logit difference to the
    others exactly (what makes them disagree)."""
    members, obs = _prior_ensemble()
    hidden, width = prior_layout(members[0])
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in members]
    diff0 = _logits(members, obs)
    eps = [_episode("aahhhhhhha", f"e{i}", seed=i) for i in range(4)]
    agg = Aggregate.from_records([r for e in eps for r in e], relabel=False)
    clone_members(members, agg, epochs=20, batch_size=16, lr=1e-2, seed=0, bootstrap=True,
                  refit=refit)
    after = _logits(members, obs)
    assert (after - diff0).abs().max() > 0.05  # the behaviour moved
    n = len([k for k in before[0] if k.startswith("mlp_extractor.policy_net")]) // 2 - 1
    for b, m in zip(before, members, strict=True):
        st = m.state_dict()
        for k in b:
            if k.startswith("mlp_extractor.policy_net") and not k.startswith(
                    f"mlp_extractor.policy_net.{2 * n}"):
                assert torch.equal(b[k], st[k]), k  # the frozen trunk
        last = f"mlp_extractor.policy_net.{2 * n}.weight"
        assert torch.equal(b[last][:hidden + width], st[last][:hidden + width])  # priors
        assert torch.equal(b["action_net.weight"][:, hidden:hidden + width],
                           st["action_net.weight"][:, hidden:hidden + width])
    if refit == "shared":
        spread0 = diff0 - diff0[:1]
        spread1 = after - after[:1]
        assert torch.allclose(spread0, spread1, atol=1e-5)


def test_finetune_params_leaves_plain_policies_whole():
    env = gym.make("takeover/Plain-v2", action_type="discrete")
    policy = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu").policy
    assert prior_layout(policy) is None
    assert all(m is None for _, m in finetune_params(policy))
    with pytest.raises(ValueError, match="refit='everything'"):
        finetune_params(policy, "everything")


def test_q_agent_checkpoint_round_trips(tmp_path):
    from takeover.agents.learners.offpolicy import QAgent, build_dqn, load_q_agent, save_q_agent
    from takeover.agents.risk import RiskCritic, RiskSpec

    model = build_dqn("takeover/Plain-v2", net_arch=(8,), seed=3)
    agent = QAgent(model, risk=RiskCritic(RiskSpec(obs_dim=63, hidden=(8,))),
                   metadata={"env_id": "takeover/Plain-v2", "recipe": {"net_arch": [8]}})
    save_q_agent(agent, tmp_path / "q")
    back = load_q_agent(tmp_path / "q")
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 9, 7)).astype(np.float32)
    assert np.array_equal(back.q(obs), agent.q(obs))
    assert np.array_equal(back.predict(obs), agent.predict(obs))
    out = back.act(obs[0])
    assert out.action == int(agent.q(obs[:1]).argmax()) and out.risk is not None
    assert out.probs.shape == (5,) and np.isclose(out.probs.sum(), 1.0)
    with pytest.raises(FileNotFoundError, match="offpolicy --out"):
        load_q_agent(tmp_path)


def test_learning_config_is_dispatched_and_checked():
    from takeover.experiments.rounds import (
        HELD_OUT_SEED,
        held_out_seeds,
        is_learning_config,
        load_learning_config,
        train_seed,
    )

    assert is_learning_config("learning") and is_learning_config("learning-quick")
    assert not is_learning_config("default") and not is_learning_config(None)
    cfg = load_learning_config("learning")
    assert cfg.learning.finetune_seeds >= 3 and len(cfg.learning.humans) == 2
    seeds = held_out_seeds(cfg)
    assert min(min(s) for s in seeds.values()) >= HELD_OUT_SEED
    assert len({s for v in seeds.values() for s in v}) == sum(map(len, seeds.values()))
    grid = {train_seed(100_000, f, r, k, i) for f in range(9) for r in range(10)
            for k in range(10) for i in range(30)}
    assert len(grid) == 9 * 10 * 10 * 30 and max(grid) < 200_000  # disjoint, in the block
    with pytest.raises(ConfigError, match="Did you mean 'rlif'"):
        load_learning_config("learning", ["learning.methods=[rlf]"])
    from takeover.config import from_dict
    from takeover.experiments.rounds import LearningSection

    with pytest.raises(ConfigError, match="learner_kwargs.pvpp: unknown learner"):
        from_dict(LearningSection, {"learner_kwargs": {"pvpp": {}}})
    assert load_learning_config("learning", ["learning.methods=[pvp]"]).learning.methods == (
        "pvp",)  # the other methods' learner_kwargs are kept, unused


def test_hg_dagger_delivered_labels_clone_only_arrived_episodes():
    from takeover.agents.learners.hg_dagger import HGDagger, delivered

    good, bad = _episode("aahhha", "good"), _episode("aahhha", "bad", seed=1)
    good[-1] = dataclasses.replace(good[-1], outcome="arrived", terminated=True)
    bad[-1] = dataclasses.replace(bad[-1], outcome="collision", terminated=True)
    assert delivered(good) and not delivered(bad) and not delivered([])
    policy = PPO("MlpPolicy", gym.make("takeover/Plain-v2", action_type="discrete"),
                 policy_kwargs={"net_arch": [8]}, seed=0, device="cpu").policy

    class Agent:
        policies = [policy]

    stats = HGDagger(epochs=1, anchor_weight=0.0, labels="delivered").update(
        Agent(), [good, bad], seed=0)
    assert stats["samples"] == 3  # the three human steps of the arrived episode only
    assert HGDagger(epochs=1, anchor_weight=0.0).update(Agent(), [good, bad],
                                                       seed=0)["samples"] == 6
    with pytest.raises(ValueError, match="labels='best'"):
        HGDagger(labels="best")
