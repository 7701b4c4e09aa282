"""PVP-style value learning from interventions (Peng et al., "Learning from Active Human
Involvement through Proxy Value Propagation", NeurIPS 2023), on SB3 DQN or TD3 models.

No reward is used. Where the human intervened, the human's action gets the proxy value +1
and the agent action it overrode gets -1; every transition also gets a reward-free TD
update, which propagates those proxy values to the states that lead there. Human and
novice (agent-driven) transitions sit in two buffers and each batch draws half from each,
so the few human steps are not drowned by the many agent steps.

An episode's last step bootstraps from the terminal observation the log stores
(``LoggedStep.next_obs``) when it ended by truncation (a timeout, a user quit: the state
still had value); a termination (arrival, collision, off-road) is terminal. Without a
stored terminal observation (a schema-1.0 log) the last step is treated as terminal.

Fine-tuning a *pretrained* Q-network this way has two traps. Its values sit on the scale of
its training return (about 50 for the DQN novice), where proxy values of +-1 are noise:
``proxy`` sets them on that scale (the learner's ``proxy="auto"``: the mean greedy Q-value
on the first logged states, :func:`q_scale`). And TD pulls the logged actions' values while
the actions never logged keep their pretrained ones, so the greedy policy can jump to them:
``conservative > 0`` adds the CQL term ``logsumexp_a Q(s, a) - Q(s, a_logged)`` (Kumar et
al. 2020), which pulls the unlogged actions down with them.

Typical round::

    data = transitions(read_episodes(run_dir))
    losses = pvp_update(dqn_model, data, gradient_steps=500, batch_size=64, seed=round)

or through the learner interface: ``PVP(gradient_steps=500).update(agent, episodes, seed=r)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.utils import polyak_update

from takeover.agents.learners.base import Episodes, intervened
from takeover.types import Step

FIELDS = ("obs", "action", "novice", "next_obs", "done", "intervened", "reward")


@dataclass(frozen=True)
class Transitions:
    """Logged steps as arrays.

    Attributes:
        obs: ``(N, *obs_shape)`` float32 observation the step was decided on.
        action: ``(N, A)`` float32 executed action (the human's where they intervened).
        novice: ``(N, A)`` float32 the agent's own action (the overridden one when
            ``intervened``).
        next_obs: ``(N, *obs_shape)`` float32 the next step's observation.
        done: ``(N,)`` float32, 1 on each episode's last step (no bootstrap).
        intervened: ``(N,)`` bool, the human drove and gave an input this step.
        reward: ``(N,)`` float32 learning reward (PVP: unused; RLIF: -1 on the step before
            an intervention, see ``rlif.intervention_rewards``).
    """

    obs: np.ndarray
    action: np.ndarray
    novice: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray
    intervened: np.ndarray
    reward: np.ndarray

    def __len__(self) -> int:
        return len(self.done)

    def subset(self, mask: np.ndarray) -> Transitions:
        return Transitions(*(getattr(self, k)[mask] for k in FIELDS))


def transitions(episodes: Iterable[Sequence[Step]]) -> Transitions:
    """Transitions of complete episodes (e.g. ``read_episodes(d)``), reward 0: ``done`` is
    1 where the episode terminated (no bootstrap) and 0 on a truncation whose terminal
    observation was logged."""
    cols: dict[str, list] = {k: [] for k in ("obs", "action", "novice", "next", "done", "iv")}
    for recs in episodes:
        for i, r in enumerate(recs):
            last = i == len(recs) - 1
            iv = intervened(r)
            cols["obs"].append(r.obs)
            cols["action"].append(r.human_action if iv else r.action)
            cols["novice"].append(r.agent_action)
            nxt = getattr(r, "next_obs", getattr(r, "terminal_obs", None))
            if not last:
                nxt = recs[i + 1].obs
            bootstrap = not last or (nxt is not None and r.truncated and not r.terminated)
            cols["next"].append(r.obs if nxt is None else nxt)
            cols["done"].append(0.0 if bootstrap else 1.0)
            cols["iv"].append(iv)
    if not cols["obs"]:
        raise ValueError("no logged steps to learn from")
    f32 = np.float32
    return Transitions(
        obs=np.stack(cols["obs"]).astype(f32),
        action=np.stack([np.asarray(a, f32).reshape(-1) for a in cols["action"]]),
        novice=np.stack([np.asarray(a, f32).reshape(-1) for a in cols["novice"]]),
        next_obs=np.stack(cols["next"]).astype(f32),
        done=np.asarray(cols["done"], f32),
        intervened=np.asarray(cols["iv"], bool),
        reward=np.zeros(len(cols["done"]), f32),
    )


class TwoBuffers:
    """Human and novice transitions, sampled half and half (all from one if the other is
    empty), reproducibly from ``seed``. ``split`` (default ``data.intervened``) says which
    rows form the first ("human") buffer."""

    def __init__(self, data: Transitions, seed: int = 0,
                 split: np.ndarray | None = None) -> None:
        first = data.intervened if split is None else np.asarray(split, bool)
        self.human = data.subset(first)
        self.novice = data.subset(~first)
        if len(self.human) == 0:
            raise ValueError("the log has no intervention (human step with an input): "
                             "nothing to learn from")
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> tuple[Transitions, int]:
        """A batch whose first ``n_human`` rows come from the human buffer."""
        n_h = batch_size if len(self.novice) == 0 else batch_size // 2
        hi = self.rng.integers(0, len(self.human), n_h)
        ni = self.rng.integers(0, len(self.novice), batch_size - n_h) if n_h < batch_size \
            else np.zeros(0, int)
        h, n = self.human.subset(hi), self.novice.subset(ni)
        return Transitions(*(np.concatenate([getattr(h, k), getattr(n, k)])
                             for k in FIELDS)), n_h


def _t(x: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(x, device=device)


def conservative_penalty(q: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """CQL(H) for discrete actions: ``mean(logsumexp_a Q(s, a) - Q(s, a_logged))``."""
    return (torch.logsumexp(q, 1) - q.gather(1, act[:, None]).squeeze(1)).mean()


def _dqn_loss(model, b: Transitions, n_h: int, gamma: float,
              conservative: float = 0.0, proxy: float = 1.0) -> torch.Tensor:
    dev = model.device
    obs, nxt, done = _t(b.obs, dev), _t(b.next_obs, dev), _t(b.done, dev)
    act = _t(b.action[:, 0], dev).long()
    nov = _t(b.novice[:, 0], dev).long()
    with torch.no_grad():
        target = gamma * (1.0 - done) * model.q_net_target(nxt).max(dim=1).values
    q = model.q_net(obs)
    td = F.mse_loss(q.gather(1, act[:, None]).squeeze(1), target)
    qh = q[:n_h]
    pv_h = (qh.gather(1, act[:n_h, None]).squeeze(1) - proxy).pow(2)
    differs = (nov[:n_h] != act[:n_h]).float()  # an agreeing novice is not penalised
    pv_n = (qh.gather(1, nov[:n_h, None]).squeeze(1) + proxy).pow(2) * differs
    loss = td + (pv_h + pv_n).mean()
    if conservative:
        loss = loss + conservative * conservative_penalty(q, act)
    return loss


def _td3_critic_loss(model, b: Transitions, n_h: int, gamma: float) -> torch.Tensor:
    dev = model.device
    obs, nxt, done = _t(b.obs, dev), _t(b.next_obs, dev), _t(b.done, dev)
    act, nov = _t(b.action, dev), _t(b.novice, dev)
    with torch.no_grad():
        noise = (torch.randn_like(act) * model.target_policy_noise).clamp(
            -model.target_noise_clip, model.target_noise_clip)
        a2 = (model.actor_target(nxt) + noise).clamp(-1, 1)
        q2 = torch.min(torch.cat(model.critic_target(nxt, a2), dim=1), dim=1).values
        target = gamma * (1.0 - done) * q2
    differs = (nov[:n_h] - act[:n_h]).abs().amax(dim=1).gt(1e-6).float()
    critic = torch.zeros((), device=dev)
    for q, qn in zip(model.critic(obs, act), model.critic(obs[:n_h], nov[:n_h]), strict=True):
        q = q.squeeze(1)
        pv = (q[:n_h] - 1.0).pow(2) + (qn.squeeze(1) + 1.0).pow(2) * differs
        critic = critic + F.mse_loss(q, target) + pv.mean()
    return critic


def _td3_actor_loss(model, b: Transitions) -> torch.Tensor:
    obs = _t(b.obs, model.device)
    return -model.critic.q1_forward(obs, model.actor(obs)).mean()


def pvp_update(model, data: Transitions, gradient_steps: int = 500, batch_size: int = 64,
               seed: int = 0, *, lr: float | None = None, gamma: float | None = None,
               tau: float = 0.005, policy_delay: int = 2,
               conservative: float = 0.0, proxy: float = 1.0) -> list[float]:
    """Train ``model`` (SB3 ``DQN`` for Discrete actions, ``TD3`` for Box) in place on
    logged ``data`` with PVP's reward-free TD + proxy-value losses.

    Args:
        gradient_steps: optimiser steps, each on a batch half human / half novice.
        lr: learning rate (default: the model's current one).
        gamma: discount (default: the model's).
        tau: Polyak rate of the target networks.
        policy_delay: TD3 only, actor and target updates every this many critic steps.
        conservative: DQN only, weight of :func:`conservative_penalty` (0 = plain PVP).
        proxy: DQN only, the proxy value (+proxy human action, -proxy overridden one).

    Returns:
        the (critic) loss of every gradient step.
    """
    from stable_baselines3 import DQN, TD3

    if not isinstance(model, (DQN, TD3)):
        raise TypeError(f"pvp_update needs an SB3 DQN (Discrete) or TD3 (Box) model, got "
                        f"{type(model).__name__}; for PPO/A2C use takeover.agents.learners.hg_dagger")
    discrete = isinstance(model.action_space, spaces.Discrete)
    if discrete and data.action.shape[1] != 1:
        raise ValueError("the log holds continuous actions but the DQN model is discrete")
    if not discrete and data.action.shape[1:] != model.action_space.shape:
        raise ValueError(f"the log's actions have shape {data.action.shape[1:]}, the model's "
                         f"action space {model.action_space.shape}")
    if batch_size < 2 or gradient_steps < 1:
        raise ValueError(f"need batch_size >= 2 and gradient_steps >= 1 (got {batch_size}, "
                         f"{gradient_steps})")
    buffers = TwoBuffers(data, seed)
    gamma = model.gamma if gamma is None else gamma
    set_lr(model, lr)
    model.policy.set_training_mode(True)
    m = cast(Any, model)  # DQN (discrete) or TD3: SB3 types their networks loosely
    history = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for step in range(gradient_steps):
                batch, n_h = buffers.sample(batch_size)
                if discrete:
                    loss = _dqn_loss(model, batch, n_h, gamma, conservative, proxy)
                    _step(model.policy.optimizer, loss, m.q_net.parameters())
                    polyak_update(m.q_net.parameters(), m.q_net_target.parameters(), tau)
                else:
                    loss = _td3_critic_loss(model, batch, n_h, gamma)
                    _step(m.critic.optimizer, loss, m.critic.parameters())
                    if step % policy_delay == 0:
                        _step(m.actor.optimizer, _td3_actor_loss(model, batch),
                              m.actor.parameters())
                        polyak_update(m.critic.parameters(),
                                      m.critic_target.parameters(), tau)
                        polyak_update(m.actor.parameters(),
                                      m.actor_target.parameters(), tau)
                history.append(float(loss.detach()))
    finally:
        model.policy.set_training_mode(False)
    return history


def set_lr(model, lr: float | None) -> None:
    """Set the step size of every optimiser of an SB3 DQN / TD3 model (``None``: keep)."""
    if lr is None:
        return
    opts = ([model.policy.optimizer] if isinstance(model.action_space, spaces.Discrete)
            else [model.critic.optimizer, model.actor.optimizer])
    for opt in opts:
        for g in opt.param_groups:
            g["lr"] = lr


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, max_norm: float = 10.0):
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params), max_norm)
    opt.step()


@torch.no_grad()
def q_values(model, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``Q(obs, action)`` of a DQN (actions ``(N,)`` or ``(N, 1)`` indices) or a TD3 model
    (first critic), for checks like "the human's action now scores higher"."""
    obs_t = torch.as_tensor(obs, dtype=torch.float32, device=model.device)
    if isinstance(model.action_space, spaces.Discrete):
        idx = torch.as_tensor(np.asarray(actions).reshape(-1), device=model.device).long()
        return model.q_net(obs_t).gather(1, idx[:, None]).squeeze(1).cpu().numpy()
    act = torch.as_tensor(actions, dtype=torch.float32, device=model.device)
    return model.critic.q1_forward(obs_t, act).squeeze(1).cpu().numpy()


@torch.no_grad()
def q_scale(model, obs: np.ndarray) -> float:
    """Mean greedy Q-value ``max_a Q(s, a)`` of a DQN over ``obs`` (at least 1): the scale
    of its values, on which proxy values / intervention rewards must be set to matter."""
    q = model.q_net(torch.as_tensor(obs, dtype=torch.float32, device=model.device))
    return max(1.0, float(q.max(1).values.abs().mean()))


class PVP:
    """PVP through the learner interface, on an agent with an SB3 ``model`` (DQN/TD3, e.g.
    ``offpolicy.QAgent``): every round replays every logged transition so far.

    Args:
        gradient_steps, batch_size, lr, tau: the optimiser (``pvp_update``).
        conservative: weight of the CQL term that keeps unlogged actions from taking over
            a pretrained Q-network (see the module docstring; 0 = the paper's loss).
        proxy: the proxy value; ``"auto"`` = :func:`q_scale` on the first update's logged
            states, then fixed (1.0 = the paper's, for a Q-network trained from scratch).
    """

    name = "pvp"
    agent_kind = "q"

    def __init__(self, *, gradient_steps: int = 500, batch_size: int = 64,
                 lr: float | None = 1e-4, tau: float = 0.005, conservative: float = 1.0,
                 proxy: float | str = "auto") -> None:
        if proxy != "auto" and not (isinstance(proxy, (int, float)) and proxy > 0):
            raise ValueError(f"proxy={proxy!r}: use 'auto' or a positive number")
        self.gradient_steps, self.batch_size, self.lr, self.tau = (gradient_steps, batch_size,
                                                                   lr, tau)
        self.conservative, self.proxy = conservative, proxy

    def start(self, agent: Any) -> None:
        q_model(agent)

    def update(self, agent: Any, episodes: Episodes, *, seed: int) -> dict[str, float]:
        data = transitions(episodes)
        if not data.intervened.any():
            return {"samples": 0.0}
        model = q_model(agent)
        if self.proxy == "auto":
            self.proxy = q_scale(model, data.obs)
        losses = pvp_update(model, data, self.gradient_steps, self.batch_size, seed,
                            lr=self.lr, tau=self.tau, conservative=self.conservative,
                            proxy=float(self.proxy))
        return {"samples": float(data.intervened.sum()), "proxy": float(self.proxy),
                "loss_first": losses[0], "loss_last": losses[-1]}


def q_model(agent: Any):
    """The SB3 DQN/TD3 model an off-policy learner updates, or a clear error."""
    from stable_baselines3 import DQN, TD3

    model = getattr(agent, "model", None)
    if not isinstance(model, (DQN, TD3)):
        raise TypeError(f"{type(agent).__name__} has no SB3 DQN/TD3 model (agent.model): "
                        "pvp and rlif need an off-policy agent, e.g. "
                        "takeover.agents.learners.offpolicy.load_q_agent(path); for the "
                        "PPO novice use hg-dagger or thrifty")
    return model
