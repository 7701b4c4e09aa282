"""Supervised world-steps per second, end to end (agent, estimators, gate, human, records,
log), on the supervision engine for N = 1 and N = 256 worlds, with and without
counterfactual labels, next to the loop a user would otherwise write (highway-env
``highway-fast-v0`` + a stable-baselines3 policy's ``predict`` + a threshold on TTC)
measured in the same run. Goals: >= 100k world-steps/s batched without labels, >= 20k with
the default labelling (1 in 10 steps plus every request, 2 s horizon), >= 1000x the
reference.

``main()`` returns ``{"rows": [...], "reference_steps_per_s": ..., ...}``: one row per
configuration with ``steps_per_s`` (world-steps / wall s), ``x_reference``, and the wall
time per world-step split into ``env_step_us_per_world_step`` (the batched world's
``step``: the kernel), ``log_us_per_world_step`` (``LogWriter.write_episodes`` of the
ended episodes' chunks, fsyncs included) and ``engine_us_per_world_step`` (everything else:
agent forward, estimators, gate, handover, humans, the step's columns, cutting episodes,
resets), which add up to ``us_per_world_step``. ``cpu_steps_per_s`` is per CPU second of
this process (less sensitive to a loaded machine than wall time), ``x_reference_cpu`` its
ratio to the reference's CPU rate. The load average is reported with the rows.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

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
        n_in = int(np.prod(cast(tuple, observation_space.shape)))
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



def _reference(seconds: float, seed: int) -> tuple[float, float]:
    """highway-fast-v0 + an SB3 PPO MlpPolicy's ``predict`` + a threshold on the adapter's
    TTC: steps per wall second and per CPU second (the one-env loop a user writes;
    untrained policy, the cost is the same)."""
    from stable_baselines3 import PPO

    from takeover.supervisor.adapters import make_highway_env

    env = make_highway_env("highway-fast-v0")
    model = PPO("MlpPolicy", env, seed=seed, device="cpu")
    obs, info = env.reset(seed=seed)
    steps, t0, c0 = 0, time.perf_counter(), time.process_time()
    action: Any
    while time.perf_counter() - t0 < seconds:
        action, _ = model.predict(obs, deterministic=True)
        if 2.0 / (2.0 + info["ttc"]) > 0.5:  # the threshold: brake
            action = 4
        obs, _, term, trunc, info = env.step(int(action))
        steps += 1
        if term or trunc:
            obs, info = env.reset()
    return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def _agent_and_estimators(name: str, env: Any) -> tuple[Any, dict, str]:
    from takeover.supervisor.estimators import make_estimators

    agent: Any
    try:
        from takeover.agents import load_agent

        agent = load_agent(name)
        ests = make_estimators(["q_risk", "novelty", "ttc"],
                               reference_obs=getattr(agent, "reference_obs", None))
        return agent, ests, "q_risk"
    except Exception:  # not shipped in this checkout
        agent = RandomEnsembleAgent(env.single_observation_space, env.single_action_space)
        return agent, make_estimators(["ensemble", "ttc"]), "ttc"


def engine_rate(n: int, *, seconds: float, label: bool, log_dir: str | None, human: str,
                agent: str, seed: int = 0) -> dict[str, Any]:
    """World-steps per wall second of the engine on ``n`` worlds of the mixed highway."""
    from takeover.envs.vector import make_vector_env
    from takeover.supervisor.counterfactual import Counterfactual
    from takeover.supervisor.engine import Engine, rollout_actor
    from takeover.supervisor.gates import GATES

    venv = make_vector_env("takeover/Highway-v2", n, action_type="discrete")
    agent_obj, ests, score = _agent_and_estimators(agent, venv)
    humans = None
    if human != "none":
        from takeover.supervisor.humans import HUMANS

        humans = HUMANS.make(human, num_worlds=n)
    cf = Counterfactual(horizon=2.0, sample_rate=0.1, seed=seed) if label else None
    eng = Engine(venv, agent_obj, ests, GATES.make("threshold", high=0.5, low=0.3), humans,
                 gate_score=score, counterfactual=cf)
    writer = None
    if log_dir is not None:
        from takeover.logio import LogWriter
        from takeover.records import RunMeta

        writer = LogWriter(log_dir, RunMeta(run_id=f"bench-{n}-{label}", seed=seed))
    env_s = [0.0]
    world_step = eng.worlds.step

    def timed_step(actions):  # env.step apart: the kernel's share, not the engine's
        t = time.perf_counter()
        try:
            return world_step(actions)
        finally:
            env_s[0] += time.perf_counter() - t

    cast(Any, eng.worlds).step = timed_step
    eng.start(list(range(seed, seed + 20 * n + 100)))  # more episodes than fit
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < min(2.0, seconds):  # warm-up: compiles, first resets
        eng.step()
    steps, episodes, log_s = 0, 0, 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    env_s[0] = 0.0
    while time.perf_counter() - t0 < seconds:
        ended = eng.step()
        episodes += len(ended)
        if writer is not None and ended:  # the column path: each episode's chunk as is
            t = time.perf_counter()
            writer.write_episodes([(ep.name, ep.chunk) for ep in ended])
            log_s += time.perf_counter() - t
        steps += n
    if cf is not None:
        cf.flush(eng.worlds, rollout_actor(agent_obj))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if writer is not None:
        writer.close()
    return {"worlds": n, "labels": label, "log": log_dir is not None, "human": human,
            "world_steps": steps, "episodes": episodes, "seconds": round(wall, 3),
            "steps_per_s": steps / wall, "cpu_steps_per_s": steps / cpu,
            "us_per_world_step": wall / steps * 1e6,
            "env_step_us_per_world_step": env_s[0] / steps * 1e6,
            "log_us_per_world_step": log_s / steps * 1e6,
            "engine_us_per_world_step": (wall - env_s[0] - log_s) / steps * 1e6}


def _us(fn, reps: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e6


def hotspots(agent: str = "novice", reps: int = 300) -> dict[str, float]:
    """Microseconds per call of the issue's hot spots, each next to the form it replaced
    (same run): novelty (float32 GEMM vs the float64 upcast of the reference every call),
    the predictive gate (closed-form slope vs ``np.polyfit``), the agent forward."""
    from takeover.agents import load_agent
    from takeover.supervisor.estimators import Novelty
    from takeover.supervisor.gates import GateContext, PredictiveGate
    from takeover.types import AgentOutputs

    a = load_agent(agent)
    ref = np.asarray(a.reference_obs, dtype=np.float32)
    nov = Novelty(ref)
    assert nov.reference is not None  # Novelty(ref) fits it
    x1, x256 = ref[:1] + 0.01, np.resize(ref, (256, *ref.shape[1:])) + 0.01
    r64 = nov.reference.astype(np.float64)

    def old_novelty() -> None:  # what the estimator did before: upcast every call
        x = x1.reshape(1, -1).astype(np.float64)
        ref_ = cast(np.ndarray, nov.reference).astype(np.float64)
        d2 = (x ** 2).sum(1)[:, None] + (r64 ** 2).sum(1)[None] - 2.0 * x @ ref_.T
        np.sort(np.partition(np.maximum(d2, 0), nov.k - 1, axis=1)[:, :nov.k], axis=1)

    gate = PredictiveGate(level=0.8, horizon=1.0, window=5)
    out = AgentOutputs(action=np.zeros(1, np.int64))
    ctx = GateContext(time=np.zeros(1), phase=np.zeros(1, np.int8), info={}, out=out,
                      human_action=np.full((1, 1), np.nan))
    score = np.array([0.3])
    y = np.linspace(0.1, 0.5, 5)
    x = np.arange(5.0)
    return {
        "novelty_us_n1": _us(lambda: nov.score_batch(x1), reps),
        "novelty_float64_upcast_us_n1": _us(old_novelty, reps),
        "novelty_us_per_world_n256": _us(lambda: nov.score_batch(x256), 10) / 256,
        "predictive_gate_us_n1": _us(lambda: gate.decide(score, ctx), reps),
        "polyfit_us": _us(lambda: np.polyfit(x, y, 1), reps),
        "agent_forward_us_n1": _us(lambda: a.act_arrays(x1), reps),
        "agent_forward_us_per_world_n256": _us(lambda: a.act_arrays(x256), 10) / 256,
        "reference_points": int(len(nov.reference)),
    }


def main(worlds: tuple[int, ...] = (1, 256), seconds: float = 5.0, human: str = "average",
         agent: str = "novice", seed: int = 0, log: bool = True) -> dict[str, Any]:
    """Every configuration for ``seconds`` of wall time each, plus the reference."""
    import tempfile

    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    blas = threadpool_limits(1)  # a 2-thread BLAS on 2 shared cores: 50 ms per GEMM, not 0.5
    try:
        ref, ref_cpu = _reference(seconds, seed)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for n in worlds:
                for label in (False, True):
                    for hum in dict.fromkeys((human, "none")):
                        for with_log in ((False, True) if log else (False,)):
                            d = f"{tmp}/{n}-{label}-{hum}-{with_log}" if with_log else None
                            row = engine_rate(n, seconds=seconds, label=label, log_dir=d,
                                              human=hum, agent=agent, seed=seed)
                            row["x_reference"] = row["steps_per_s"] / ref
                            row["x_reference_cpu"] = row["cpu_steps_per_s"] / ref_cpu
                            rows.append(row)
        import os

        return {"reference": "highway-fast-v0 + SB3 PPO predict + TTC threshold",
                "reference_steps_per_s": ref, "reference_cpu_steps_per_s": ref_cpu,
                "agent": agent, "rows": rows,
                "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
                "hotspots_us": hotspots(agent),
                "goals": {"batched_no_labels": 100_000, "batched_labels": 20_000,
                          "x_reference": 1000}}
    finally:
        torch.set_num_threads(threads)
        blas.restore_original_limits()


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
