"""The off-policy starting agent of PVP and RLIF: a DQN trained on plain traffic only, the
same world, observation and discrete meta-actions as the PPO novice, so ``takeover run``
can fine-tune it from interventions with no training first.

Recipe (:func:`train_dqn`, the :class:`DQNRecipe` defaults): SB3 DQN, 256x256 Q-network,
on 8 batched ``takeover/Plain-v2`` worlds for 300k steps, ``gamma = 0.99``, 3-step
targets, a crash penalty of -150 and every reward scaled by 0.05 for the learner (Huber
loss and gradient clipping then see errors of order 1, not 50), hard target updates every
1000 steps, 10% of the steps to anneal exploration; the weights kept are those of the
25k-step check with the highest plain arrival on 50 validation seeds from 150_000
(greedy DQN swings between checkpoints); then a risk critic fitted on the trained
agent's own rollouts in the hazard mix (so the ``q_risk`` estimator and threshold gates
work on it as on the novice). What the previous recipe got wrong: the PPO novice's -50
unscaled, where the speed reward of the next seconds outweighs a crash at gamma 0.99, so
DQN raced and crashed (0/100 plain arrivals; Q-values ~90 on every action: the
discounted speed reward). Reproduce with::

    python -m takeover.agents.learners.offpolicy --out agents/pretrained/novice-dqn

(about 25 min on one free core; ``--steps 30000 --set select_every=0`` gives a small
test agent in a few minutes). The measured rates are in the manifest's ``metrics``
(validation seeds 150_000..150_199; held-out 1_000_000..1_000_199 on plain traffic and
the hazard mix).

The checkpoint is a folder with ``manifest.json`` (spaces, architecture, env id, metrics)
and ``weights.safetensors`` (Q-network, target network, risk critic): nothing in it is
executed on load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces

from takeover.atomic import atomic_write_bytes, atomic_write_text
from takeover.config import HELD_OUT_SEED
from takeover.types import AgentOutput

FORMAT = "takeover-q-agent"
TRAIN_SEED0 = 100_000
"""Training of shipped agents uses seeds 100_000..199_999 (the brief's seed blocks)."""
HELD_OUT_ENVS = ["takeover/Plain-v2", "takeover/Highway-v2"]
RISK_SEED0 = 160_000
"""Risk-critic rollouts on the hazard mix from seed 160_000 (as ``build_shipped``)."""
VALIDATION_SEED0 = 150_000
"""Validation (model selection) seeds 150_000..150_199, as for the PPO novice."""
NOVICE_ENV: dict[str, Any] = {"reward_collision": -50.0, "reward_offroad": -50.0}


class QAgent:
    """An SB3 DQN model as a supervisable agent: ``act(obs)`` answers the greedy action,
    ``probs`` = softmax of the Q-values (a temperature-1 Boltzmann policy: what the
    ``entropy`` estimator reads), ``risk`` from an optional risk critic.

    ``agent.model`` stays the SB3 model, so PVP and RLIF update it in place."""

    def __init__(self, model, *, risk=None, metadata: dict | None = None) -> None:
        self.model = model
        self.risk_critic = risk
        self.reference_obs = None
        self.metadata = dict(metadata or {})
        model.policy.set_training_mode(False)

    @property
    def observation_space(self) -> spaces.Box:
        return self.model.observation_space

    @property
    def action_space(self) -> spaces.Discrete:
        return self.model.action_space

    @torch.no_grad()
    def q(self, obs: np.ndarray) -> np.ndarray:
        """``(B, n)`` Q-values of a batch of observations."""
        obs = np.asarray(obs, np.float32)
        if obs.shape[1:] != self.observation_space.shape:
            raise ValueError(f"observations of shape {obs.shape[1:]} do not match the agent's "
                             f"observation space {self.observation_space.shape}; was the env "
                             "built with another config?")
        return self.model.q_net(torch.from_numpy(obs)).numpy()

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions ``(B,)`` for a batch ``(B, *obs_shape)``."""
        return self.q(obs).argmax(1)

    def act(self, obs: np.ndarray) -> AgentOutput:
        q = self.q(np.asarray(obs)[None])[0]
        e = np.exp(q - q.max())
        risk, extra = None, {}
        if self.risk_critic is not None:
            p = self.risk_critic.predict(np.asarray(obs, np.float32)[None])[0]
            risk = float(p[self.risk_critic.primary_index])
            extra["risk_by_horizon"] = {h: float(p[j])
                                        for j, h in enumerate(self.risk_critic.spec.horizons)}
        return AgentOutput(action=int(q.argmax()), probs=e / e.sum(), risk=risk, extra=extra)


@dataclass(frozen=True)
class DQNRecipe:
    """Everything :func:`train_dqn` varies (the manifest stores it)."""

    env_id: str = "takeover/Plain-v2"
    steps: int = 300_000
    seed: int = TRAIN_SEED0
    n_envs: int = 8
    net_arch: tuple[int, ...] = (256, 256)
    gamma: float = 0.99
    lr: float = 2.5e-4
    buffer_size: int = 100_000
    learning_starts: int = 5_000
    batch_size: int = 64
    train_freq: int = 1
    gradient_steps: int = 1
    target_update: int = 1_000
    exploration_fraction: float = 0.1
    exploration_final_eps: float = 0.02
    risk_env_id: str = "takeover/Highway-v2"
    risk_episodes: int = 200
    crash_penalty: float = -150.0
    """reward on a collision / leaving the road while training. With the PPO novice's -50
    DQN learns to race and crash (plain arrival 0.04-0.06 at 50k-75k steps, reward scale
    0.1, 3-step targets); with -150 it climbs to 0.80 by 150k: the speed reward of the
    next few seconds no longer outweighs a crash at gamma 0.99"""
    reward_speed: float = 1.0
    """weight of the env's speed reward while training (the env default: 1)"""
    reward_scale: float = 0.05
    """the learner sees ``reward * reward_scale`` (the env's returns are unchanged)"""
    n_steps: int = 3
    """n-step TD targets (SB3's ``NStepReplayBuffer``): a crash reaches the braking
    decision 3 steps earlier in each update"""
    select_every: int = 25_000
    """env steps between validation checks; the shipped weights are the checkpoint with
    the highest plain arrival on ``select_episodes`` validation seeds from
    ``VALIDATION_SEED0`` (DQN's greedy policy swings between checkpoints: measured
    0.58 / 0.80 / 0.74 at 100k / 150k / 175k steps); 0 = the last weights"""
    select_episodes: int = 50
    held_out_episodes: int = 200
    """held-out episodes (from ``HELD_OUT_SEED``) per env of ``HELD_OUT_ENVS`` measured
    into the manifest's metrics"""


def build_dqn(env_id: str, *, net_arch=(64, 64), gamma: float = 0.99, lr: float = 5e-4,
              seed: int = 0, env: Any = None, **dqn_kwargs: Any):
    """An SB3 DQN on ``env`` (default: one discrete ``env_id`` world, enough to fix the
    spaces for loading a checkpoint)."""
    import gymnasium as gym
    from stable_baselines3 import DQN

    import takeover.envs  # noqa: F401  (registers the ids)

    if env is None:
        env = gym.make(env_id, action_type="discrete", **NOVICE_ENV)
        dqn_kwargs.setdefault("buffer_size", 1)
    return DQN("MlpPolicy", env, gamma=gamma, learning_rate=lr, seed=seed, device="cpu",
               policy_kwargs={"net_arch": list(net_arch)}, verbose=0, **dqn_kwargs)


def _BestOnValidation(r: DQNRecipe):
    """An SB3 callback keeping the Q-network weights of the best validation check."""
    from stable_baselines3.common.callbacks import BaseCallback

    from takeover.agents.rollout import run_episodes

    seeds = list(range(VALIDATION_SEED0, VALIDATION_SEED0 + r.select_episodes))

    class Best(BaseCallback):
        state: dict | None = None
        score = -1.0
        checks: list = []

        def _on_step(self) -> bool:
            if self.num_timesteps % r.select_every < r.n_envs:
                agent = QAgent(self.model)
                eps = run_episodes(agent.predict, r.env_id, seeds, action_type="discrete")
                score = float(np.mean([e.outcome == "arrived" for e in eps]))
                self.checks = [*self.checks, (self.num_timesteps, score)]
                if score > self.score:
                    self.score = score
                    self.state = {k: v.detach().clone()
                                  for k, v in cast(Any, self.model).q_net.state_dict().items()}
                self.model.policy.set_training_mode(True)
            return True

    return Best()


def _ScaledReward(venv, scale: float):
    """``venv`` whose rewards are multiplied by ``scale`` (after the episode monitor)."""
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class Scaled(VecEnvWrapper):
        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            obs, rew, done, infos = self.venv.step_wait()
            return obs, rew * np.float32(scale), done, infos

    return Scaled(venv)


def train_dqn(recipe: DQNRecipe = DQNRecipe(), out: str | Path | None = None) -> QAgent:
    """Train the starting DQN (and its risk critic) by ``recipe``; saved to ``out`` if given."""
    from takeover.agents.train import make_vec_env

    r = recipe
    torch.set_num_threads(1)
    torch.manual_seed(r.seed)
    venv = make_vec_env(r.env_id, r.n_envs, r.seed, "discrete",
                        {"reward_collision": r.crash_penalty, "reward_offroad": r.crash_penalty,
                         "reward_speed": r.reward_speed})
    if r.reward_scale != 1.0:
        venv = _ScaledReward(venv, r.reward_scale)
    model = build_dqn(r.env_id, net_arch=r.net_arch, gamma=r.gamma, lr=r.lr, seed=r.seed,
                      env=venv, buffer_size=r.buffer_size, learning_starts=r.learning_starts,
                      batch_size=r.batch_size, train_freq=r.train_freq,
                      gradient_steps=r.gradient_steps,
                      target_update_interval=r.target_update,
                      exploration_fraction=r.exploration_fraction,
                      exploration_final_eps=r.exploration_final_eps, n_steps=r.n_steps)
    best = _BestOnValidation(r) if r.select_every else None
    if r.steps:
        model.learn(r.steps, callback=best, log_interval=None)
    if best is not None and best.state is not None:
        model.q_net.load_state_dict(best.state)
        model.q_net_target.load_state_dict(best.state)
    return finish_q_agent(model, r, best.checks if best is not None else None, out)


def finish_q_agent(model, r: DQNRecipe, checks: list | None = None,
                   out: str | Path | None = None) -> QAgent:
    """The trained ``model`` as a shipped agent: a risk critic fitted on its own rollouts
    in the hazard mix, validation and held-out metrics in its metadata; saved to ``out``."""
    from takeover.agents.evaluate import evaluate
    from takeover.agents.risk import RiskCritic, RiskSpec, collect_rollouts, fit_risk
    from takeover.agents.rollout import run_episodes

    agent = QAgent(model, metadata={"algo": "DQN", "env_id": r.env_id,
                                    "recipe": {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in r.__dict__.items()}})
    if checks is not None:
        agent.metadata["selection"] = {"checks": [list(c) for c in checks],
                                       "validation_seeds": [VALIDATION_SEED0,
                                                            VALIDATION_SEED0
                                                            + r.select_episodes - 1]}
    spec = RiskSpec(obs_dim=int(np.prod(agent.observation_space.shape)))
    seeds = list(range(RISK_SEED0, RISK_SEED0 + r.risk_episodes))
    data = collect_rollouts(agent.predict, r.risk_env_id, seeds, spec, action_type="discrete")
    agent.risk_critic = RiskCritic(spec)
    fit_risk(agent.risk_critic, data, seed=r.seed)
    val = list(range(VALIDATION_SEED0, VALIDATION_SEED0 + 200))
    plain = run_episodes(agent.predict, r.env_id, val, action_type="discrete")
    metrics: dict[str, Any] = {
        "plain_arrival": float(np.mean([e.outcome == "arrived" for e in plain])),
        "plain_survival": float(np.mean([not e.failed for e in plain])),
        "plain_mean_speed": float(np.mean([e.mean_speed for e in plain])),
        "validation_seeds": [val[0], val[-1]]}
    for env_id, row in evaluate(agent, HELD_OUT_ENVS, n_seeds=r.held_out_episodes,
                                seed0=HELD_OUT_SEED).items():  # reported, never selected on
        name = env_id.split("/")[1]
        metrics[f"{name}/success"] = round(row["success"].mean, 4)
        metrics[f"{name}/success_ci95"] = [round(row["success"].lo, 4),
                                           round(row["success"].hi, 4)]
        metrics[f"{name}/collision"] = round(row["collision"].mean, 4)
    agent.metadata["metrics"] = metrics
    if out is not None:
        save_q_agent(agent, out)
    return agent


def save_q_agent(agent: QAgent, path: str | Path) -> Path:
    """Write ``agent`` as a safe checkpoint folder (manifest + safetensors)."""
    from safetensors.torch import save

    from takeover.agents.checkpoint import space_to_dict

    path = Path(path)
    tensors = {f"q_net.{k}": t.detach().contiguous().clone()
               for k, t in agent.model.q_net.state_dict().items()}
    tensors |= {f"q_net_target.{k}": t.detach().contiguous().clone()
                for k, t in agent.model.q_net_target.state_dict().items()}
    risk = None
    if agent.risk_critic is not None:
        risk = agent.risk_critic.spec.to_dict()
        tensors |= {f"risk.{k}": t.detach().contiguous().clone()
                    for k, t in agent.risk_critic.state_dict().items()}
    recipe = agent.metadata.get("recipe", {})
    manifest = {
        "format": FORMAT, "algo": "DQN",
        "env_id": agent.metadata.get("env_id", "takeover/Plain-v2"),
        "observation_space": space_to_dict(agent.observation_space),
        "action_space": space_to_dict(agent.action_space),
        "net_arch": list(recipe.get("net_arch", (64, 64))),
        "gamma": float(agent.model.gamma), "risk": risk,
        "info": {k: v for k, v in agent.metadata.items() if k != "path"},
    }
    atomic_write_bytes(path / "weights.safetensors", save(tensors))
    atomic_write_text(path / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    return path


def is_q_checkpoint(path: str | Path) -> bool:
    p = Path(path) / "manifest.json"
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def load_q_agent(path: str | Path, *, lr: float = 1e-4) -> QAgent:
    """Load a :func:`save_q_agent` folder; ``lr`` is the fine-tuning optimiser's step size."""
    from safetensors.torch import load_file

    from takeover.agents.risk import RiskCritic, RiskSpec

    path = Path(path)
    if not is_q_checkpoint(path):
        raise FileNotFoundError(f"{path} is not a DQN agent folder (no manifest.json with "
                                f"format {FORMAT!r}); build one with "
                                "python -m takeover.agents.learners.offpolicy --out DIR")
    man = json.loads((path / "manifest.json").read_text())
    model = build_dqn(man["env_id"], net_arch=man["net_arch"], gamma=man["gamma"], lr=lr)
    tensors = load_file(str(path / "weights.safetensors"))
    for name in ("q_net", "q_net_target"):
        getattr(model, name).load_state_dict(
            {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
    risk = None
    if man.get("risk"):
        risk = RiskCritic(RiskSpec.from_dict(man["risk"]))
        risk.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("risk.")})
        risk.eval()
    return QAgent(model, risk=risk, metadata={**man.get("info", {}), "path": str(path)})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="checkpoint folder to write")
    ap.add_argument("--steps", type=int, default=DQNRecipe.steps, help="env steps")
    ap.add_argument("--seed", type=int, default=DQNRecipe.seed)
    ap.add_argument("--risk-episodes", type=int, default=DQNRecipe.risk_episodes)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other DQNRecipe fields, e.g. lr=3e-4 net_arch=256,256")
    a = ap.parse_args(argv)
    fields = {f.name: f.type for f in dataclasses.fields(DQNRecipe)}
    extra: dict[str, Any] = {}
    for kv in a.set:
        key, _, val = kv.partition("=")
        if key not in fields:
            ap.error(f"unknown recipe field {key!r}; fields: {', '.join(fields)}")
        cur = getattr(DQNRecipe, key)
        extra[key] = (tuple(int(v) for v in val.split(",")) if isinstance(cur, tuple)
                      else type(cur)(val))
    agent = train_dqn(DQNRecipe(steps=a.steps, seed=a.seed, risk_episodes=a.risk_episodes,
                                **extra), out=a.out)
    print(json.dumps(agent.metadata["metrics"], indent=2))


if __name__ == "__main__":
    main()
