"""HG-DAgger (Kelly et al. 2019): learning from interventions by behaviour cloning.

The human takes over when the novice errs; only the states the human labelled are kept,
aggregated over all rounds, and the novice is fine-tuned on the aggregate by behaviour
cloning. ``thrifty.py`` runs the same BC update and refits the risk critic as well.

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
  memoryless policy must press to get the same effect. World v2 observes the setpoint
  (``obs[0, 1]``), so the raw labels are reproducible and the learning configs clone them
  unchanged (``relabel=False``); measured on v2 dev seeds neither form helped (hazard
  arrival 0.18 -> 0.05 relabelled, 0.01 raw, one round with the KL anchor).
* *Staying the novice where the human never drove.* BC on human steps alone says nothing
  about ordinary driving, and a few epochs drift the policy away from what it did well.
  ``bc_update(..., reference=start_policy, anchor_weight=w)`` adds ``w * KL(pi_0 || pi)``
  on the agent-driven states of the log (``Aggregate.anchor_obs``); ``anchor="action"``
  clones the agent's own executed actions there instead (HG-DAgger's aggregate keeps the
  initial demonstrations; the novice's untroubled driving stands in for them). The
  shipped PPO novice acts by an argmax of a high-entropy policy (mean top probability
  0.46 on its own states), so a small shift toward the human's majority label flips it:
  after one round (v2 dev seeds, expert labels, 78% ``idle``) plain arrival fell 1.0 ->
  0.65 with the KL anchor at 1, and with the action anchor at 1 the clone pressed ``idle``
  on every step of plain traffic and rear-ended slower leaders (12 of 20 episodes); the
  action anchor at 3 (10) with balanced labels kept 0.90 (0.95).

* *Keeping what the supervisor needs.* A randomized-prior ensemble member
  (``distill.prior_member``) is the teacher's frozen trunk, a fixed random prior and a
  trained correction; its disagreement with the other members is the prior that was not
  fitted away. :func:`finetune_params` never touches the trunk or the priors, and
  ``refit="shared"`` (the learner's default) moves every member by the same change, so
  the disagreement survives fine-tuning exactly.

Typical round::

    agg = Aggregate.from_log(run_dir)          # or agg.add_log(run_dir) to aggregate rounds
    ref = frozen_copy(agent.policy)            # once, before the first round
    losses = bc_update(agent.policy, agg, epochs=10, batch_size=64, lr=3e-4, seed=round,
                       reference=ref, anchor_weight=1.0)

or, through the learner interface (``takeover.agents.learners``)::

    learner = HGDagger(epochs=10, anchor_weight=1.0); learner.start(agent)
    learner.update(agent, read_episodes(run_dir), seed=round)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces

from takeover.agents.learners.base import Episodes, ended_in_failure, intervened, read_episodes
from takeover.envs import layout as L
from takeover.types import Step

DEAD_BAND = 2.5
"""m/s^2. ``IDMDriver.meta_action`` keeps ``idle`` while the wanted speed is within 2.5 m/s
of the target, and the discrete speed controller accelerates at 1/s times the target gap,
so an executed acceleration beyond 2.5 m/s^2 means the target is outside that band."""


def executed_label(record: Step, dead_band: float = DEAD_BAND) -> np.ndarray:
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
        anchor_actions: ``(M, A)`` float32 the action the agent executed at each
            ``anchor_obs`` (``anchor="action"`` clones it: the agent's own good driving
            stands in for HG-DAgger's initial expert data).
        relabel: apply :func:`executed_label` to discrete human labels (default ``True``).
        anchor_gap: s, see ``anchor_obs``.
    """

    obs: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    actions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    episodes: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=object))
    anchor_obs: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    anchor_actions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    relabel: bool = True
    anchor_gap: float = 3.0

    def __len__(self) -> int:
        return len(self.episodes)

    def add_records(self, records: Iterable[Step], labels: bool = True) -> int:
        """Append the human-labelled records (and the agent-driven observations to
        ``anchor_obs``); returns how many labelled records were added. ``labels=False``
        adds only the anchor observations (a teacher episode not worth cloning)."""
        records = list(records)
        untroubled = self._untroubled(records)
        if untroubled:
            new = np.stack([np.asarray(r.obs, np.float32) for r in untroubled])
            new_act = np.stack([np.asarray(r.action, np.float32).reshape(-1)
                                for r in untroubled])
            if len(self.anchor_obs) and new.shape[1:] != self.anchor_obs.shape[1:]:
                raise ValueError(f"records have obs {new.shape[1:]} but the aggregate holds "
                                 f"{self.anchor_obs.shape[1:]}: logs from different envs "
                                 "cannot be mixed")
            if len(self.anchor_obs):
                new = np.concatenate([self.anchor_obs, new])
                new_act = np.concatenate([self.anchor_actions, new_act])
            self.anchor_obs, self.anchor_actions = new, new_act
        picked = [r for r in records if intervened(r)] if labels else []
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

    def _untroubled(self, records: list[Step]) -> list[Step]:
        """Agent-driven records with no takeover or failure within ``anchor_gap`` s."""
        by_episode: dict[str, list[Step]] = {}
        for r in records:
            by_episode.setdefault(r.episode, []).append(r)
        out = []
        for recs in by_episode.values():
            trouble = [r.time for r in recs if r.controller != "agent"]
            if ended_in_failure(recs[-1]):
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
        return sum(self.add_records(recs) for recs in read_episodes(run_dir))

    @classmethod
    def from_log(cls, *run_dirs: str | os.PathLike, relabel: bool = True) -> Aggregate:
        agg = cls(relabel=relabel)
        for d in run_dirs:
            agg.add_log(d)
        return agg

    @classmethod
    def from_records(cls, records: Iterable[Step], relabel: bool = True) -> Aggregate:
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


ANCHORS = ("kl", "action")
"""How ``bc_update`` keeps the policy itself on the states the agent drove well."""


def bc_update(policy, aggregate: Aggregate, epochs: int = 10, batch_size: int = 64,
              lr: float = 3e-4, seed: int = 0, *, ent_weight: float = 0.0,
              max_grad_norm: float = 0.5, indices: np.ndarray | None = None,
              reference=None, anchor_weight: float = 0.0, anchor: str = "kl",
              balance: bool = False,
              params: Sequence[tuple[torch.Tensor, torch.Tensor | None]] | None = None
              ) -> list[float]:
    """Fine-tune an SB3 actor-critic ``policy`` in place by behaviour cloning.

    Minimises ``-log pi(a_human | obs) - ent_weight * entropy`` with Adam over shuffled
    minibatches for ``epochs`` passes; only the actor's parameters receive gradients from
    this loss (the value head is untouched). With a ``reference`` policy and
    ``anchor_weight > 0``, every minibatch also adds ``anchor_weight * KL(ref || pi)`` on as
    many observations drawn from ``aggregate.anchor_obs`` (the states the agent drove), so
    the policy changes where the human corrected it and stays itself elsewhere.
    ``anchor="action"`` instead clones the action the agent executed there
    (``aggregate.anchor_actions``, no reference needed): a deterministic agent acts by its
    argmax, which a KL on a high-entropy policy does not hold (measured, v2 novice: 10
    epochs with the KL anchor kept the argmax on 0.43-0.60 of its own untroubled states,
    and it collided in 0.35 of plain-traffic episodes afterwards).
    ``balance`` weights each discrete label by ``1 / sqrt(its class frequency)``
    (normalised to mean 1): most human labels are ``idle`` (a press of ``slower`` moves
    the setpoint 5 m/s, then the human holds it), and unweighted BC learns that prior.
    Deterministic for a given ``seed``.

    Args:
        policy: an SB3 ``ActorCriticPolicy`` (``model.policy`` of PPO / A2C).
        aggregate: the human-labelled samples.
        indices: train on these rows only (e.g. a bootstrap resample for an ensemble member).
        reference: a frozen policy with the same action space (e.g. a ``copy.deepcopy`` of
            ``policy`` before the first round); ignored when ``anchor_weight`` is 0.
        anchor_weight: weight of the anchor term (0 = plain BC).
        anchor: ``"kl"`` (to ``reference``) or ``"action"`` (the agent's own actions).
        balance: class-balanced weights of discrete labels (see above).
        params: ``(parameter, mask)`` pairs to train, the rest frozen; a mask (same shape,
            0/1) keeps the masked-out entries exactly as they were. Default
            :func:`finetune_params` (the correction of a randomized-prior member).

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
    if anchor not in ANCHORS:
        raise ValueError(f"anchor={anchor!r}: use one of {', '.join(ANCHORS)}")
    by_action = anchor == "action"
    anchored = anchor_weight > 0 and (by_action or reference is not None) and len(
        aggregate.anchor_obs) > 0
    if anchor_weight > 0 and reference is None and not by_action:
        raise ValueError("anchor_weight > 0 needs a reference policy (e.g. "
                         "copy.deepcopy(policy) before the first round), or anchor='action'")
    rows = np.arange(len(aggregate)) if indices is None else np.asarray(indices)
    device = policy.device
    obs = torch.as_tensor(aggregate.obs[rows], dtype=torch.float32, device=device)
    act = _action_tensor(aggregate.actions[rows], policy.action_space).to(device)
    anchor_obs = (torch.as_tensor(aggregate.anchor_obs, dtype=torch.float32, device=device)
                  if anchored else None)
    anchor_act = (_action_tensor(aggregate.anchor_actions, policy.action_space).to(device)
                  if anchored and by_action else None)
    weight = None
    if balance and isinstance(policy.action_space, spaces.Discrete):
        count = torch.bincount(act, minlength=int(policy.action_space.n)).float()
        weight = (count.sum() / count.clamp(min=1.0)).sqrt()[act]
        weight = weight / weight.mean()
    gen = torch.Generator().manual_seed(seed)
    params = finetune_params(policy) if params is None else list(params)
    opt = torch.optim.Adam([p for p, _ in params], lr=lr)
    policy.set_training_mode(True)
    history = []
    try:
        for _ in range(epochs):
            perm = torch.randperm(len(obs), generator=gen)
            total = 0.0
            for i in range(0, len(obs), batch_size):
                b = perm[i:i + batch_size]
                _, log_prob, entropy = policy.evaluate_actions(obs[b], act[b])
                loss = -(log_prob.mean() if weight is None else (weight[b] * log_prob).mean())
                if ent_weight and entropy is not None:
                    loss = loss - ent_weight * entropy.mean()
                if anchor_obs is not None:
                    a = torch.randint(len(anchor_obs), (len(b),), generator=gen)
                    if anchor_act is not None:
                        _, own, _ = policy.evaluate_actions(anchor_obs[a], anchor_act[a])
                        loss = loss - anchor_weight * own.mean()
                    else:
                        loss = loss + anchor_weight * kl_to_reference(policy, reference,
                                                                      anchor_obs[a])
                opt.zero_grad()
                loss.backward()
                for p, m in params:
                    if m is not None and p.grad is not None:
                        p.grad.mul_(m)  # Adam moves an entry only if it ever had a gradient
                torch.nn.utils.clip_grad_norm_([p for p, _ in params], max_grad_norm)
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


def prior_layout(policy) -> tuple[int, int] | None:
    """``(hidden, width)`` if ``policy`` is a randomized-prior member as packed by
    ``distill.prior_member`` (last actor layer = ``hidden`` feature pass-through units,
    ``width`` prior units, ``width`` correction units), else ``None``."""
    from takeover.agents.ensemble import actor_parts

    try:
        parts = actor_parts(policy)
    except (TypeError, ValueError):
        return None
    if parts.kind != "categorical" or len(parts.trunk) < 2:
        return None
    hidden, last = parts.trunk[-2].out_features, parts.trunk[-1]
    width2 = last.out_features - hidden
    if width2 <= 0 or width2 % 2 or last.in_features != hidden:
        return None
    w = last.weight.detach()[:hidden]
    diag = torch.diagonal(w)
    if not (torch.all(diag > 0) and torch.allclose(w, torch.diag(diag))):
        return None
    return hidden, width2 // 2


LABELS = ("all", "delivered")
"""Which human-labelled steps HG-DAgger clones (``HGDagger(labels=...)``)."""


def delivered(episode: Sequence[Step]) -> bool:
    """The episode reached its route's end (outcome ``arrived``): the human's driving in it
    is worth cloning. Arrival is the only success (``takeover.envs.SUCCESS_OUTCOMES``); a
    teacher episode that ends in a collision, a standstill or a timeout would teach the
    learner to crash or to stop."""
    return bool(episode) and getattr(episode[-1], "outcome", "") == "arrived"


REFIT = ("shared", "correction", "all")
"""What fine-tuning may change in a randomized-prior ensemble (:func:`finetune_params`)."""


def finetune_params(policy, refit: str = "correction"
                    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """What behaviour cloning may change in ``policy``, as ``(parameter, mask)`` pairs.

    A randomized-prior member keeps its frozen trunk and its random prior; with
    ``refit="correction"`` its correction units (input rows, output columns) and output
    bias are refit, with ``refit="shared"`` only the output weights on the teacher's
    pass-through features (the part every member holds alike: see :func:`clone_members`), with ``"all"`` every parameter. Any other policy: every
    parameter, unmasked."""
    if refit not in REFIT:
        raise ValueError(f"refit={refit!r}: use one of {', '.join(REFIT)}")
    layout = prior_layout(policy)
    if layout is None or refit == "all":
        return [(p, None) for p in policy.parameters()]
    from takeover.agents.ensemble import actor_parts

    hidden, width = layout
    parts = actor_parts(policy)
    last, head = parts.trunk[-1], parts.heads[0]
    cols = torch.zeros_like(head.weight)
    if refit == "shared":
        cols[:, :hidden] = 1.0
        return [(head.weight, cols)]
    rows = torch.zeros_like(last.weight)
    rows[hidden + width:] = 1.0
    cols[:, hidden + width:] = 1.0
    bias = torch.zeros_like(last.bias)
    bias[hidden + width:] = 1.0
    return [(last.weight, rows), (last.bias, bias), (head.weight, cols), (head.bias, None)]


class HGDagger:
    """HG-DAgger through the learner interface: BC of every member of the agent on the
    aggregate of all human-labelled steps, with the executed-label relabelling and the KL
    anchor to the starting policy on the steps the agent drove without trouble.

    Args:
        epochs, batch_size, lr: the BC optimiser (``bc_update``).
        anchor_weight: weight of ``KL(start || policy)`` (0 = plain BC).
        relabel: clone discrete labels as executed (:func:`executed_label`).
        bootstrap: each member trains on its own bootstrap resample of the aggregate
            (ThriftyDAgger's rule; keeps members distinct).
        refit: what a randomized-prior ensemble may change (:func:`clone_members`):
            ``"shared"`` (default: the disagreement is kept exactly), ``"correction"``
            (priors and trunk kept, each member refits its correction) or ``"all"``; a
            single policy always refits every parameter. Measured on the shipped
            novice-ensemble, stalled car, average human, held-out seeds 1_000_000..19, two
            rounds: agent-alone safety 0.40 -> 0.55 / 0.55 / 0.75 and disagreement AUROC
            0.83 -> 0.87 / 0.79 / 0.75 (shared / correction / all).
        anchor, balance: see :func:`bc_update` (``"action"``: clone the agent's own
            executed actions on its untroubled steps; class-balanced human labels).
        labels: which human steps are cloned: ``"all"`` (the paper's) or ``"delivered"``
            (only those of episodes that arrived, :func:`delivered`: a scripted teacher who
            collides or stops behind the obstacle teaches exactly that).
    """

    name = "hg-dagger"
    agent_kind = "actor-critic"

    def __init__(self, *, epochs: int = 10, batch_size: int = 64, lr: float = 3e-4,
                 anchor_weight: float = 1.0, relabel: bool = True,
                 bootstrap: bool = False, refit: str = "shared",
                 labels: str = "all", anchor: str = "kl", balance: bool = False) -> None:
        if refit not in REFIT:
            raise ValueError(f"refit={refit!r}: use one of {', '.join(REFIT)}")
        if labels not in LABELS:
            raise ValueError(f"labels={labels!r}: use one of {', '.join(LABELS)}")
        if anchor not in ANCHORS:
            raise ValueError(f"anchor={anchor!r}: use one of {', '.join(ANCHORS)}")
        self.labels, self.anchor, self.balance = labels, anchor, balance
        self.epochs, self.batch_size, self.lr, self.refit = epochs, batch_size, lr, refit
        self.anchor_weight, self.relabel, self.bootstrap = anchor_weight, relabel, bootstrap
        self.references: list | None = None
        self.history: list[float] = []
        """the first member's BC loss per epoch in the last update"""

    def start(self, agent: Any) -> None:
        policies = _policies(agent)
        self.references = ([frozen_copy(p) for p in policies]
                           if self.anchor_weight > 0 and self.anchor == "kl" else None)

    def update(self, agent: Any, episodes: Episodes, *, seed: int) -> dict[str, float]:
        data = Aggregate(relabel=self.relabel)
        for e in episodes:
            data.add_records(e, labels=self.labels == "all" or delivered(e))
        if len(data) == 0:
            return {"samples": 0.0}
        hists = self._clone(_policies(agent), data, seed)
        self.history = [float(x) for x in hists[0]]
        return {"samples": float(len(data)), "bc_loss_first": hists[0][0],
                "bc_loss_last": hists[0][-1]}

    def _clone(self, policies: list, data: Aggregate, seed: int) -> list[list[float]]:
        if self.references is None and self.anchor_weight > 0 and self.anchor == "kl":
            raise RuntimeError("call start(agent) before update(): the KL anchor needs the "
                               "starting policies")
        return clone_members(policies, data, epochs=self.epochs, batch_size=self.batch_size,
                             lr=self.lr, seed=seed, bootstrap=self.bootstrap,
                             references=self.references, anchor_weight=self.anchor_weight,
                             refit=self.refit, anchor=self.anchor, balance=self.balance)


def clone_members(policies: Sequence, data: Aggregate, *, epochs: int, batch_size: int,
                  lr: float, seed: int, bootstrap: bool = False,
                  references: Sequence | None = None, anchor_weight: float = 0.0,
                  refit: str = "correction", anchor: str = "kl",
                  balance: bool = False) -> list[list[float]]:
    """``bc_update`` of every member (seed ``seed + k``), each on its own bootstrap resample
    of ``data`` when ``bootstrap``, anchored to its own reference; one loss history each.

    ``refit="shared"`` on a randomized-prior ensemble trains member 0 only (its output
    weights on the pass-through features) and adds the same change to every other
    member: all members' logits move by the same function of the shared features, so the
    behaviour changes while the differences between members (the disagreement the gate
    reads) stay exactly as they were. The features reach those weights scaled by the
    pass-through's ``eps`` (``tanh(eps h)``, weights ``head / eps``), so the step size is
    ``lr / eps`` there: the same change of logits per step as ``lr`` on a plain head.
    Other ``refit`` values: :func:`finetune_params`."""
    shared = refit == "shared" and len(policies) > 1 and all(
        prior_layout(p) is not None for p in policies)
    if shared:
        from takeover.agents.ensemble import actor_parts

        hidden = cast("tuple[int, int]", prior_layout(policies[0]))[0]  # shared: not None
        last = actor_parts(policies[0]).trunk[-1].weight.detach()
        eps = float(torch.diagonal(last[:hidden]).mean())
        lr = lr / eps
    rng = np.random.default_rng(seed)
    hists = []
    for k, p in enumerate(policies[:1] if shared else policies):
        idx = rng.integers(0, len(data), len(data)) if bootstrap else None
        ref = None if references is None else references[k]
        params = finetune_params(p, refit)
        before = [q.detach().clone() for q, _ in params]
        anchored = ref is not None or anchor == "action"
        hists.append(bc_update(p, data, epochs, batch_size, lr, seed + k, indices=idx,
                               reference=ref, params=params, anchor=anchor, balance=balance,
                               anchor_weight=anchor_weight if anchored else 0.0))
        p.set_training_mode(False)
        if shared:
            with torch.no_grad():
                for other in policies[1:]:
                    for (q, _), (q_other, _), old in zip(params, finetune_params(other, refit),
                                                         before, strict=True):
                        q_other.add_(q.detach() - old)
    return hists


def _policies(agent: Any) -> list:
    policies = list(getattr(agent, "policies", []))
    if not policies or not all(hasattr(p, "evaluate_actions") for p in policies):
        raise TypeError(f"{type(agent).__name__} exposes no SB3 actor-critic policies "
                        "(agent.policies): BC learners need a PPO/A2C agent such as "
                        "'novice'; for a DQN agent use the pvp or rlif learner")
    return policies
