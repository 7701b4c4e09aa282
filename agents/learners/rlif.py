"""RLIF (Luo et al. 2023, "RLIF: Interactive Imitation Learning as Reinforcement Learning"):
the human's decision to intervene is itself the reward. The agent step right before each
takeover gets reward -1, every other step 0, and an off-policy RL agent maximises that:
it learns to avoid the states and actions that make the human take over, which works
even when the human's own driving is imperfect (their labels are never cloned).

Here the RL is DQN-style Q-learning on every logged transition so far (agent and human
steps alike), with a target network, a squared TD loss (a Huber loss, as SB3's DQN uses,
caps the gradient of the rare large penalty errors and left the policy unchanged in our
measurement), and batches drawn half
from the salient transitions (human-driven or penalised) and half from the rest, the
symmetric sampling RLPD (which RLIF uses) applies to its prior data. ``conservative``
adds the CQL term so actions never logged do not keep their pretrained, larger values
(``pvp.conservative_penalty``). A pretrained Q-network's values sit on its training
return's scale (about 50 for the DQN novice), where a -1 is noise: ``penalty="auto"`` sets
the intervention reward to minus that scale (``pvp.q_scale``), so one takeover costs about
as much as the value of driving on.

Typical round::

    learner = RLIF(gradient_steps=500); learner.start(q_agent)
    learner.update(q_agent, read_episodes(*round_dirs), seed=round)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.utils import polyak_update

from takeover.agents.learners.base import Episodes
from takeover.agents.learners.pvp import (
    FIELDS,
    Transitions,
    TwoBuffers,
    _step,
    conservative_penalty,
    q_model,
    q_scale,
    set_lr,
    transitions,
)

INTERVENTION_REWARD = -1.0
PRIOR_SEED = 170_000
"""Plain-traffic seeds of the prior data (the training block 100_000..199_999)."""


def prior_transitions(agent: Any, steps: int, *, env_id: str = "takeover/Plain-v2",
                      seed: int = PRIOR_SEED, n_envs: int = 8) -> Transitions:
    """``steps`` transitions of ``agent`` driving greedily in plain traffic, with the env's
    reward: RLPD's prior data (RLIF samples half of every batch from it), so fine-tuning
    on a few supervised episodes does not overwrite how the agent drives everywhere else.
    ``done`` is 1 on terminations only (a truncation bootstraps from its final obs)."""
    from takeover.agents.train import make_vec_env

    venv = make_vec_env(env_id, n_envs, seed, "discrete", {})
    cols: dict[str, list] = {k: [] for k in ("obs", "action", "next", "done", "reward")}
    obs = venv.reset()
    for _ in range(-(-steps // n_envs)):
        act = agent.predict(obs)
        nxt, rew, done, infos = venv.step(act)
        final = nxt.copy()
        term = np.zeros(n_envs, np.float32)
        for i in np.flatnonzero(done):
            final[i] = infos[i]["terminal_observation"]
            term[i] = 0.0 if infos[i].get("TimeLimit.truncated") else 1.0
        for k, v in (("obs", obs), ("action", act), ("next", final), ("done", term),
                     ("reward", rew)):
            cols[k].append(np.asarray(v))
        obs = nxt
    venv.close()
    c = {k: np.concatenate(v)[:steps] for k, v in cols.items()}
    act = c["action"].astype(np.float32).reshape(-1, 1)
    return Transitions(obs=c["obs"].astype(np.float32), action=act, novice=act,
                       next_obs=c["next"].astype(np.float32), done=c["done"],
                       intervened=np.zeros(len(act), bool),
                       reward=c["reward"].astype(np.float32))


def intervention_rewards(episodes: Episodes, penalty: float = INTERVENTION_REWARD) -> np.ndarray:
    """``(N,)`` rewards in :func:`pvp.transitions` order: ``penalty`` on every step not
    driven by the human that is followed by a human-driven one (the step the human
    judged bad enough to take over), 0 elsewhere."""
    out = []
    for recs in episodes:
        human = np.array([r.controller == "human" for r in recs])
        r = np.zeros(len(recs), np.float32)
        r[:-1][~human[:-1] & human[1:]] = penalty
        out.append(r)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def rlif_data(episodes: Episodes, penalty: float = INTERVENTION_REWARD) -> Transitions:
    """The log's transitions with RLIF's intervention rewards."""
    return replace(transitions(episodes), reward=intervention_rewards(episodes, penalty))


def rlif_update(model, data: Transitions, gradient_steps: int = 500, batch_size: int = 64,
                seed: int = 0, *, lr: float | None = None, gamma: float | None = None,
                tau: float = 0.005, conservative: float = 1.0,
                salient: np.ndarray | None = None) -> list[float]:
    """Q-learning of an SB3 ``DQN`` ``model`` in place on ``data`` (rewards in
    ``data.reward``); returns the loss of every gradient step. ``salient`` (default:
    human-driven or non-zero reward) marks the rows of the first half of each batch."""
    from stable_baselines3 import DQN

    if not isinstance(model, DQN):
        raise TypeError(f"rlif_update needs an SB3 DQN model, got {type(model).__name__}")
    if data.action.shape[1] != 1:
        raise ValueError("the log holds continuous actions but the DQN model is discrete")
    if batch_size < 2 or gradient_steps < 1:
        raise ValueError(f"need batch_size >= 2 and gradient_steps >= 1 (got {batch_size}, "
                         f"{gradient_steps})")
    if salient is None:
        salient = data.intervened | (data.reward != 0)
    buffers = TwoBuffers(data, seed, split=salient)
    gamma = model.gamma if gamma is None else gamma
    set_lr(model, lr)
    dev = model.device
    model.policy.set_training_mode(True)
    history = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(gradient_steps):
                b, _ = buffers.sample(batch_size)
                obs, nxt = torch.as_tensor(b.obs, device=dev), torch.as_tensor(b.next_obs,
                                                                               device=dev)
                act = torch.as_tensor(b.action[:, 0], device=dev).long()
                rew, done = torch.as_tensor(b.reward, device=dev), torch.as_tensor(b.done,
                                                                                   device=dev)
                with torch.no_grad():
                    target = rew + gamma * (1.0 - done) * model.q_net_target(nxt).max(1).values
                q = model.q_net(obs)
                loss = F.mse_loss(q.gather(1, act[:, None]).squeeze(1), target)
                if conservative:
                    loss = loss + conservative * conservative_penalty(q, act)
                _step(model.policy.optimizer, loss, model.q_net.parameters())
                polyak_update(model.q_net.parameters(), model.q_net_target.parameters(), tau)
                history.append(float(loss.detach()))
    finally:
        model.policy.set_training_mode(False)
    return history


class RLIF:
    """RLIF through the learner interface, on an agent with an SB3 DQN ``model``.

    Args:
        gradient_steps, batch_size, lr, tau: the optimiser (``rlif_update``).
        penalty: the reward of the step before an intervention; ``"auto"`` = minus
            ``pvp.q_scale`` on the first update's states, then fixed (-1 = the paper's, for
            a Q-network trained from scratch).
        conservative: weight of the CQL term (0 = plain DQN targets).
        task_reward: weight of the logged env reward added to the intervention rewards
            (0 = the paper's: no task reward). A pretrained Q-network fine-tuned on reward
            0 everywhere else decays toward 0 and forgets how to drive; the weight the
            agent was trained with (its recipe's ``reward_scale``) keeps its values on
            their scale, so the penalty is learned on top of what it knew.
        prior_steps: plain-traffic transitions of the starting agent collected once in
            ``start`` (:func:`prior_transitions`) and replayed in the non-salient half of
            every batch with ``task_reward`` x their env reward (0 = none).
    """

    name = "rlif"
    agent_kind = "q"

    def __init__(self, *, gradient_steps: int = 500, batch_size: int = 64,
                 lr: float | None = 1e-4, tau: float = 0.005,
                 penalty: float | str = "auto", conservative: float = 1.0,
                 task_reward: float = 0.0, prior_steps: int = 0) -> None:
        if penalty != "auto" and not (isinstance(penalty, (int, float)) and penalty < 0):
            raise ValueError(f"penalty={penalty!r}: use 'auto' or a negative number")
        self.gradient_steps, self.batch_size, self.lr, self.tau = (gradient_steps, batch_size,
                                                                   lr, tau)
        if not task_reward >= 0:
            raise ValueError(f"task_reward={task_reward!r}: use a weight >= 0")
        self.penalty, self.conservative, self.task_reward = penalty, conservative, task_reward
        self.prior_steps = int(prior_steps)
        self.prior: Transitions | None = None

    def start(self, agent: Any) -> None:
        q_model(agent)
        if self.prior_steps:
            self.prior = prior_transitions(agent, self.prior_steps)

    def update(self, agent: Any, episodes: Episodes, *, seed: int) -> dict[str, float]:
        model = q_model(agent)
        data = transitions(episodes)
        if self.penalty == "auto":
            self.penalty = -q_scale(model, data.obs)
        penalties = intervention_rewards(episodes, float(self.penalty))
        if not (penalties != 0).any():
            return {"samples": 0.0}
        task = np.array([r.reward for e in episodes for r in e], np.float32)
        data = replace(data, reward=penalties + np.float32(self.task_reward) * task)
        salient = data.intervened | (penalties != 0)
        if self.prior is not None:
            prior = replace(self.prior, reward=np.float32(self.task_reward) * self.prior.reward)
            data = Transitions(*(np.concatenate([getattr(data, k), getattr(prior, k)])
                                 for k in FIELDS))
            salient = np.concatenate([salient, np.zeros(len(prior), bool)])
        losses = rlif_update(model, data, self.gradient_steps, self.batch_size, seed,
                             lr=self.lr, tau=self.tau, conservative=self.conservative,
                             salient=salient)
        return {"samples": float((penalties != 0).sum()), "penalty": float(self.penalty),
                "loss_first": losses[0], "loss_last": losses[-1]}
