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
from takeover.config import HELD_OUT_SEED
from takeover.types import AgentOutput

FORMAT = "takeover-q-agent"
TRAIN_SEED0 = 100_000
"""Training of shipped agents uses seeds 100_000..199_999 (the brief's seed blocks)."""
HELD_OUT_ENVS = ["takeover/Plain-v1", "takeover/Highway-v1"]
RISK_SEED0 = 160_000
"""Risk-critic rollouts on the hazard mix from seed 160_000 (as ``build_shipped``)."""
VALIDATION_SEED0 = 150_000
"""Validation (model selection) seeds 150_000..150_199, as for the PPO novice."""
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
    reward_speed: float = 1.0
    """weight of the env's speed reward while training (the env default: 1)"""
    reward_scale: float = 1.0
    """the learner sees ``reward * reward_scale`` (the env's returns are unchanged)"""
    n_steps: int = 1
    """n-step TD targets (SB3's ``NStepReplayBuffer``) of the online phase"""
    select_every: int = 25_000
    """env steps between validation checks; the shipped weights are the checkpoint with
    the highest plain arrival on ``select_episodes`` validation seeds from
    ``VALIDATION_SEED0`` (DQN's greedy policy swings between checkpoints: measured
    0.58 / 0.80 / 0.74 at 100k / 150k / 175k steps); 0 = the last weights"""
    select_episodes: int = 50
    held_out_episodes: int = 200
    """held-out episodes (from ``HELD_OUT_SEED``) per env of ``HELD_OUT_ENVS`` measured
    into the manifest's metrics"""
    demo_steps: int = 0
    """transitions of the demonstrator (:func:`follow_actions`, with ``demo_eps`` random
    actions) for the DQfD phase; 0 = plain DQN from scratch"""
    demo_eps: float = 0.2
    """share of random actions while collecting the demonstrations (so the TD targets
    also see what the other actions lead to)"""
    pretrain_steps: int = 30_000
    """gradient steps of the DQfD phase (TD + large-margin loss on the demonstrations)"""
    margin: float = 5.0
    """DQfD's margin: the demonstrator's action must beat every other by this much
    (reward units; the values are ~10-40 here)"""
    margin_weight: float = 1.0


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


SAME_LANE = 0.12
"""|lateral offset| in paved widths under which another car counts as in the ego's lane
(0.12 x ~15 m: within ~1.8 m of the ego's centre line on the default 3-lane road)."""


def follow_actions(obs: np.ndarray, headway: float = 1.5, ttc: float = 4.0,
                   speed: float = 24.0) -> np.ndarray:
    """The DQfD demonstrator: a memoryless car follower on the observation (``(B, K+1, 7)``
    -> ``(B,)`` meta-actions). ``slower`` while the nearest car ahead in the ego's lane is
    closer than 5 m + ``headway`` s or closes within ``ttc`` s, ``idle`` while it is within
    1.5x that and closing, else toward ``speed`` m/s; it never changes lanes.
    It decides on what the network sees (no hidden target speed, unlike
    ``envs.drivers.IDMDriver.meta_action``, whose ``idle`` means "keep braking" at times),
    so a Q-network can represent it: 98/100 plain arrivals on validation seeds
    150_000..150_099 (IDMDriver's meta-actions: 17/20)."""
    from takeover.envs import layout as L

    obs = np.asarray(obs, np.float32)
    v = obs[:, 0, 3] * 20.0
    oth = obs[:, 1:]
    ahead = (oth[..., 0] > 0) & (oth[..., 1] > 0) & (np.abs(oth[..., 2]) < SAME_LANE)
    dx = np.where(ahead, oth[..., 1], np.inf)
    j = dx.argmin(1)
    rows = np.arange(len(obs))
    near = np.isfinite(dx[rows, j])
    gap = np.where(near, dx[rows, j] * 100.0 - 5.0, np.inf)
    closing = -oth[rows, j, 3] * 20.0
    want = 5.0 + headway * v
    brake = near & ((gap < want) | ((closing > 0) & (gap < ttc * closing)))
    hold = near & ~brake & (closing > 0) & (gap < 1.5 * want)
    act = np.where(v < speed, L.FASTER, L.IDLE)
    act[hold] = L.IDLE
    act[brake] = L.SLOWER
    return act.astype(np.int64)


@dataclass(frozen=True)
class Demonstrations:
    """Transitions of the eps-perturbed demonstrator, with its label at every state."""

    obs: np.ndarray
    action: np.ndarray
    label: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray


def collect_demonstrations(venv, steps: int, eps: float, seed: int) -> Demonstrations:
    """``steps`` transitions of ``venv`` (an SB3 VecEnv) driven by :func:`follow_actions`
    with a share ``eps`` of uniformly random actions; truncations bootstrap (done = 0)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in Demonstrations.__dataclass_fields__}
    obs = venv.reset()
    n_act = venv.action_space.n
    for _ in range(-(-steps // venv.num_envs)):
        label = follow_actions(obs)
        act = np.where(rng.random(len(obs)) < eps, rng.integers(0, n_act, len(obs)), label)
        nxt, rew, done, infos = venv.step(act)
        final = nxt.copy()
        term = np.zeros(len(obs), np.float32)
        for i in np.flatnonzero(done):
            final[i] = infos[i]["terminal_observation"]
            term[i] = 0.0 if infos[i].get("TimeLimit.truncated") else 1.0
        for k, v in (("obs", obs), ("action", act), ("label", label), ("reward", rew),
                     ("next_obs", final), ("done", term)):
            cols[k].append(np.asarray(v))
        obs = nxt
    return Demonstrations(*(np.concatenate(cols[k])[:steps]
                            for k in Demonstrations.__dataclass_fields__))


def dqfd_pretrain(model, data: Demonstrations, *, steps: int, margin: float,
                  margin_weight: float = 1.0, reward_scale: float = 1.0, batch_size: int = 256,
                  lr: float = 5e-4, target_update: int = 1_000, seed: int = 0) -> list[float]:
    """DQfD's pre-training (Hester et al. 2018) of an SB3 DQN ``model`` in place: one-step
    TD on the demonstrations' env rewards plus the large-margin loss
    ``max_a [Q(s, a) + margin [a != a_E]] - Q(s, a_E)``, which makes the demonstrator's
    action the greedy one while TD puts the values on the return's scale (what PVP's
    proxy values and RLIF's penalty are set against). Returns the loss per step."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    t = {k: torch.as_tensor(getattr(data, k)) for k in Demonstrations.__dataclass_fields__}
    rew = t["reward"].float() * reward_scale
    opt = torch.optim.Adam(model.q_net.parameters(), lr=lr)
    model.q_net_target.load_state_dict(model.q_net.state_dict())
    model.policy.set_training_mode(True)
    history = []
    for step in range(steps):
        b = torch.randint(len(rew), (batch_size,), generator=gen)
        with torch.no_grad():
            target = rew[b] + model.gamma * (1.0 - t["done"][b].float()) * \
                model.q_net_target(t["next_obs"][b]).max(1).values
        q = model.q_net(t["obs"][b])
        td = F.mse_loss(q.gather(1, t["action"][b, None]).squeeze(1), target)
        lab = t["label"][b, None]
        bonus = torch.full_like(q, margin).scatter_(1, lab, 0.0)
        large_margin = ((q + bonus).max(1).values - q.gather(1, lab).squeeze(1)).mean()
        loss = td + margin_weight * large_margin
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.q_net.parameters(), 10.0)
        opt.step()
        if (step + 1) % target_update == 0:
            model.q_net_target.load_state_dict(model.q_net.state_dict())
        history.append(float(loss.detach()))
    model.q_net_target.load_state_dict(model.q_net.state_dict())
    model.policy.set_training_mode(False)
    return history


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
                                  for k, v in self.model.q_net.state_dict().items()}
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
    from takeover.agents.evaluate import evaluate
    from takeover.agents.risk import RiskCritic, RiskSpec, collect_rollouts, fit_risk
    from takeover.agents.rollout import run_episodes
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
    if r.demo_steps:
        data = collect_demonstrations(venv, r.demo_steps, r.demo_eps, r.seed)
        dqfd_pretrain(model, data, steps=r.pretrain_steps, margin=r.margin,
                      margin_weight=r.margin_weight, reward_scale=r.reward_scale, seed=r.seed)
    best = _BestOnValidation(r) if r.select_every else None
    if r.steps:
        model.learn(r.steps, callback=best, log_interval=None)
    if best is not None and best.state is not None:
        model.q_net.load_state_dict(best.state)
        model.q_net_target.load_state_dict(best.state)
    agent = QAgent(model, metadata={"algo": "DQN", "env_id": r.env_id,
                                    "recipe": {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in r.__dict__.items()}})
    if best is not None:
        agent.metadata["selection"] = {"checks": [list(c) for c in best.checks],
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
