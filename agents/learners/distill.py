"""A bootstrapped ensemble around one trained policy, for epistemic uncertainty.

PPO runs with different seeds learn different driving styles, so they disagree everywhere
(idle vs faster is a matter of taste in open traffic) and their disagreement says little
about danger. ThriftyDAgger's ensemble instead fits every member to the *same* behaviour on
bootstrap resamples of the states it was trained on: members agree where the data is dense
and extrapolate differently where it is not. Here each student copies the teacher's action
distribution (KL to its probabilities, or its Gaussian mean) on a bootstrap resample of the
states the teacher visits in its training env, from its own random initialisation.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from takeover.agents.checkpoint import architecture, build_policy


def _targets(policy, obs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        dist = policy.get_distribution(obs).distribution
        if isinstance(policy.action_space, spaces.Discrete):
            return dist.probs
        return dist.mean


def distill(teacher, obs: np.ndarray, *, seed: int, bootstrap: bool = True, epochs: int = 20,
            batch_size: int = 256, lr: float = 1e-3, activation: str | None = None,
            fraction: float = 1.0):
    """One student SB3 policy (the teacher's architecture, optionally with another
    ``activation`` such as ``"ReLU"``) fitted to ``teacher`` on ``obs`` ``(N, *obs_shape)``,
    resampled with replacement when ``bootstrap`` (``fraction`` of ``N`` draws: smaller
    resamples leave rare states to fewer members, so members disagree more there); seeded."""
    discrete = isinstance(teacher.action_space, spaces.Discrete)
    arch = architecture(teacher)
    if activation is not None:
        arch["policy_kwargs"]["activation_fn"] = activation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = build_policy(arch, teacher.observation_space, teacher.action_space)
        rng = np.random.default_rng(seed)
        n = max(1, int(round(fraction * len(obs))))
        idx = rng.integers(0, len(obs), n) if bootstrap else np.arange(len(obs))
        x = torch.as_tensor(np.asarray(obs, np.float32)[idx])
        y = _targets(teacher, x)
        opt = torch.optim.Adam(student.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        student.set_training_mode(True)
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                b = perm[i:i + batch_size]
                dist = student.get_distribution(x[b]).distribution
                if discrete:  # KL(teacher || student)
                    loss = (y[b] * (torch.log(y[b] + 1e-8) - dist.logits)).sum(-1).mean()
                else:
                    loss = ((dist.mean - y[b]) ** 2).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        student.set_training_mode(False)
    return student


def bootstrap_ensemble(teacher, obs: np.ndarray, k: int, *, seed: int = 0,
                       include_teacher: bool = True, **kwargs) -> list:
    """``k`` policies: the teacher itself (member 0, if ``include_teacher``) and students
    distilled on independent bootstrap resamples of ``obs`` (seeds ``seed + 1, ...``)."""
    members = [teacher] if include_teacher else []
    while len(members) < k:
        members.append(distill(teacher, obs, seed=seed + len(members) + 1, **kwargs))
    return members


# --- randomized prior functions on the teacher's features ---------------------------------
def _linears(policy) -> tuple[list[torch.nn.Linear], torch.nn.Linear]:
    from takeover.agents.ensemble import actor_parts

    parts = actor_parts(policy)
    if parts.kind != "categorical":
        raise ValueError("prior_ensemble supports discrete-action (categorical) teachers only")
    return list(parts.trunk), parts.heads[0]


def prior_member(teacher, obs: np.ndarray, *, seed: int, beta: float = 0.3, width: int = 64,
                 epochs: int = 15, batch_size: int = 256, lr: float = 1e-3, eps: float = 0.01,
                 soft: float = 0.05):
    """One randomized-prior member (Osband et al. 2018) built on the teacher's own features.

    The member shares the teacher's frozen trunk ``h(x)``; on top of it, with ``z`` the
    trunk features standardised on ``obs`` (the teacher's training states), its logits are
    ``teacher_head(h) + beta * prior(z) - correction(z)``: ``prior`` is a fixed random tanh
    layer, ``correction`` a trainable one fitted (on a bootstrap resample of ``obs``) so the
    member copies the teacher's action distribution. In-distribution the prior is fitted
    away; where the teacher's features leave their training range (a stopped car close
    ahead, a closing speed it never saw) the priors are not, and the members disagree.
    Working in the teacher's feature space (not raw observations) makes the disagreement
    care about what the policy attends to: a car 90 m away is novel but harmless.

    Returned as a plain SB3 policy (``net_arch pi = [*trunk, hidden + 2 * width]``) so
    checkpoints, the batched forward and fine-tuning treat it like any other member: the
    third layer holds the teacher's features passed through ``tanh(eps * h) / eps`` (exact
    within the member, since it is trained in this very form), the prior units and the
    correction units. The prior's units are ``tanh(soft * w z) / soft``: ``soft < 1`` keeps
    them from saturating, so the members' disagreement keeps growing with the distance ``z``
    from the training states instead of levelling off a few standard deviations out."""
    from torch import nn

    trunk, head = _linears(teacher)
    arch = architecture(teacher)
    if arch["policy_kwargs"]["activation_fn"] != "Tanh":
        raise ValueError("prior_ensemble needs a Tanh teacher (its features pass a tanh layer)")
    hidden = trunk[-1].out_features
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = torch.as_tensor(np.asarray(obs, np.float32)).reshape(len(obs), -1)
        with torch.no_grad():
            h = x
            for lin in trunk:
                h = torch.tanh(lin(h))
            mu, sd = h.mean(0), h.std(0).clamp_min(0.02)
            y = torch.softmax(head(h), -1)
        prior_w, prior_h = nn.Linear(hidden, width), nn.Linear(width, head.out_features)
        nn.init.orthogonal_(prior_w.weight)
        nn.init.orthogonal_(prior_h.weight)
        nn.init.zeros_(prior_w.bias)
        nn.init.zeros_(prior_h.bias)
        corr_w, corr_h = nn.Linear(hidden, width), nn.Linear(width, head.out_features)
        nn.init.zeros_(corr_h.weight)
        nn.init.zeros_(corr_h.bias)

        def logits(hb: torch.Tensor) -> torch.Tensor:
            z = (hb - mu) / sd
            base = nn.functional.linear(torch.tanh(eps * hb), head.weight / eps, head.bias)
            prior = prior_h(torch.tanh(soft * prior_w(z)) / soft)
            return base + beta * prior - corr_h(torch.tanh(corr_w(z)))

        idx = np.random.default_rng(seed).integers(0, len(x), len(x))
        hb_all, yb_all = h[idx], y[idx]
        opt = torch.optim.Adam([*corr_w.parameters(), *corr_h.parameters()], lr=lr)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            perm = torch.randperm(len(hb_all), generator=gen)
            for i in range(0, len(perm), batch_size):
                b = perm[i:i + batch_size]
                t = yb_all[b]
                loss = (t * (torch.log(t + 1e-8) - torch.log_softmax(logits(hb_all[b]), -1)))
                opt.zero_grad()
                loss.sum(-1).mean().backward()
                opt.step()
        return _pack(teacher, arch, trunk, head, (prior_w, prior_h), (corr_w, corr_h),
                     mu, sd, beta, eps, soft)


def _pack(teacher, arch, trunk, head, prior, corr, mu, sd, beta, eps, soft):
    """The member as a plain SB3 MLP: standardisation folded into the third layer."""
    (pw, ph), (cw, ch) = prior, corr
    hidden = trunk[-1].out_features
    arch = {**arch, "policy_kwargs": dict(arch["policy_kwargs"])}
    net = arch["policy_kwargs"]["net_arch"]
    vf = net["vf"] if isinstance(net, dict) else list(net)
    arch["policy_kwargs"]["net_arch"] = {
        "pi": [lin.out_features for lin in trunk] + [hidden + pw.out_features + cw.out_features],
        "vf": vf}
    student = build_policy(arch, teacher.observation_space, teacher.action_space)
    sd_t = teacher.state_dict()
    st = student.state_dict()
    with torch.no_grad():
        for k in st:  # the value net and the trunk: the teacher's own
            if k in sd_t and st[k].shape == sd_t[k].shape and not k.startswith("action_net"):
                st[k] = sd_t[k].clone()
        n = len(trunk)
        w3 = torch.cat([torch.eye(hidden) * eps, soft * pw.weight / sd, cw.weight / sd])
        b3 = torch.cat([torch.zeros(hidden), soft * (pw.bias - pw.weight @ (mu / sd)),
                        cw.bias - cw.weight @ (mu / sd)])
        st[f"mlp_extractor.policy_net.{2 * n}.weight"] = w3
        st[f"mlp_extractor.policy_net.{2 * n}.bias"] = b3
        st["action_net.weight"] = torch.cat([head.weight / eps, beta / soft * ph.weight,
                                             -ch.weight], 1)
        st["action_net.bias"] = head.bias + beta * ph.bias - ch.bias
    student.load_state_dict(st)
    student.set_training_mode(False)
    return student


def prior_ensemble(teacher, obs: np.ndarray, k: int, *, seed: int = 0, **kwargs) -> list:
    """``k`` randomized-prior members around ``teacher`` (``prior_member``, seeds
    ``seed + 1, ...``); their mean action is the teacher's in its own states."""
    return [prior_member(teacher, obs, seed=seed + i + 1, **kwargs) for i in range(k)]
