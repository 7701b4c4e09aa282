"""What supervision costs per step: the shipped 5-member ensemble with its risk critic (or a
random 5 x 64 x 64 stand-in), an estimator and a gate, against the bare env step. Target:
<= 50 us added per step.

``main()`` returns the timings in microseconds per step (medians of ``repeats`` runs):

* ``env_step_us``: ``env.step`` with a precomputed action (the floor);
* ``ensemble_us``: the ensemble's batched forward (``act``) alone;
* ``estimator_gate_us``: ensemble score + budget gate decision alone;
* ``added_us``: ``ensemble_us + estimator_gate_us``, the supervision cost the target is about;
* ``supervisor_step_us`` / ``supervisor_added_us``: the whole ``Supervisor.step()`` (also
  handover, an idle human, and building the ``StepRecord``) and its excess over the env step.
"""

from __future__ import annotations

import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.types import AgentOutput


class RandomEnsembleAgent:
    """K random-weight MLPs ``obs -> hidden -> hidden -> action`` run as one batched forward
    (stacked weights, ``baddbmm``): the cost profile of a trained ensemble, for benchmarks and
    tests on any Box / Discrete env. The executed action is the members' mean (Box) or the
    argmax of their mean probabilities (Discrete)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, *,
                 k: int = 5, hidden: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        n_in = int(np.prod(observation_space.shape))
        if isinstance(action_space, spaces.Discrete):
            n_out = int(action_space.n)
        elif isinstance(action_space, spaces.Box):
            n_out = int(np.prod(action_space.shape))
        else:
            raise TypeError(f"RandomEnsembleAgent supports Box and Discrete actions, got "
                            f"{action_space}")
        self.space = action_space
        self.k = k
        sizes = [n_in, hidden, hidden, n_out]
        w = [torch.randn(k, a, b, generator=g) / math.sqrt(a) for a, b in
             zip(sizes[:-1], sizes[1:])]
        b = [torch.randn(k, 1, n, generator=g) * 0.1 for n in sizes[1:]]
        # the first layer of all members is one (n_in, K * hidden) matrix product
        self.w1 = w[0].permute(1, 0, 2).reshape(n_in, k * hidden).contiguous()
        self.b1 = b[0].reshape(1, k * hidden)
        self.w2, self.b2, self.w3, self.b3 = w[1], b[1], w[2], b[2]
        if isinstance(action_space, spaces.Box):
            lo = torch.as_tensor(action_space.low.reshape(-1), dtype=torch.float32)
            hi = torch.as_tensor(action_space.high.reshape(-1), dtype=torch.float32)
            self._mid, self._half = (hi + lo) / 2, (hi - lo) / 2

    def _forward(self, obs: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32).reshape(1, -1))
        h = torch.tanh(torch.addmm(self.b1, x, self.w1)).view(self.k, 1, -1)
        h = torch.tanh(torch.baddbmm(self.b2, h, self.w2))
        return torch.baddbmm(self.b3, h, self.w3)[:, 0, :]

    def forward(self, obs: np.ndarray) -> torch.Tensor:
        """``(*obs_shape,)`` -> ``(K, n_out)`` raw outputs of every member."""
        with torch.inference_mode():
            return self._forward(obs)

    def act(self, obs: np.ndarray) -> AgentOutput:
        with torch.inference_mode():
            y = self._forward(obs)
            if isinstance(self.space, spaces.Discrete):
                probs = torch.softmax(y, dim=-1)
                start = int(self.space.start)
                return AgentOutput(action=int(probs.mean(0).argmax()) + start,
                                   member_actions=probs.argmax(1).numpy() + start,
                                   probs=probs.numpy())
            members = torch.addcmul(self._mid, torch.tanh(y), self._half)
            action = members.mean(0).numpy().reshape(self.space.shape)
        return AgentOutput(action=action.astype(self.space.dtype, copy=False),
                           member_actions=members.numpy())


def _per_step_us(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def _agent(name: str, env: gym.Env, seed: int) -> tuple[Any, str]:
    """The shipped 5-member ensemble if asked for and present, else the random stand-in."""
    if name in ("auto", "novice-ensemble"):
        try:
            from takeover.agents import load_agent

            return load_agent("novice-ensemble", env=env), "novice-ensemble"
        except Exception:  # not shipped in this checkout / another action space
            if name != "auto":
                raise
    return RandomEnsembleAgent(env.observation_space, env.action_space, seed=seed), "random-5x64x64"


def main(steps: int = 3000, repeats: int = 5, env_id: str = "takeover/Highway-v1",
         seed: int = 0, agent: str = "auto") -> dict[str, Any]:
    """Time each piece for ``steps`` steps, ``repeats`` times; report medians (us/step).

    ``agent``: ``"auto"`` (default: the shipped ``novice-ensemble`` if present, else the
    random stand-in), ``"novice-ensemble"`` (the shipped agent; discrete actions; its
    ``act`` runs the numpy single-step path) or ``"random"`` (a random-weight 5 x 64 x 64
    ensemble, one batched torch forward)."""
    from takeover.supervisor.estimators import EnsembleDisagreement
    from takeover.supervisor.gates import BudgetGate, GateContext
    from takeover.supervisor.loop import Supervisor
    from takeover.types import Phase

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env = gym.make(env_id, action_type="discrete") if agent != "random" else gym.make(env_id)
        agent_obj, agent_name = _agent(agent, env, seed)
        agent = agent_obj
        est = EnsembleDisagreement()
        gate = BudgetGate(target_rate=0.05).fit(np.random.default_rng(seed).random(1000))
        obs, info = env.reset(seed=seed)
        action = agent.act(obs).action
        out = agent.act(obs)
        ctx = GateContext(0.0, Phase.AGENT, info, out)

        def bare() -> None:
            nonlocal obs
            obs, _, term, trunc, _ = env.step(action)
            if term or trunc:
                env.reset()

        def score_and_gate() -> None:
            gate.decide(est.score(obs, out, info), ctx)

        sup = Supervisor(env, agent, {"ensemble": est}, BudgetGate(target_rate=0.05),
                         None, gate_score="ensemble")

        def supervised() -> None:
            if sup.done:
                sup.reset(seed)
            sup.step()

        rows: dict[str, list[float]] = {k: [] for k in ("env", "ens", "eg", "sup")}
        for _ in range(repeats):
            env.reset(seed=seed)
            rows["env"].append(_per_step_us(bare, steps))
            rows["ens"].append(_per_step_us(lambda: agent.act(obs), steps))
            rows["eg"].append(_per_step_us(score_and_gate, steps))
            sup.reset(seed)
            rows["sup"].append(_per_step_us(supervised, steps))
        med = {k: float(np.median(v)) for k, v in rows.items()}
        added = med["ens"] + med["eg"]
        return {
            "env_id": env_id, "agent": agent_name, "steps": steps, "repeats": repeats,
            "env_step_us": med["env"], "ensemble_us": med["ens"],
            "estimator_gate_us": med["eg"], "added_us": added,
            "supervisor_step_us": med["sup"], "supervisor_added_us": med["sup"] - med["env"],
            "target_added_us": 50.0, "meets_target": added <= 50.0,
        }
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
