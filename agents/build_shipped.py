"""The agents shipped with the package, so nothing has to be trained before a first run.

=====================  ==================================================================
``novice``             discrete-action PPO (64x64) trained only on ``takeover/Plain-v1``
                       (ordinary traffic, no hazards): competent there, unreliable in the
                       hazards it never saw. Risk critic fitted on its own rollouts on
                       ``takeover/Highway-v1``; ``reference_obs`` = its training observations.
``novice-ensemble``    five randomized-prior members around the novice
                       (``distill.prior_ensemble``): each shares the novice's frozen
                       features and adds a fixed random prior head plus a correction
                       fitted on a bootstrap of its plain-traffic states, so members agree
                       where the novice was trained and disagree where its features leave
                       that range; acts like the novice (99.9% same actions on its
                       reference states). Risk critic fitted on the ensemble's own rollouts.
                       Rebuild only this one from the shipped novice with
                       ``--ensemble-only``.
``novice-ppo-ensemble``  the five independently seeded PPO runs (seeds 0..4, the novice
                       first): diverse driving styles, so they disagree in ordinary
                       traffic too; their disagreement does not predict failures.
=====================  ==================================================================

Reproduce them with::

    python -m takeover.agents.build_shipped --out agents/pretrained

which trains five PPO members with ``takeover.agents.train`` on ``takeover/Plain-v1``
(``TrainConfig`` defaults, seeds ``TRAIN_SEED0 + k``; members 0-1 for 500k steps, the
candidates for the novice, members 2-4 for 200k, two at a time: about 40 minutes on 2 free
CPU cores), picks as ``novice`` the candidate that arrives most often in plain traffic on
validation seeds 150000..150199, collects its 2000 reference observations (seeds from
140000), fits the risk critics on 400 rollouts of ``takeover/Highway-v1`` (seeds from
160000), and measures every agent on 200 held-out seeds per scenario (from 1_000_000, the
numbers in each manifest's ``metrics``: arrival = success, collision, stopped, mean speed).
Every training and validation seed lies in the training block 100000..199999.
``--acceptance`` measures the issue-10 table (reference drivers and the novice) on the
held-out seeds.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from takeover.agents.shipped import BUILD_COMMAND, PRETRAINED, PRETRAINED_DIR
from takeover.config import HELD_OUT_SEED  # the manifests' rates: seeds nothing else used

TRAIN_SEED0 = 100_000
"""Every seed of the recipe lies in the training block 100_000..199_999 (the brief's seed
blocks): member k trains with seed TRAIN_SEED0 + k (torch, SB3 and its worlds)."""
RISK_SEED0 = 160_000
VALIDATION_SEED0 = 150_000
DISTILL_SEED0 = 130_000
REFERENCE_SEED0 = 140_000
NOVICE_ENV = {"reward_collision": -50.0, "reward_offroad": -50.0}
"""The novice's training reward: the env's default -5 for a crash is worth less than the
speed reward a fast driver collects before crashing, so PPO learns to race and crash;
-50 (with reward normalisation) makes it learn to survive plain traffic."""


def member_config(k: int, steps: int, work: Path):
    """The TrainConfig of ensemble member ``k`` (member 0 is the novice)."""
    from takeover.agents.train import TrainConfig

    return TrainConfig(env_id="takeover/Plain-v1", action_type="discrete", seed=TRAIN_SEED0 + k,
                       total_timesteps=steps, out=str(work / f"member{k}"), tensorboard=False,
                       reference_obs=0, env=dict(NOVICE_ENV))


def _train_member(args: tuple[int, int, Path]) -> str:
    import torch

    from takeover.agents.train import train

    torch.set_num_threads(1)
    k, steps, work = args
    return str(train(member_config(k, steps, work)))


def _seeded_critic(spec, seed: int):
    """A freshly initialised critic whose initial weights depend only on ``seed``."""
    import torch

    from takeover.agents.risk import RiskCritic

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RiskCritic(spec)


def fit_critic(predict, *, episodes: int, seed0: int, epochs: int, seed: int = 0,
               env_id: str = "takeover/Highway-v1"):
    """A risk critic for the policy ``predict``, from its own rollouts on ``env_id``;
    returns ``(critic, held_out_auroc_at_primary_horizon)`` (last 20% of episodes held out,
    then refitted on all)."""
    from sklearn.metrics import roc_auc_score

    from takeover.agents.risk import RiskData, RiskSpec, collect_rollouts, fit_risk

    spec = RiskSpec(obs_dim=63)
    data = collect_rollouts(predict, env_id, list(range(seed0, seed0 + episodes)), spec,
                            action_type="discrete")
    cut = int(0.8 * episodes)
    train = data.episode < cut
    part = RiskData(data.obs[train], data.labels[train], data.episode[train])
    critic = _seeded_critic(spec, seed)
    fit_risk(critic, part, epochs=epochs, seed=seed)
    j = critic.primary_index
    y = data.labels[~train, j]
    auroc = float("nan")
    if 0 < y.sum() < len(y):
        auroc = float(roc_auc_score(y, critic.predict(data.obs[~train])[:, j]))
    critic = _seeded_critic(spec, seed)
    fit_risk(critic, data, epochs=epochs, seed=seed)
    return critic, auroc


def build(out: Path, *, steps: int = 500_000, members: int = 5, candidates: int = 2,
          ensemble_steps: int = 200_000, risk_episodes: int = 400, risk_epochs: int = 20,
          work: Path | None = None, jobs: int = 2) -> dict[str, float]:
    """Train and save the three shipped agents into ``out``; returns metrics.

    Members ``0 .. candidates - 1`` train for ``steps`` and compete to be the novice; the
    rest train for ``ensemble_steps`` (they only widen the PPO ensemble). Members train in
    ``jobs`` processes; a member whose run already holds a checkpoint in ``work`` is reused
    (resume after an interruption)."""
    from concurrent.futures import ProcessPoolExecutor

    from takeover.agents.checkpoint import load_checkpoint
    from takeover.agents.evaluate import evaluate
    from takeover.agents.policy import EnsembleAgent, PolicyAgent
    from takeover.agents.train import collect_reference_obs
    from takeover.envs import register_envs

    register_envs()  # the members may all be reused: nothing else has imported the envs
    tmp = Path(work) if work else Path(tempfile.mkdtemp(prefix="takeover-pretrained-"))
    todo = [(k, steps if k < candidates else ensemble_steps, tmp) for k in range(members)
            if not (tmp / f"member{k}" / "checkpoint" / "manifest.json").is_file()]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for path in pool.map(_train_member, todo):
            print(f"trained {path}", flush=True)
    members_ = [load_checkpoint(tmp / f"member{k}" / "checkpoint") for k in range(members)]
    # model selection on held-out plain-traffic seeds: the novice is the member that drives
    # plain traffic best; it becomes member 0 of the ensemble
    val = [evaluate(m, ["takeover/Plain-v1"], n_seeds=200, seed0=VALIDATION_SEED0)
           ["takeover/Plain-v1"]["success"].mean for m in members_]
    best = int(np.argmax(val[:candidates]))
    print("validation plain success per member:", np.round(val, 3), "-> novice =", best)
    order = [best] + [k for k in range(members) if k != best]
    policies = [members_[k].policy for k in order]
    meta = {k: v for k, v in members_[best].metadata.items() if k != "path"}
    meta["validation_plain_success"] = [float(val[k]) for k in order]
    ref = collect_reference_obs(members_[best], "takeover/Plain-v1", 2000, REFERENCE_SEED0,
                                "discrete", NOVICE_ENV)
    metrics: dict[str, float] = {}
    novice = PolicyAgent(policies[0], reference_obs=ref, metadata=meta)
    ppo_ens = EnsembleAgent(policies, reference_obs=ref, metadata={
        **meta, "seed": [members_[k].metadata["seed"] for k in order]})
    states = plain_states(novice)
    ens = prior_agent(novice, states, members, meta)
    for name, agent in (("novice", novice), ("novice-ensemble", ens),
                        ("novice-ppo-ensemble", ppo_ens)):
        metrics.update(_finish(name, agent, out, risk_episodes, risk_epochs))
    if work is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


def plain_states(novice) -> np.ndarray:
    """The novice's own plain-traffic states (200 episodes from ``DISTILL_SEED0``)."""
    from takeover.agents.rollout import run_episodes

    return np.concatenate([e.obs for e in run_episodes(
        novice.predict, "takeover/Plain-v1", list(range(DISTILL_SEED0, DISTILL_SEED0 + 200)),
        keep_obs=True, action_type="discrete", **NOVICE_ENV)])


def prior_agent(novice, states: np.ndarray, members: int, meta: dict):
    """``novice-ensemble``: ``members`` randomized-prior members around the novice."""
    from takeover.agents.learners.distill import prior_ensemble
    from takeover.agents.policy import EnsembleAgent

    return EnsembleAgent(prior_ensemble(novice.policy, states, members, seed=0),
                         reference_obs=novice.reference_obs, metadata={
        **meta, "ensemble": f"{members} randomized-prior members on the novice's features, "
        f"fitted on bootstrap resamples of {len(states)} novice states "
        "(agents/learners/distill.py prior_ensemble)"})


EVAL_SEEDS = 200


def _finish(name: str, agent, out: Path, risk_episodes: int, risk_epochs: int) -> dict:
    """Fit ``agent``'s risk critic, evaluate it, save it under ``out``; returns metrics."""
    from takeover.agents.checkpoint import save_agent
    from takeover.agents.evaluate import evaluate
    from takeover.envs import ENV_IDS

    critic, auroc = fit_critic(agent.predict, episodes=risk_episodes, seed0=RISK_SEED0,
                               epochs=risk_epochs)
    agent.risk_critic = critic
    metrics = {"risk_auroc_2s": auroc}
    table = evaluate(agent, list(ENV_IDS), n_seeds=EVAL_SEEDS, seed0=HELD_OUT_SEED)
    for env_id, row in table.items():
        for key in ("success", "collision", "stopped", "mean_speed"):
            metrics[f"{env_id.split('/')[1]}/{key}"] = round(row[key].mean, 4)
        metrics[f"{env_id.split('/')[1]}/success_ci95"] = [round(row["success"].lo, 4),
                                                            round(row["success"].hi, 4)]
    save_agent(agent, out / PRETRAINED[name],
               extra={"build_command": BUILD_COMMAND, "metrics": metrics})
    print(name, metrics, flush=True)
    return {f"{name}/{k}": v for k, v in metrics.items()}


def build_ensemble(out: Path, *, members: int = 5, risk_episodes: int = 400,
                   risk_epochs: int = 20) -> dict[str, float]:
    """Rebuild only ``novice-ensemble`` around the novice already saved in ``out``."""
    from takeover.agents.checkpoint import load_checkpoint

    novice = load_checkpoint(out / PRETRAINED["novice"])
    meta = {k: v for k, v in novice.metadata.items() if k not in ("path", "metrics")}
    ens = prior_agent(novice, plain_states(novice), members, meta)
    return _finish("novice-ensemble", ens, out, risk_episodes, risk_epochs)


def drive_drivers(env_id: str, driver, seeds: list[int], **env_kwargs) -> dict[str, np.ndarray]:
    """Outcome, hazard met and return of a reference driver (``takeover.envs.drivers``)
    per seed: ``{"outcome": (n,) str, "hazard_met": (n,) bool, "return": (n,) float,
    "mean_speed": (n,) m/s}``."""
    import gymnasium as gym

    env = gym.make(env_id, **env_kwargs).unwrapped
    out: dict[str, list] = {"outcome": [], "hazard_met": [], "return": [], "mean_speed": []}
    for seed in seeds:
        env.reset(seed=seed)
        driver.reset()
        ret, speeds = 0.0, []
        while True:
            _, r, term, trunc, info = env.step(driver(env))
            ret += r
            speeds.append(info["speed"])
            if term or trunc:
                break
        out["outcome"].append(info["outcome"])
        out["hazard_met"].append(info["hazard_fired"])
        out["return"].append(ret)
        out["mean_speed"].append(float(np.mean(speeds)))
    return {k: np.array(v) for k, v in out.items()}


def acceptance(n_seeds: int = EVAL_SEEDS, seed0: int = HELD_OUT_SEED,
               agents: tuple[str, ...] = ("novice",)) -> list[dict]:
    """The issue-10 acceptance table on held-out seeds: per scenario, the careful
    ``IDMDriver``'s hazard-met and arrival rates, ``ConstantSpeedDriver``'s and
    ``StandstillDriver``'s arrival rates, whether the standstill's return is below the
    careful driver's on every seed, and each shipped agent's arrival rate and mean speed
    (95% bootstrap CIs, ``Estimate``)."""
    from takeover.agents.checkpoint import load_agent
    from takeover.agents.evaluate import bootstrap_ci, evaluate
    from takeover.envs import ENV_IDS
    from takeover.envs.drivers import ConstantSpeedDriver, IDMDriver, StandstillDriver

    seeds = list(range(seed0, seed0 + n_seeds))
    loaded = {name: load_agent(name) for name in agents}
    rows = []
    for env_id, scenario in ENV_IDS.items():
        if scenario == "mixed":
            continue
        care = drive_drivers(env_id, IDMDriver(), seeds)
        const = drive_drivers(env_id, ConstantSpeedDriver(), seeds)
        still = drive_drivers(env_id, StandstillDriver(), seeds)
        row = {"env_id": env_id,
               "careful_met": bootstrap_ci(care["hazard_met"]),
               "careful_arrived": bootstrap_ci(care["outcome"] == "arrived"),
               "careful_speed": bootstrap_ci(care["mean_speed"]),
               "constant_arrived": bootstrap_ci(const["outcome"] == "arrived"),
               "standstill_arrived": bootstrap_ci(still["outcome"] == "arrived"),
               "standstill_below_careful": float(np.mean(still["return"] < care["return"]))}
        for name, agent in loaded.items():
            res = evaluate(agent, [env_id], n_seeds=n_seeds, seed0=seed0)[env_id]
            row[f"{name}_arrived"] = res["success"]
            row[f"{name}_speed"] = res["mean_speed"]
            row[f"{name}_met"] = res["hazard_met"]
        rows.append(row)
        print(env_id, {k: str(v) for k, v in row.items() if k != "env_id"}, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Rebuild the shipped novice checkpoints.")
    p.add_argument("--out", type=Path, default=PRETRAINED_DIR)
    p.add_argument("--steps", type=int, default=500_000, help="PPO steps per novice candidate")
    p.add_argument("--ensemble-steps", type=int, default=200_000,
                   help="PPO steps of the other PPO-ensemble members")
    p.add_argument("--candidates", type=int, default=2, help="members competing to be novice")
    p.add_argument("--jobs", type=int, default=2, help="members trained in parallel")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--risk-episodes", type=int, default=400)
    p.add_argument("--work", type=Path, default=None, help="keep the training runs here")
    p.add_argument("--ensemble-only", action="store_true",
                   help="rebuild only novice-ensemble around the novice saved in --out")
    p.add_argument("--acceptance", action="store_true",
                   help="only measure the acceptance table on held-out seeds")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    np.set_printoptions(precision=3)
    if a.acceptance:
        acceptance()
        return
    if a.ensemble_only:
        build_ensemble(a.out, members=a.members, risk_episodes=a.risk_episodes)
        return
    build(a.out, steps=a.steps, members=a.members, candidates=a.candidates,
          ensemble_steps=a.ensemble_steps, risk_episodes=a.risk_episodes, work=a.work,
          jobs=a.jobs)


if __name__ == "__main__":
    main()
