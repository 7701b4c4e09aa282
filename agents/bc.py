"""Learning from interventions by behaviour cloning: HG-DAgger and ThriftyDAgger-style.

HG-DAgger (Kelly et al. 2019): the human takes over when the novice errs; only the states
the human labelled are kept, aggregated over all rounds, and the novice is fine-tuned on
the aggregate by behaviour cloning. ThriftyDAgger (Hoque et al. 2021) collects data with a
robot-side gate (novelty + risk) and runs the same BC update, then refits its risk critic
on every step it has seen.

The BC loss is the negative log-likelihood of the human action under the policy,
``-policy.evaluate_actions(obs, action).log_prob`` (what ``imitation``'s BC minimises), so
any SB3 ``ActorCriticPolicy`` (PPO, A2C) works for Discrete and Box actions alike.

Two details decide whether cloning a few hundred intervention steps helps or hurts:

* *Labels that mean the same thing to the learner as to the human.* A discrete meta-action
  moves a hidden target speed; ``idle`` keeps it. A human who pressed ``slower`` twice and
  then ``idle`` is still braking hard, but the observation does not show the target, so a
  memoryless policy cloning that ``idle`` learns "do nothing near an obstacle" (most human
  labels are such ``idle`` s). :func:`executed_label` turns an ``idle`` whose executed
  acceleration is outside the meta-action dead band into the ``slower`` / ``faster`` a
  memoryless policy must press to get the same effect.
* *Staying the novice where the human never drove.* BC on human steps alone says nothing
  about ordinary driving, and a few epochs drift the policy away from what it did well.
  ``bc_update(..., reference=start_policy, anchor_weight=w)`` adds ``w * KL(pi_0 || pi)``
  on the agent-driven states of the log (``Aggregate.anchor_obs``).

Typical round::

    agg = Aggregate.from_log(run_dir)          # or agg.add_log(run_dir) to aggregate rounds
    ref = copy.deepcopy(agent.policy)          # once, before the first round
    losses = bc_update(agent.policy, agg, epochs=10, batch_size=64, lr=3e-4, seed=round,
                       reference=ref, anchor_weight=1.0)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium import spaces

from takeover.envs import layout as L
from takeover.logio import read_log
from takeover.records import StepRecord

DEAD_BAND = 2.5
"""m/s^2. ``IDMDriver.meta_action`` keeps ``idle`` while the wanted speed is within 2.5 m/s
of the target, and the discrete speed controller accelerates at 1/s times the target gap,
so an executed acceleration beyond 2.5 m/s^2 means the target is outside that band."""


def executed_label(record: StepRecord, dead_band: float = DEAD_BAND) -> np.ndarray:
    """The human's action as a label a memoryless policy can reproduce.

    Continuous actions, non-``idle`` meta-actions and records without ``info["accel"]``
    are returned unchanged. An ``idle`` whose executed acceleration (the step's
    ``info["accel"]``) is below ``-dead_band`` becomes ``slower``, above ``dead_band``
    ``faster``: the human is still braking (accelerating) toward a target set earlier,
    which the observation does not show.
    """
    act = np.asarray(record.human_action, np.float32).reshape(-1)
    accel = record.info.get("accel") if record.info else None
    if act.shape != (1,) or int(act[0]) != L.IDLE or accel is None:
        return act
    if accel < -dead_band:
        return np.array([L.SLOWER], np.float32)
    if accel > dead_band:
        return np.array([L.FASTER], np.float32)
    return act


@dataclass
class Aggregate:
    """The HG-DAgger dataset: every human-labelled state seen so far.

    A record contributes when the human drove it (``controller == "human"``) and gave an
    input (``human_action is not None``): a missing input is never turned into a no-op label.
    Agent-driven records contribute their observation to ``anchor_obs``.

    Attributes:
        obs: ``(N, *obs_shape)`` float32 observations.
        actions: ``(N, A)`` float32 human actions (a Discrete index ``i`` is ``[i]``),
            passed through :func:`executed_label` when ``relabel``.
        episodes: ``(N,)`` episode id of each sample (for grouped splits and provenance).
        anchor_obs: ``(M, *obs_shape)`` float32 observations the agent drove without
            trouble: neither the human took over nor the episode failed within
            ``anchor_gap`` s after them (the states where ``bc_update`` keeps the policy
            close to its reference; the steps that led to an intervention are exactly
            where it must change).
        relabel: apply :func:`executed_label` to discrete human labels (default ``True``).
        anchor_gap: s, see ``anchor_obs``.
    """

    obs: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    actions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    episodes: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=object))
    anchor_obs: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    relabel: bool = True
    anchor_gap: float = 3.0

    def __len__(self) -> int:
        return len(self.episodes)

    def add_records(self, records: Iterable[StepRecord]) -> int:
        """Append the human-labelled records (and the agent-driven observations to
        ``anchor_obs``); returns how many labelled records were added."""
        records = list(records)
        driven = [np.asarray(r.obs, np.float32) for r in self._untroubled(records)]
        if driven:
            new = np.stack(driven)
            if len(self.anchor_obs) and new.shape[1:] != self.anchor_obs.shape[1:]:
                raise ValueError(f"records have obs {new.shape[1:]} but the aggregate holds "
                                 f"{self.anchor_obs.shape[1:]}: logs from different envs "
                                 "cannot be mixed")
            self.anchor_obs = np.concatenate([self.anchor_obs, new]) if len(
                self.anchor_obs) else new
        picked = [r for r in records if r.controller == "human" and r.human_action is not None]
        if not picked:
            return 0
        obs = np.stack([np.asarray(r.obs, np.float32) for r in picked])
        label = executed_label if self.relabel else (
            lambda r: np.asarray(r.human_action, np.float32).reshape(-1))
        act = np.stack([label(r) for r in picked])
        eps = np.array([r.episode for r in picked], dtype=object)
        if len(self):
            if obs.shape[1:] != self.obs.shape[1:] or act.shape[1:] != self.actions.shape[1:]:
                raise ValueError(
                    f"records have obs {obs.shape[1:]} / actions {act.shape[1:]} but the "
                    f"aggregate holds {self.obs.shape[1:]} / {self.actions.shape[1:]}: "
                    "logs from different envs or action types cannot be mixed"
                )
            obs, act = np.concatenate([self.obs, obs]), np.concatenate([self.actions, act])
            eps = np.concatenate([self.episodes, eps])
        self.obs, self.actions, self.episodes = obs, act, eps
        return len(picked)

    def _untroubled(self, records: list[StepRecord]) -> list[StepRecord]:
        """Agent-driven records with no takeover or failure within ``anchor_gap`` s."""
        by_episode: dict[str, list[StepRecord]] = {}
        for r in records:
            by_episode.setdefault(r.episode, []).append(r)
        out = []
        for recs in by_episode.values():
            trouble = [r.time for r in recs if r.controller != "agent"]
            if recs[-1].terminated:
                trouble.append(recs[-1].time)
            marks = np.sort(np.asarray(trouble, float))
            for r in recs:
                if r.controller != "agent":
                    continue
                k = np.searchsorted(marks, r.time)  # first trouble at or after this step
                if k == len(marks) or marks[k] - r.time > self.anchor_gap:
                    out.append(r)
        return out

    def add_log(self, run_dir: str | os.PathLike) -> int:
        """Add the complete episodes of a log (incomplete or damaged ones are skipped)."""
        res = read_log(run_dir)
        return sum(self.add_records(recs) for recs in res.episodes.values())

    @classmethod
    def from_log(cls, *run_dirs: str | os.PathLike, relabel: bool = True) -> Aggregate:
        agg = cls(relabel=relabel)
        for d in run_dirs:
            agg.add_log(d)
        return agg

    @classmethod
    def from_records(cls, records: Iterable[StepRecord], relabel: bool = True) -> Aggregate:
        agg = cls(relabel=relabel)
        agg.add_records(records)
        return agg


def _action_tensor(actions: np.ndarray, space: spaces.Space) -> torch.Tensor:
    """Log actions in the form ``evaluate_actions`` wants (Discrete: ``(N,)`` long)."""
    if isinstance(space, spaces.Discrete):
        idx = np.rint(actions[:, 0]).astype(np.int64)
        if (actions.shape[1] != 1 or idx.min() < 0 or idx.max() >= space.n
                or not np.allclose(actions[:, 0], idx)):
            raise ValueError(
                f"human actions must be meta-action indices 0..{space.n - 1} for this policy; "
                "was the log recorded with a continuous action type?"
            )
        return torch.as_tensor(idx)
    if actions.shape[1:] != space.shape:
        raise ValueError(f"human actions have shape {actions.shape[1:]}, the policy's action "
                         f"space {space.shape}: the log comes from another action type")
    return torch.as_tensor(actions, dtype=torch.float32)


def bc_update(policy, aggregate: Aggregate, epochs: int = 10, batch_size: int = 64,
              lr: float = 3e-4, seed: int = 0, *, ent_weight: float = 0.0,
              max_grad_norm: float = 0.5, indices: np.ndarray | None = None,
              reference=None, anchor_weight: float = 0.0) -> list[float]:
    """Fine-tune an SB3 actor-critic ``policy`` in place by behaviour cloning.

    Minimises ``-log pi(a_human | obs) - ent_weight * entropy`` with Adam over shuffled
    minibatches for ``epochs`` passes; only the actor's parameters receive gradients from
    this loss (the value head is untouched). With a ``reference`` policy and
    ``anchor_weight > 0``, every minibatch also adds ``anchor_weight * KL(ref || pi)`` on as
    many observations drawn from ``aggregate.anchor_obs`` (the states the agent drove), so
    the policy changes where the human corrected it and stays itself elsewhere.
    Deterministic for a given ``seed``.

    Args:
        policy: an SB3 ``ActorCriticPolicy`` (``model.policy`` of PPO / A2C).
        aggregate: the human-labelled samples.
        indices: train on these rows only (e.g. a bootstrap resample for an ensemble member).
        reference: a frozen policy with the same action space (e.g. a ``copy.deepcopy`` of
            ``policy`` before the first round); ignored when ``anchor_weight`` is 0.
        anchor_weight: weight of the KL term (0 = plain BC).

    Returns:
        the mean loss of every epoch.
    """
    if not hasattr(policy, "evaluate_actions"):
        raise TypeError(
            f"{type(policy).__name__} has no evaluate_actions(): BC needs an SB3 actor-critic "
            "policy (PPO/A2C model.policy); for DQN/SAC/TD3 use takeover.agents.pvp"
        )
    if len(aggregate) == 0:
        raise ValueError("the aggregate holds no human-labelled steps: nothing to clone "
                         "(did the human ever take control and give an input?)")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0 (got {epochs}, "
                         f"{batch_size}, {lr})")
    if anchor_weight < 0:
        raise ValueError(f"anchor_weight must be >= 0 (got {anchor_weight})")
    anchored = anchor_weight > 0 and reference is not None and len(aggregate.anchor_obs) > 0
    if anchor_weight > 0 and reference is None:
        raise ValueError("anchor_weight > 0 needs a reference policy (e.g. "
                         "copy.deepcopy(policy) before the first round)")
    rows = np.arange(len(aggregate)) if indices is None else np.asarray(indices)
    device = policy.device
    obs = torch.as_tensor(aggregate.obs[rows], dtype=torch.float32, device=device)
    act = _action_tensor(aggregate.actions[rows], policy.action_space).to(device)
    anchor = (torch.as_tensor(aggregate.anchor_obs, dtype=torch.float32, device=device)
              if anchored else None)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    policy.set_training_mode(True)
    history = []
    try:
        for _ in range(epochs):
            perm = torch.randperm(len(obs), generator=gen)
            total = 0.0
            for i in range(0, len(obs), batch_size):
                b = perm[i:i + batch_size]
                _, log_prob, entropy = policy.evaluate_actions(obs[b], act[b])
                loss = -log_prob.mean()
                if ent_weight and entropy is not None:
                    loss = loss - ent_weight * entropy.mean()
                if anchor is not None:
                    a = torch.randint(len(anchor), (len(b),), generator=gen)
                    loss = loss + anchor_weight * kl_to_reference(policy, reference, anchor[a])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
                opt.step()
                total += float(loss.detach()) * len(b)
            history.append(total / len(obs))
    finally:
        policy.set_training_mode(False)
    return history


def kl_to_reference(policy, reference, obs: torch.Tensor) -> torch.Tensor:
    """Mean ``KL(reference(.|obs) || policy(.|obs))`` (summed over action dimensions), with
    gradients for ``policy`` only."""
    with torch.no_grad():
        ref = reference.get_distribution(obs).distribution
    kl = torch.distributions.kl_divergence(ref, policy.get_distribution(obs).distribution)
    return (kl.sum(-1) if kl.dim() > 1 else kl).mean()


def frozen_copy(policy):
    """A copy of ``policy`` that never trains: the reference of ``bc_update``'s anchor."""
    ref = copy.deepcopy(policy)
    ref.set_training_mode(False)
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


@torch.no_grad()
def log_likelihood(policy, aggregate: Aggregate) -> float:
    """Mean log-likelihood of the aggregate's human actions under ``policy`` (higher is
    better): the quantity BC maximises, for before/after comparisons."""
    obs = torch.as_tensor(aggregate.obs, dtype=torch.float32, device=policy.device)
    act = _action_tensor(aggregate.actions, policy.action_space).to(policy.device)
    _, log_prob, _ = policy.evaluate_actions(obs, act)
    return float(log_prob.mean())


# ---------------------------------------------------------------- ThriftyDAgger-style


def risk_data(episodes: Sequence[Sequence[StepRecord]], horizons: Sequence[float],
              control_hz: float):
    """``takeover.agents.risk.RiskData`` from logged episodes: every step is labelled by
    whether its episode ended in a failure (``terminated``) within each horizon."""
    from takeover.agents.risk import RiskData, failure_labels

    steps = np.round(np.asarray(horizons) * control_hz).astype(int)
    eps = [e for e in episodes if e]
    if not eps:
        raise ValueError("no episodes to label for the risk critic")
    return RiskData(
        obs=np.stack([np.asarray(r.obs, np.float32) for e in eps for r in e]),
        labels=np.concatenate([failure_labels(len(e), bool(e[-1].terminated), steps)
                               for e in eps]),
        episode=np.concatenate([np.full(len(e), i) for i, e in enumerate(eps)]),
        outcomes=[e[-1].reason for e in eps],
    )


@dataclass
class ThriftyResult:
    """Loss histories of one ThriftyDAgger-style update."""

    bc: list[list[float]]
    """one BC loss history per ensemble member"""
    risk: list[float]
    """the risk critic's loss history (empty when no critic was given)"""


def thrifty_update(policies: Sequence, aggregate: Aggregate,
                   episodes: Sequence[Sequence[StepRecord]] = (), critic=None, *,
                   epochs: int = 10, batch_size: int = 64, lr: float = 3e-4, seed: int = 0,
                   bootstrap: bool = True, risk_epochs: int = 20,
                   references: Sequence | None = None,
                   anchor_weight: float = 0.0) -> ThriftyResult:
    """The ThriftyDAgger update: BC on the aggregate for every ensemble member (each on its
    own bootstrap resample when ``bootstrap``, so the members stay diverse and their
    disagreement stays a novelty signal), then refit the risk critic on all logged steps.

    Args:
        policies: the ensemble's SB3 policies (``agent.policies``), updated in place.
        episodes: every logged episode so far (complete ones), for the risk critic.
        critic: a ``takeover.agents.risk.RiskCritic`` or ``None`` to skip the refit.
        references: one frozen reference per member for ``bc_update``'s anchor.
    """
    rng = np.random.default_rng(seed)
    bc = []
    for i, p in enumerate(policies):
        idx = rng.integers(0, len(aggregate), len(aggregate)) if bootstrap else None
        ref = None if references is None else references[i]
        bc.append(bc_update(p, aggregate, epochs, batch_size, lr, seed + i, indices=idx,
                            reference=ref, anchor_weight=anchor_weight if ref else 0.0))
    risk: list[float] = []
    if critic is not None:
        from takeover.agents.risk import fit_risk

        spec = critic.spec
        data = risk_data(episodes, spec.horizons, spec.control_hz)
        risk = fit_risk(critic, data, epochs=risk_epochs, seed=seed)
    return ThriftyResult(bc=bc, risk=risk)
