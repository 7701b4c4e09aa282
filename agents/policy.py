"""Agents the supervisor can query: one SB3 policy, or an ensemble of K, plus an optional
risk critic and the sample of training observations a novelty estimator compares against.

Both agents answer ``act(obs) -> AgentOutput`` (``takeover.types.Agent``) with the
deterministic action and everything an uncertainty estimator needs: action probabilities
(Discrete) or Gaussian means / log stds (Box), per-member actions for ensembles, the risk
critic's failure probability, and, when ``dropout_samples > 0``, MC-dropout samples:

``extra["dropout_actions"]``  ``(S,)`` int or ``(S, A)`` float actions of S forwards with
                              hidden units dropped at rate ``dropout_rate``
``extra["dropout_probs"]``    ``(S, n)`` their action probabilities (Discrete only)
``extra["risk_by_horizon"]``  ``{horizon_s: probability}`` of every critic head
``extra["risk_samples"]``     ``(S,)`` MC-dropout samples of ``risk`` (critic's own dropout)

The SB3 policies stay reachable (``agent.policy`` / ``agent.policies``) so fine-tuning can
update them in place; the batched forward picks up such updates automatically.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces

from takeover.agents.ensemble import LOG_STD_MAX, LOG_STD_MIN, EnsemblePolicy
from takeover.agents.risk import RiskCritic
from takeover.types import AgentOutput, AgentOutputs


class EnsembleAgent:
    """K SB3 policies of the same architecture acting as one agent (mean of the members).

    Discrete: the action with the highest mean member probability. Box: the mean of the
    members' deterministic actions."""

    def __init__(self, policies: list, *, risk: RiskCritic | None = None,
                 reference_obs: np.ndarray | None = None, metadata: dict | None = None,
                 dropout_rate: float = 0.1, dropout_samples: int = 0, seed: int = 0) -> None:
        for p in policies:
            p.set_training_mode(False)
        self.ensemble = EnsemblePolicy(policies)
        self.risk_critic = risk
        self.reference_obs = reference_obs
        """``(N, *obs_shape)`` observations from the policy's training env (or ``None``)."""
        self.metadata = dict(metadata or {})
        self.dropout_rate = dropout_rate
        self.dropout_samples = dropout_samples
        self._gen = torch.Generator().manual_seed(seed)
        self._risk_of: RiskCritic | None = None  # numpy copy of the critic, for act()
        self._risk_params: list[torch.Tensor] = []
        self._risk_key = -1
        self._risk_np: list[tuple[np.ndarray, np.ndarray]] = []

    # --- what it is ---------------------------------------------------------------------
    @property
    def policies(self) -> list:
        return self.ensemble.policies

    @property
    def observation_space(self) -> spaces.Box:
        return self.policies[0].observation_space

    @property
    def action_space(self) -> spaces.Space:
        return self.policies[0].action_space

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, spaces.Discrete)

    def seed(self, seed: int) -> None:
        """Reseed the MC-dropout sampler."""
        self._gen = torch.Generator().manual_seed(seed)

    # --- acting -------------------------------------------------------------------------
    def _as_batch(self, obs: np.ndarray) -> torch.Tensor:
        obs = np.asarray(obs, dtype=np.float32)
        shape = self.observation_space.shape
        if obs.shape[1:] != shape:
            raise ValueError(
                f"observations of shape {obs.shape[1:]} do not match the agent's observation "
                f"space {self.observation_space}; was the env built with another config?"
            )
        return torch.from_numpy(obs)

    def _combine(self, member_actions: np.ndarray, probs: torch.Tensor | None) -> np.ndarray:
        """``(K, B[, A])`` member actions -> ``(B[, A])`` ensemble actions."""
        if self.discrete:
            return cast(torch.Tensor, probs).mean(0).argmax(-1).numpy()  # discrete: probs set
        return member_actions.mean(0)

    @torch.no_grad()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for a batch ``(B, *obs_shape)`` -> ``(B,)`` or ``(B, A)``."""
        dist = self.ensemble.forward(self._as_batch(obs))
        probs = torch.softmax(dist["logits"], -1) if self.discrete else None
        return self._combine(self.ensemble.actions(dist), probs)

    @torch.no_grad()
    def act_batch(self, obs: np.ndarray) -> list[AgentOutput]:
        """One ``AgentOutput`` per row of ``obs`` ``(B, *obs_shape)``, from one forward."""
        x = self._as_batch(obs)
        b = x.shape[0]
        dist = self.ensemble.forward(x)
        member = self.ensemble.actions(dist)  # (K, B[, A])
        probs = torch.softmax(dist["logits"], -1) if self.discrete else None
        action = self._combine(member, probs)
        risk = self.risk_critic.predict(x.numpy()) if self.risk_critic is not None else None
        risk_samples = None
        if self.risk_critic is not None and self.dropout_samples > 0:
            seed = int(torch.randint(2**31 - 1, (1,), generator=self._gen))
            risk_samples = self.risk_critic.sample(x.numpy(), self.dropout_samples, seed)
        drop = self._dropout(x) if self.dropout_samples > 0 else None
        outs = []
        for i in range(b):
            outs.append(self._output(i, action, member, probs, dist, risk, risk_samples, drop))
        return outs

    def act_arrays(self, obs: np.ndarray) -> AgentOutputs:
        """``(N, *obs_shape)`` -> one :class:`~takeover.types.AgentOutputs`, each row
        computed independently of the batch (``takeover.agents.arrays``): the supervision
        engine's path, same bits at any batch size. MC dropout takes ``act_batch``."""
        if self.dropout_samples > 0:
            return AgentOutputs.stack(self.act_batch(obs))
        from takeover.agents.arrays import act_arrays

        return act_arrays(self, obs)

    def act_actions(self, obs: np.ndarray) -> AgentOutputs:
        """``act_arrays`` without the risk critic: the same executed actions, bit for bit,
        for a caller that only executes them (the counterfactual rollouts' forward)."""
        if self.dropout_samples > 0:
            return self.act_arrays(obs)
        from takeover.agents.arrays import act_arrays

        return act_arrays(self, obs, risk=False)

    def act(self, obs: np.ndarray) -> AgentOutput:
        """The agent's answer for one observation (``takeover.types.Agent``).

        The per-step path of every supervised rollout, so it runs the members (and the
        risk critic) as a few numpy products instead of torch ops (see
        ``EnsemblePolicy.forward_one``); same answer as ``act_batch`` to float32 rounding.
        With MC dropout on it takes the batched torch path."""
        if self.dropout_samples > 0:
            return self.act_batch(np.asarray(obs)[None])[0]
        x = np.asarray(obs, dtype=np.float32)
        if x.shape != self.observation_space.shape:
            self._as_batch(x[None])  # raises the shape error
        y = self.ensemble.forward_one(x)  # (K, out)
        extra: dict[str, Any] = {}
        r = None
        if self.risk_critic is not None:
            risk = self._risk_one(x)
            crit = self.risk_critic
            r = float(risk[crit.primary_index])
            extra["risk_by_horizon"] = {h: float(risk[j]) for j, h in enumerate(crit.spec.horizons)}
        single = self.ensemble.k == 1
        kind = self.ensemble.kind
        if kind == "categorical":
            e = np.exp(y - y.max(1, keepdims=True))
            probs = e / e.sum(1, keepdims=True)
            return AgentOutput(action=int(probs.mean(0).argmax()),
                               member_actions=None if single else y.argmax(1),
                               probs=probs[0] if single else probs, risk=r, extra=extra)
        space = cast(spaces.Box, self.action_space)
        if kind == "gaussian":
            mean, log_std = y, cast(torch.Tensor, self.ensemble.ls).numpy()
            member = np.clip(mean, space.low, space.high)
        else:
            mean, log_std = np.split(y, 2, axis=1)
            log_std = np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
            member = space.low + 0.5 * (np.tanh(mean) + 1.0) * (space.high - space.low)
        member = member.astype(np.float32)
        return AgentOutput(action=member.mean(0).astype(np.float32),
                           member_actions=None if single else member,
                           mean=mean[0] if single else mean,
                           log_std=log_std[0] if single else log_std, risk=r, extra=extra)

    def _risk_one(self, x: np.ndarray) -> np.ndarray:
        """``(n_horizons,)`` risk-critic probabilities for one observation, in numpy (the
        critic's Linear layers with ReLU between; dropout is off at inference)."""
        crit = cast(RiskCritic, self.risk_critic)  # called only with a critic attached
        if self._risk_of is not crit:  # a new critic was attached
            self._risk_of = crit
            self._risk_params = list(crit.parameters())
            self._risk_key = -1
        key = sum(t._version for t in self._risk_params)
        if self._risk_key != key:  # first call, or the critic was trained in place
            lins = [m for m in crit.net if isinstance(m, torch.nn.Linear)]
            self._risk_np = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                             for m in lins]
            self._risk_key = key
        h = x.reshape(-1)
        for i, (w, b) in enumerate(self._risk_np):
            h = h @ w + b
            if i < len(self._risk_np) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h))

    def _dropout(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """MC-dropout: S forwards of every member with hidden units dropped."""
        s, b = self.dropout_samples, x.shape[0]
        rep = x.repeat(s, *([1] * (x.dim() - 1)))  # (S*B, ...)
        dist = self.ensemble.forward(rep, dropout=self.dropout_rate, generator=self._gen)
        member = self.ensemble.actions(dist)  # (K, S*B[, A])
        probs = torch.softmax(dist["logits"], -1) if self.discrete else None
        acts = self._combine(member, probs).reshape(s, b, *member.shape[2:])
        out = {"dropout_actions": np.moveaxis(acts, 0, 1)}  # (B, S[, A])
        if probs is not None:
            p = probs.mean(0).reshape(s, b, -1).numpy()
            out["dropout_probs"] = np.moveaxis(p, 0, 1)
        return out

    def _output(self, i: int, action: np.ndarray, member: np.ndarray,
                probs: torch.Tensor | None, dist: dict, risk: np.ndarray | None,
                risk_samples: np.ndarray | None, drop: dict | None) -> AgentOutput:
        single = self.ensemble.k == 1
        extra: dict[str, Any] = {}
        r = None
        if risk is not None:
            crit = cast(RiskCritic, self.risk_critic)  # risk comes from the critic
            r = float(risk[i, crit.primary_index])
            extra["risk_by_horizon"] = {h: float(risk[i, j])
                                        for j, h in enumerate(crit.spec.horizons)}
            if risk_samples is not None:
                extra["risk_samples"] = risk_samples[:, i, crit.primary_index]
        if drop is not None:
            extra.update({k: v[i] for k, v in drop.items()})
        if self.discrete:
            p = cast(torch.Tensor, probs)[:, i].numpy()
            return AgentOutput(action=int(action[i]),
                               member_actions=None if single else member[:, i],
                               probs=p[0] if single else p, risk=r, extra=extra)
        mean = dist["mean"][:, i].numpy()
        log_std = dist["log_std"][:, i].numpy()
        return AgentOutput(action=action[i].astype(np.float32),
                           member_actions=None if single else member[:, i],
                           mean=mean[0] if single else mean,
                           log_std=log_std[0] if single else log_std, risk=r, extra=extra)


class PolicyAgent(EnsembleAgent):
    """A single SB3 policy as an agent (``member_actions`` is ``None``; ``probs``, ``mean``
    and ``log_std`` have no member axis)."""

    def __init__(self, policy, **kwargs: Any) -> None:
        super().__init__([policy], **kwargs)

    @property
    def policy(self):
        """The SB3 policy (``ActorCriticPolicy`` for PPO, ``SACPolicy`` for SAC)."""
        return self.policies[0]
