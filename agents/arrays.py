"""The batched, row-deterministic forward of an :class:`~takeover.agents.EnsembleAgent`:
``act_arrays(agent, obs) -> AgentOutputs`` for N observations at once.

Why not torch's batched forward: a GEMM picks its kernel by the number of rows, so the same
observation gives different float bits in a batch of 1 and of 256 (measured on the shipped
novice: probabilities and risks differ by up to 5e-7 for batches of 1 and 7 vs 256), and a
supervised run would not be the same run at another batch size. Here every row is its own
product (``row_products``), and the softmax / argmax / sigmoid are compiled per-row loops,
so a row's answer never depends on its neighbours.

The stacked weights are read from the ensemble (``EnsemblePolicy.w / b / hw / hb``) and the
critic's ``Linear`` layers, and re-read when their torch version counters change (one check
per batch, not per observation), so fine-tuning in place is picked up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numba import njit

from takeover.types import AgentOutputs


def _relu(h: np.ndarray) -> np.ndarray:
    return np.maximum(h, np.float32(0.0))


_ACT = {"Tanh": np.tanh, "ReLU": _relu, "Identity": None}


def row_products(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for ``(N, in)`` float32 rows, each row its own product (one ``matmul`` over
    ``(N, 1, in)``), so a row's bits never depend on its batch. Fixed-size blocks of rows
    are not enough: OpenBLAS 0.3.31 (numpy 2.4.6's) gives a row different bits by its place
    among a GEMM's rows (shifting 16 rows by one changed 3 of them), which is how
    16-row blocks broke batch invariance on a new machine. The cost, measured in one process
    at 256 rows: the ensemble forward (``act_arrays``, shipped novice-ensemble) 1.23-1.26x
    the 16-row blocks' time; the novelty distances (2000 references) 0.89-1.34x."""
    return np.matmul(x[:, None, :], w)[:, 0]


def _mlp(x: np.ndarray, layers: list, act: Any) -> np.ndarray:
    """``(N, in)`` -> ``(N, K, out)`` through K members' layers, row by row
    (``row_products``); the first layer of all members is one ``(in, K*out)`` product, each
    later layer one stacked ``matmul`` over (row, member), so the Python cost per call does
    not grow with N."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    (w0, b0, k, n0), rest = layers[0], layers[1:]
    h = row_products(x, w0)  # (N, K*n0)
    h += b0
    h = h.reshape(len(x), k, 1, n0)  # one row per (observation, member)
    for w, b in rest:
        if act is not None:
            h = act(h)
        h = np.matmul(h, w)  # (K, n0, out) broadcast over the rows
        h += b
    return h[:, :, 0, :]


def _layers(ws: list[np.ndarray], bs: list[np.ndarray]) -> list:
    """``[(W (K, in, out), b (K, out))]`` -> the first layer concatenated, the rest as is."""
    w0, b0 = ws[0], bs[0]
    k, n_in, n0 = w0.shape
    first = (np.ascontiguousarray(w0.transpose(1, 0, 2).reshape(n_in, k * n0), np.float32),
             np.ascontiguousarray(b0.reshape(k * n0), np.float32), k, n0)
    return [first, *[(np.ascontiguousarray(w, np.float32),
                      np.ascontiguousarray(b.reshape(k, 1, -1), np.float32))
                     for w, b in zip(ws[1:], bs[1:], strict=True)]]


@njit(cache=True)
def _categorical(logits: np.ndarray, probs: np.ndarray, member: np.ndarray,
                 action: np.ndarray) -> None:
    """Softmax per member, member argmax, argmax of the members' mean probability."""
    n_rows, k, n = logits.shape
    mean = np.empty(n, dtype=np.float32)
    for b in range(n_rows):
        for a in range(n):
            mean[a] = 0.0
        for m in range(k):
            top = logits[b, m, 0]
            arg = 0
            for a in range(1, n):
                if logits[b, m, a] > top:
                    top, arg = logits[b, m, a], a
            member[b, m] = arg
            s = np.float32(0.0)
            for a in range(n):
                e = np.float32(math.exp(logits[b, m, a] - top))
                probs[b, m, a] = e
                s += e
            for a in range(n):
                probs[b, m, a] /= s
                mean[a] += probs[b, m, a]
        best, arg = mean[0], 0
        for a in range(1, n):
            if mean[a] > best:
                best, arg = mean[a], a
        action[b] = arg


@njit(cache=True)
def _sigmoid(z: np.ndarray, out: np.ndarray) -> None:
    for b in range(z.shape[0]):
        for j in range(z.shape[2]):
            out[b, j] = 1.0 / (1.0 + math.exp(-float(z[b, 0, j])))


@njit(cache=True)
def _member_mean(members: np.ndarray, out: np.ndarray) -> None:
    n_rows, k, a = members.shape
    for b in range(n_rows):
        for j in range(a):
            s = np.float32(0.0)
            for m in range(k):
                s += members[b, m, j]
            out[b, j] = s / np.float32(k)


class ArrayForward:
    """Packed copies of one agent's weights (ensemble and risk critic) for :func:`_mlp`."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.key: tuple[int, int] | None = None
        self._owner: tuple[int, int] | None = None
        self._watched: list[torch.Tensor] = []

    def _tensors(self) -> list[torch.Tensor]:
        """The weights whose version counters say "changed", listed once per (ensemble,
        critic) pair: ``Module.parameters()`` walks the module tree, which cost more than
        the forward itself at N = 1."""
        ens, crit = self.agent.ensemble, self.agent.risk_critic
        owner = (id(ens), id(crit))
        if owner != self._owner:
            self._watched = list(ens._flat) + (list(crit.parameters()) if crit is not None
                                               else [])
            self._owner = owner
        return self._watched

    def refresh(self) -> None:
        key = (id(self.agent.risk_critic), sum(t._version for t in self._tensors()))
        if key == self.key:
            return
        ens = self.agent.ensemble
        ens.refresh()
        name = type(ens.activation).__name__
        if name not in _ACT:
            raise ValueError(f"act_arrays supports Tanh / ReLU / Identity actors, got {name}")
        self.act = _ACT[name]
        self.policy = _layers([w.numpy() for w in ens.w] + [ens.hw.numpy()],
                              [b.numpy() for b in ens.b] + [ens.hb.numpy()])
        self.k = ens.k
        self.critic = None
        crit = self.agent.risk_critic
        if crit is not None:
            lins = [m for m in crit.net if isinstance(m, torch.nn.Linear)]
            self.critic = _layers([m.weight.detach().numpy().T[None] for m in lins],
                                  [m.bias.detach().numpy()[None] for m in lins])
        self.key = key


def act_arrays(agent: Any, obs: np.ndarray, *, risk: bool = True) -> AgentOutputs:
    """``(N, *obs_shape)`` -> :class:`AgentOutputs` of an ``EnsembleAgent`` (deterministic
    actions; no MC dropout), each row computed independently of the others. ``risk=False``
    skips the risk critic (``risk`` is ``None``): the same actions, bit for bit, for
    callers that only execute them (counterfactual rollouts)."""
    fwd = agent.__dict__.get("_array_forward")
    if fwd is None:
        fwd = agent.__dict__["_array_forward"] = ArrayForward(agent)
    fwd.refresh()
    x = np.ascontiguousarray(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1))
    n = len(x)
    k = fwd.k
    y = _mlp(x, fwd.policy, fwd.act)
    extra: dict[str, Any] = {}
    p_risk = None
    if risk and fwd.critic is not None:
        z = np.ascontiguousarray(_mlp(x, fwd.critic, _relu))  # the critic's hidden: ReLU
        p = np.empty((n, z.shape[2]), dtype=np.float64)
        _sigmoid(z, p)
        crit = agent.risk_critic
        p_risk = p[:, crit.primary_index].copy()
        extra["risk_by_horizon"] = {h: p[:, j].copy() for j, h in enumerate(crit.spec.horizons)}
    single = k == 1
    kind = agent.ensemble.kind
    if kind == "categorical":
        probs = np.empty_like(y)
        member = np.empty((n, k), dtype=np.int64)
        action = np.empty(n, dtype=np.int64)
        _categorical(y, probs, member, action)
        return AgentOutputs(action=action, member_actions=None if single else member,
                            probs=probs[:, 0] if single else probs, risk=p_risk, extra=extra)
    space = agent.action_space
    lo, hi = space.low.astype(np.float32), space.high.astype(np.float32)
    if kind == "gaussian":
        mean = y
        log_std = np.broadcast_to(agent.ensemble.ls.numpy()[None], y.shape)
        members = np.clip(mean, lo, hi)
    else:
        mean, log_std = np.split(y, 2, axis=2)
        log_std = np.clip(log_std, -20.0, 2.0)
        members = lo + np.float32(0.5) * (np.tanh(mean) + np.float32(1.0)) * (hi - lo)
    members = np.ascontiguousarray(members, dtype=np.float32)
    action = np.empty((n, members.shape[2]), dtype=np.float32)
    _member_mean(members, action)
    return AgentOutputs(action=action, member_actions=None if single else members,
                        mean=mean[:, 0] if single else mean,
                        log_std=log_std[:, 0] if single else log_std, risk=p_risk,
                        extra=extra)
