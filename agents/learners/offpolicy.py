"""The off-policy starting agent of PVP and RLIF: a DQN trained on plain traffic only, the
same world, observation and discrete meta-actions as the PPO novice, so ``takeover run``
can fine-tune it from interventions with no training first.

Recipe (:func:`train_dqn`): SB3 DQN on the batched ``takeover/Plain-v1`` env with the
novice's crash penalty (-50), a 64x64 Q-network and the novice's ``gamma = 0.99`` (with
0.95 the speed reward of the next 2 s outweighs a crash and DQN learns to race and
crash: measured 0/100 plain-traffic survival at 150k steps);
then a risk critic fitted on the trained agent's own rollouts in the hazard mix (so the
``q_risk`` estimator and threshold gates work on it as on the novice). Reproduce with::

    python -m takeover.agents.learners.offpolicy --out agents/pretrained/novice-dqn

(``--steps 30000`` gives the small test agent in a minute or two on one core.)

Status on the v1 world: the recipe does NOT yet learn to avoid collisions. The shipped
``novice-dqn`` (``--steps 250000 --set net_arch=256,256 lr=5e-4 exploration_fraction=0.2
target_update=1000``) collides in 100/100 held-out plain episodes (seeds 1_900_000..099);
so does ``gamma=0.95 crash_penalty=-20``. Its greedy Q-values sit near 90 on every
action up to the collision step while the episode's true return is about 5-17: the
network overestimates and never separates the pre-crash states. The SB3 adapter is not
the cause: the replay buffer holds the terminal observations, ``done`` on collisions
with the -50 reward, and ``timeout`` only on truncations (checked directly).

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
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from takeover.atomic import atomic_write_bytes, atomic_write_text
from takeover.types import AgentOutput

FORMAT = "takeover-q-agent"
TRAIN_SEED0 = 100_000
"""Training of shipped agents uses seeds 100_000..199_999 (the brief's seed blocks)."""
NOVICE_ENV = {"reward_collision": -50.0, "reward_offroad": -50.0}


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

    env_id: str = "takeover/Plain-v1"
    steps: int = 200_000
    seed: int = TRAIN_SEED0
    n_envs: int = 8
    net_arch: tuple[int, ...] = (64, 64)
    gamma: float = 0.99
    lr: float = 1e-4
    buffer_size: int = 100_000
    learning_starts: int = 5_000
    batch_size: int = 128
    train_freq: int = 1
    gradient_steps: int = 2
    target_update: int = 2_000
    exploration_fraction: float = 0.1
    exploration_final_eps: float = 0.02
    risk_env_id: str = "takeover/Highway-v1"
    risk_episodes: int = 200
    crash_penalty: float = -50.0
    """reward on a collision / leaving the road (the novice's -50)"""


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


def train_dqn(recipe: DQNRecipe = DQNRecipe(), out: str | Path | None = None) -> QAgent:
    """Train the starting DQN (and its risk critic) by ``recipe``; saved to ``out`` if given."""
    from takeover.agents.risk import RiskCritic, RiskSpec, collect_rollouts, fit_risk
    from takeover.agents.rollout import run_episodes
    from takeover.agents.train import make_vec_env

    r = recipe
    torch.set_num_threads(1)
    torch.manual_seed(r.seed)
    venv = make_vec_env(r.env_id, r.n_envs, r.seed, "discrete",
                        {"reward_collision": r.crash_penalty, "reward_offroad": r.crash_penalty})
    model = build_dqn(r.env_id, net_arch=r.net_arch, gamma=r.gamma, lr=r.lr, seed=r.seed,
                      env=venv, buffer_size=r.buffer_size, learning_starts=r.learning_starts,
                      batch_size=r.batch_size, train_freq=r.train_freq,
                      gradient_steps=r.gradient_steps,
                      target_update_interval=r.target_update,
                      exploration_fraction=r.exploration_fraction,
                      exploration_final_eps=r.exploration_final_eps)
    model.learn(r.steps)
    agent = QAgent(model, metadata={"algo": "DQN", "env_id": r.env_id,
                                    "recipe": {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in r.__dict__.items()}})
    spec = RiskSpec(obs_dim=int(np.prod(agent.observation_space.shape)))
    seeds = list(range(r.seed + 50_000, r.seed + 50_000 + r.risk_episodes))
    data = collect_rollouts(agent.predict, r.risk_env_id, seeds, spec, action_type="discrete")
    agent.risk_critic = RiskCritic(spec)
    fit_risk(agent.risk_critic, data, seed=r.seed)
    val = list(range(r.seed + 90_000, r.seed + 90_100))
    plain = run_episodes(agent.predict, r.env_id, val, action_type="discrete")
    agent.metadata["metrics"] = {
        "plain_survival": float(np.mean([not e.failed for e in plain])),
        "plain_mean_speed": float(np.mean([e.mean_speed for e in plain])),
        "validation_seeds": [val[0], val[-1]]}
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
        "env_id": agent.metadata.get("env_id", "takeover/Plain-v1"),
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
