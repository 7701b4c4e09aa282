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

Reproduce them (about 10 minutes on 2 CPU cores) with::

    python -m takeover.agents.pretrained --out agents/pretrained

which trains five members with ``takeover.agents.train`` (PPO, 600k steps, seeds 0..4,
``TrainConfig`` defaults plus the crash penalty ``NOVICE_ENV``; two at a time), picks as
``novice`` the member with the best plain-traffic success on validation seeds 50000..50199,
collects its 2000 reference observations (seeds from 20000), fits the risk critics on 400
rollouts of ``takeover/Highway-v1`` (seeds from 100000; evaluation seeds start at 0), and
prints plain vs mixed-hazard success over 100 seeds and the critics' held-out AUROC.
Measured on the shipped build (evaluation seeds 0..49, ``takeover eval novice``): see the
``metrics`` in each manifest and the report of issue 3.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED = {"novice": "novice", "novice-ensemble": "novice-ensemble",
              "novice-ppo-ensemble": "novice-ppo-ensemble"}
"""Shipped name -> sub-directory of ``PRETRAINED_DIR``."""

BUILD_COMMAND = "python -m takeover.agents.pretrained --out agents/pretrained"
RISK_SEED0 = 100_000
VALIDATION_SEED0 = 50_000
DISTILL_SEED0 = 30_000
REFERENCE_SEED0 = 20_000
NOVICE_ENV = {"reward_collision": -50.0, "reward_offroad": -50.0}
"""The novice's training reward: the env's default -5 for a crash is worth less than the
speed reward a fast driver collects before crashing, so PPO learns to race and crash;
-50 (with reward normalisation) makes it learn to survive plain traffic."""


def member_config(k: int, steps: int, work: Path):
    """The TrainConfig of ensemble member ``k`` (member 0 is the novice)."""
    from takeover.agents.train import TrainConfig

    return TrainConfig(env_id="takeover/Plain-v1", action_type="discrete", seed=k,
                       total_timesteps=steps, out=str(work / f"member{k}"), tensorboard=False,
                       reference_obs=0, env=dict(NOVICE_ENV))


def _train_member(args: tuple[int, int, Path]) -> str:
    import torch

    from takeover.agents.train import train

    torch.set_num_threads(1)
    k, steps, work = args
    return str(train(member_config(k, steps, work)))


def pretrained_path(name: str) -> Path:
    from takeover.agents.checkpoint import CheckpointError

    path = PRETRAINED_DIR / PRETRAINED[name]
    if not (path / "manifest.json").is_file():
        raise CheckpointError(f"the shipped checkpoint {name!r} is missing at {path}; "
                              f"rebuild it with: {BUILD_COMMAND}")
    return path


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


def build(out: Path, *, steps: int = 600_000, members: int = 5, risk_episodes: int = 400,
          risk_epochs: int = 20, work: Path | None = None, jobs: int = 2) -> dict[str, float]:
    """Train and save ``novice`` and ``novice-ensemble`` into ``out``; returns metrics.
    Members train in ``jobs`` processes; a member whose run already holds a checkpoint in
    ``work`` is reused (resume after an interruption)."""
    from concurrent.futures import ProcessPoolExecutor

    from takeover.agents.checkpoint import load_checkpoint
    from takeover.agents.evaluate import evaluate
    from takeover.agents.policy import EnsembleAgent, PolicyAgent
    from takeover.agents.train import collect_reference_obs

    tmp = Path(work) if work else Path(tempfile.mkdtemp(prefix="takeover-pretrained-"))
    todo = [(k, steps, tmp) for k in range(members)
            if not (tmp / f"member{k}" / "checkpoint" / "manifest.json").is_file()]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for path in pool.map(_train_member, todo):
            print(f"trained {path}", flush=True)
    members_ = [load_checkpoint(tmp / f"member{k}" / "checkpoint") for k in range(members)]
    # model selection on held-out plain-traffic seeds: the novice is the member that drives
    # plain traffic best; it becomes member 0 of the ensemble
    val = [evaluate(m, ["takeover/Plain-v1"], n_seeds=200, seed0=VALIDATION_SEED0)
           ["takeover/Plain-v1"]["success"].mean for m in members_]
    best = int(np.argmax(val))
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
    from takeover.agents.distill import prior_ensemble
    from takeover.agents.policy import EnsembleAgent

    return EnsembleAgent(prior_ensemble(novice.policy, states, members, seed=0),
                         reference_obs=novice.reference_obs, metadata={
        **meta, "ensemble": f"{members} randomized-prior members on the novice's features, "
        f"fitted on bootstrap resamples of {len(states)} novice states "
        "(agents/distill.py prior_ensemble)"})


def _finish(name: str, agent, out: Path, risk_episodes: int, risk_epochs: int) -> dict:
    """Fit ``agent``'s risk critic, evaluate it, save it under ``out``; returns metrics."""
    from takeover.agents.checkpoint import save_agent
    from takeover.agents.evaluate import evaluate

    critic, auroc = fit_critic(agent.predict, episodes=risk_episodes, seed0=RISK_SEED0,
                               epochs=risk_epochs)
    agent.risk_critic = critic
    metrics = {"risk_auroc_2s": auroc}
    table = evaluate(agent, ["takeover/Plain-v1", "takeover/Highway-v1"], n_seeds=100)
    for env_id, row in table.items():
        metrics[f"{env_id.split('/')[1]}/success"] = row["success"].mean
    save_agent(agent, out / PRETRAINED[name],
               extra={"build_command": BUILD_COMMAND, "metrics": metrics})
    print(name, {k: round(v, 3) for k, v in metrics.items()}, flush=True)
    return {f"{name}/{k}": v for k, v in metrics.items()}


def build_ensemble(out: Path, *, members: int = 5, risk_episodes: int = 400,
                   risk_epochs: int = 20) -> dict[str, float]:
    """Rebuild only ``novice-ensemble`` around the novice already saved in ``out``."""
    from takeover.agents.checkpoint import load_checkpoint

    novice = load_checkpoint(out / PRETRAINED["novice"])
    meta = {k: v for k, v in novice.metadata.items() if k not in ("path", "metrics")}
    ens = prior_agent(novice, plain_states(novice), members, meta)
    return _finish("novice-ensemble", ens, out, risk_episodes, risk_epochs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Rebuild the shipped novice checkpoints.")
    p.add_argument("--out", type=Path, default=PRETRAINED_DIR)
    p.add_argument("--steps", type=int, default=600_000, help="PPO steps per member")
    p.add_argument("--jobs", type=int, default=2, help="members trained in parallel")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--risk-episodes", type=int, default=400)
    p.add_argument("--work", type=Path, default=None, help="keep the training runs here")
    p.add_argument("--ensemble-only", action="store_true",
                   help="rebuild only novice-ensemble around the novice saved in --out")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    np.set_printoptions(precision=3)
    if a.ensemble_only:
        build_ensemble(a.out, members=a.members, risk_episodes=a.risk_episodes)
        return
    build(a.out, steps=a.steps, members=a.members, risk_episodes=a.risk_episodes, work=a.work,
          jobs=a.jobs)


if __name__ == "__main__":
    main()
