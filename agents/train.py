"""Train a stable-baselines3 agent on a ``takeover/*`` env and save it as a safe checkpoint.

PPO drives the discrete meta-actions, SAC the continuous ``[steer, accel]`` controls (``algo:
auto`` picks by ``action_type``). Rollouts come from the batched ``HighwayVectorEnv`` (all
worlds in one array op). A run directory holds everything needed to understand and repeat it::

    <out>/config.yaml     the resolved TrainConfig (rerun with ``takeover train -c``)
    <out>/checkpoint/     safe checkpoint (manifest.json + safetensors), see ``checkpoint``
    <out>/eval/           EvalCallback's evaluations.npz
    <out>/tb/             TensorBoard logs (``tensorboard --logdir <out>/tb``)

Same config, same seed, same CPU -> the same weights (torch runs on one thread).

Example::

    from takeover.agents.train import TrainConfig, train
    path = train(TrainConfig(env_id="takeover/Plain-v2", total_timesteps=200_000, out="runs/a"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from takeover.atomic import atomic_write_text
from takeover.config import ConfigError, option, to_dict, validate


def _env_ids() -> list[str]:
    from takeover.envs import ENV_IDS

    return list(ENV_IDS)


@dataclass(frozen=True)
class TrainConfig:
    env_id: str = option("takeover/Plain-v2", "training env", choices=_env_ids)
    action_type: str = option("discrete", "env action space",
                              choices=("discrete", "continuous"))
    algo: str = option("auto", "auto = PPO for discrete, SAC for continuous",
                       choices=("auto", "ppo", "sac"))
    total_timesteps: int = option(200_000, "env steps to train for", range=(1, None))
    seed: int = option(0, "seeds torch, the envs and SB3", range=(0, None))
    n_envs: int = option(8, "parallel worlds in the batched env", range=(1, 1024))
    net_arch: tuple[int, ...] = option((64, 64), "hidden layer sizes (actor and critic)",
                                       range=(1, 4096))
    learning_rate: float = option(3e-4, "optimiser step size", range=(0.0, 1.0))
    lr_schedule: str = option("constant", "linear = decay the step size to 0 by the end "
                              "(steadier final policy)", choices=("constant", "linear"))
    gamma: float = option(0.99, "discount factor", range=(0.0, 1.0))
    batch_size: int = option(256, "minibatch size", range=(1, None))
    n_steps: int = option(256, "PPO: steps per env per rollout", range=(1, None))
    n_epochs: int = option(10, "PPO: passes over each rollout", range=(1, None))
    ent_coef: float = option(0.01, "PPO: entropy bonus", range=(0.0, None))
    normalize_reward: bool = option(True, "scale rewards by a running return std (keeps the "
                                    "value loss from swamping the clipped policy gradient)")
    buffer_size: int = option(200_000, "SAC: replay buffer size", range=(1, None))
    learning_starts: int = option(1_000, "SAC: random steps before learning", range=(0, None))
    ttc_penalty: float = option(0.0, "training-only shaping: per-step penalty at zero "
                                "time-to-collision, falling linearly to 0 at ttc_horizon "
                                "(charges closing in on a slower car before the crash; a car "
                                "that is not closing costs nothing, so standing still is "
                                "never what it pays for)", range=(0.0, None))
    ttc_horizon: float = option(3.0, "s: time-to-collision below which ttc_penalty applies",
                                range=(0.1, 60.0))
    snapshot_freq: int = option(0, "env steps between policy snapshots in "
                                "<out>/snapshots/<steps> (0 = off), for checkpoint selection "
                                "on validation seeds", range=(0, None))
    eval_freq: int = option(20_000, "env steps between evaluations (0 = off)", range=(0, None))
    eval_episodes: int = option(10, "episodes per evaluation", range=(1, None))
    reference_obs: int = option(2000, "training observations kept for novelty estimation",
                                range=(0, 100_000))
    out: str = option("runs/train", "run directory")
    tensorboard: bool = option(True, "write TensorBoard logs to <out>/tb")
    progress_bar: bool = option(False, "show SB3's progress bar")
    verbose: int = option(0, "SB3 verbosity", range=(0, 2))
    env: dict[str, Any] = option(None, "HighwayConfig overrides (e.g. {vehicles: 30})",
                                 factory=dict)

    def __post_init__(self) -> None:
        validate(self)
        if "action_type" in self.env or "scenario" in self.env:
            raise ConfigError("set action_type with the top-level key and the scenario with "
                              "env_id, not inside env")
        if self.resolved_algo == "sac" and self.action_type == "discrete":
            raise ConfigError("algo=sac needs action_type=continuous (PPO handles discrete)")

    @property
    def resolved_algo(self) -> str:
        if self.algo != "auto":
            return self.algo
        return "ppo" if self.action_type == "discrete" else "sac"


def _ttc_shaping():
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class TTCShaping(VecEnvWrapper):
        """Adds ``-penalty * clip(1 - ttc / horizon, 0, 1)`` to each world's reward, from the
        step's ground-truth ``info["ttc"]`` (s until the first conflict ahead; 99 when none).
        Outside ``VecMonitor``, so episode statistics stay the env's own return."""

        def __init__(self, venv, penalty: float, horizon: float) -> None:
            super().__init__(venv)
            self.penalty, self.horizon = penalty, horizon

        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            obs, rew, done, infos = self.venv.step_wait()
            ttc = np.array([info["ttc"] for info in infos], np.float64)
            rew = rew - self.penalty * np.clip(1.0 - ttc / self.horizon, 0.0, 1.0)
            return obs, rew.astype(np.float32), done, infos

    return TTCShaping


def make_vec_env(env_id: str, n_envs: int, seed: int, action_type: str, env: dict, *,
                 normalize_reward: bool = False, gamma: float = 0.99, training: bool = True,
                 ttc_penalty: float = 0.0, ttc_horizon: float = 3.0):
    """The batched env as an SB3 ``VecEnv`` with episode statistics (raw rewards), optional
    time-to-collision shaping (training only) and optionally reward normalisation
    (observations are already in [-1, 1])."""
    from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

    from takeover.envs.sb3 import make_sb3_vec_env

    venv: VecEnv = VecMonitor(make_sb3_vec_env(
        env_id, n_envs, seed=seed, action_type=action_type, **env))
    if ttc_penalty > 0.0:
        venv = _ttc_shaping()(venv, ttc_penalty, ttc_horizon)
    if normalize_reward:
        venv = VecNormalize(venv, training=training, norm_obs=False,
                            norm_reward=training, gamma=gamma)
    return venv


def build_model(cfg: TrainConfig, venv, tb: str | None):
    from stable_baselines3 import PPO, SAC

    lr: Any = cfg.learning_rate  # a float, or SB3's LinearSchedule
    if cfg.lr_schedule == "linear":
        from stable_baselines3.common.utils import LinearSchedule

        lr = LinearSchedule(lr, 0.0, 1.0)
    common: dict[str, Any] = dict(learning_rate=lr, gamma=cfg.gamma, batch_size=cfg.batch_size,
                  seed=cfg.seed, device="cpu", verbose=cfg.verbose, tensorboard_log=tb)
    if cfg.resolved_algo == "ppo":
        arch = list(cfg.net_arch)
        return PPO("MlpPolicy", venv, n_steps=cfg.n_steps, n_epochs=cfg.n_epochs,
                   ent_coef=cfg.ent_coef, policy_kwargs={"net_arch": {"pi": arch, "vf": arch}},
                   **common)
    return SAC("MlpPolicy", venv, buffer_size=cfg.buffer_size,
               learning_starts=cfg.learning_starts,
               policy_kwargs={"net_arch": list(cfg.net_arch)}, **common)


def collect_reference_obs(agent, env_id: str, n: int, seed: int, action_type: str,
                          env: dict) -> np.ndarray:
    """``n`` observations the trained policy visits on its training env (deterministic
    rollouts from seeds ``seed, seed+1, ...``, evenly subsampled)."""
    from takeover.agents.risk import RiskSpec, collect_rollouts

    if n == 0:
        return np.zeros((0, *agent.observation_space.shape), np.float32)
    spec = RiskSpec(obs_dim=int(np.prod(agent.observation_space.shape)))
    chunks, have, start = [], 0, seed
    while have < 2 * n and start - seed < 100 * max(1, n // 100):  # ~2x oversampling
        episodes = max(4, int(np.ceil((2 * n - have) / 150)))
        data = collect_rollouts(agent.predict, env_id, list(range(start, start + episodes)),
                                spec, action_type=action_type, **env)
        chunks.append(data.obs)
        have += len(data.obs)
        start += episodes
    obs = np.concatenate(chunks)
    return obs[np.linspace(0, len(obs) - 1, min(n, len(obs))).astype(int)]


def _snapshots(model, root: Path, every: int, meta: dict):
    """A callback saving the policy as a safe checkpoint at ``root/<env steps>`` every
    ``every`` env steps (the candidates of checkpoint selection on validation seeds)."""
    from stable_baselines3.common.callbacks import BaseCallback

    from takeover.agents.checkpoint import save_agent
    from takeover.agents.policy import PolicyAgent

    class Snapshots(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next = every

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += every
                save_agent(PolicyAgent(model.policy, metadata={
                    **meta, "steps": int(self.num_timesteps)}),
                    root / f"{self.num_timesteps:08d}")
            return True

    return Snapshots()


def train(config: TrainConfig | dict) -> Path:
    """Train, evaluate periodically, and save; returns the checkpoint directory."""
    from stable_baselines3.common.callbacks import EvalCallback

    from takeover.agents.checkpoint import save_agent
    from takeover.agents.policy import PolicyAgent

    if isinstance(config, dict):
        from takeover.config import from_dict

        config = from_dict(TrainConfig, config)
    cfg = config
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    venv = make_vec_env(cfg.env_id, cfg.n_envs, cfg.seed, cfg.action_type, cfg.env,
                        normalize_reward=cfg.normalize_reward, gamma=cfg.gamma,
                        ttc_penalty=cfg.ttc_penalty, ttc_horizon=cfg.ttc_horizon)
    model = build_model(cfg, venv, str(out / "tb") if cfg.tensorboard else None)
    meta = {"algo": cfg.resolved_algo.upper(), "env_id": cfg.env_id, "seed": cfg.seed,
            "train_config": to_dict(cfg)}
    callbacks: list = []
    if cfg.snapshot_freq > 0:
        callbacks.append(_snapshots(model, out / "snapshots", cfg.snapshot_freq, meta))
    if cfg.eval_freq > 0:
        eval_env = make_vec_env(cfg.env_id, 1, cfg.seed + 10_000, cfg.action_type, cfg.env,
                                normalize_reward=cfg.normalize_reward, training=False,
                                ttc_penalty=cfg.ttc_penalty, ttc_horizon=cfg.ttc_horizon)
        # wrapped like the training env (SB3 syncs the normalisation along both chains)
        callbacks.append(EvalCallback(eval_env, n_eval_episodes=cfg.eval_episodes,
                                      eval_freq=max(1, cfg.eval_freq // cfg.n_envs),
                                      log_path=str(out / "eval"), deterministic=True,
                                      verbose=cfg.verbose))
    model.learn(cfg.total_timesteps, callback=callbacks or None, progress_bar=cfg.progress_bar,
                tb_log_name="run")
    agent = PolicyAgent(model.policy, metadata=meta)
    agent.reference_obs = collect_reference_obs(agent, cfg.env_id, cfg.reference_obs,
                                                cfg.seed + 20_000, cfg.action_type, cfg.env)
    return save_agent(agent, out / "checkpoint")


__all__ = ["TrainConfig", "train"]
