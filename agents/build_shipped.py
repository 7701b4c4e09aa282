"""The agents shipped with the package, so nothing has to be trained before a first run.

=====================  ==================================================================
``novice``             discrete-action PPO (64x64) trained only on ``takeover/Plain-v1``
                       (ordinary traffic, no hazards) with a training reward that makes a
                       crash and a standstill cost more than speed earns (``NOVICE_ENV``):
                       competent there, unreliable in the hazards it never saw. Risk critic fitted on its own rollouts on
                       ``takeover/Highway-v1``; ``reference_obs`` = its training observations.
``novice-ensemble``    five randomized-prior members around the novice
                       (``distill.prior_ensemble``): each shares the novice's frozen
                       features and adds a fixed random prior head plus a correction
                       fitted on a bootstrap of its plain-traffic states, so members agree
                       where the novice was trained and disagree where its features leave
                       that range; acts like the novice (99.9% same actions on its
                       reference states). The prior units barely saturate
                       (``soft=0.05``, ``beta=0.3``): tuned on training-block hazard
                       seeds 170000..170199, pooled 4 s disagreement AUROC 0.63 -> 0.67
                       (held out on the shipped novice: 0.60 [0.58, 0.61], 0.52-0.76 per
                       hazard). Risk critic fitted on the ensemble's own rollouts.
                       Rebuild only this one from the shipped novice with
                       ``--ensemble-only``.
``novice-ppo-ensemble``  the five independently seeded PPO runs (seeds ``TRAIN_SEED0 + k``,
                       the novice first, then the other candidate and three shorter runs
                       trained like the novice): diverse driving styles, so they disagree
                       in ordinary traffic too; their disagreement does not predict
                       failures (held-out 4 s AUROC 0.49 pooled).
=====================  ==================================================================

Reproduce them with::

    python -m takeover.agents.build_shipped --out agents/pretrained

which trains five PPO members with ``takeover.agents.train`` on ``takeover/Plain-v1``
(``member_config``: ``NOVICE_ENV`` reward, 16 worlds, step size decaying linearly to 0;
seeds ``TRAIN_SEED0 + k``; members 0-1, the novice candidates (``CANDIDATES``: gamma 0.99
and 0.995), for 450k steps, two at a time), picks as ``novice`` the candidate that arrives
most often in plain traffic on validation seeds 150000..150199 (0.735 and 0.875: the
gamma-0.995 one), trains members 2-4 like it for 80k steps (about 45 minutes in all on 2
CPU cores shared with other work), collects its 2000 reference observations (seeds from
140000), fits the risk critics on 400 rollouts of ``takeover/Highway-v1`` (seeds from
160000), and measures every agent on 200 held-out seeds per scenario (from 1_000_000, the
numbers in each manifest's ``metrics``: arrival = success, collision, stopped, mean speed;
for the ensembles also ``disagreement_auroc_4s``, per hazard and pooled with
episode-cluster bootstrap CIs).
Every training and validation seed lies in the training block 100000..199999.
``--acceptance`` measures the issue-10 table (reference drivers and the novice) on the
held-out seeds.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

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
NOVICE_ENV: dict[str, Any] = {"reward_collision": -100.0, "reward_offroad": -100.0,
                              "reward_stopped": -150.0}
"""The novice's training reward (the env's defaults otherwise). Measured on validation seeds
150000..150099, the v1 novice trained with only crash = -50 failed plain traffic in 20 of 100
episodes, every one a collision (never a timeout nor a standstill): 19 of 20 rear-ended a
slower leader in its own lane at 3-10 m/s closing speed, because the speed reward it had
collected outweighed the crash. So a crash costs -100 (2.5x all the progress and arrival
reward of a route) and a standstill -150, above the crash, so that a driver that learns
caution does not learn that stopping is safe. (Also charging tailgating at 2 per step under
1 s of headway, 4x the env's 0.5, overshot on validation seeds: 52-77% arrived, the rest
mostly timeouts at 14-17 m/s.)"""
CANDIDATES: tuple[dict[str, Any], ...] = ({}, {"gamma": 0.995})
"""TrainConfig overrides of the novice candidates (member k < len trains with entry k); the
other PPO-ensemble members train like the winner. gamma 0.995 looks 20 s ahead instead of
10 s: the arrival bonus at the route's end (15-20 s away at the start) and a crash a few
seconds out weigh more against the speed reward of the next seconds."""


def member_config(k: int, steps: int, work: Path, variant: dict | None = None):
    """The TrainConfig of ensemble member ``k`` (member 0 is the novice) with the
    ``CANDIDATES`` entry ``variant`` (default: candidate ``k``'s, else none)."""
    from takeover.agents.train import TrainConfig

    if variant is None:
        variant = CANDIDATES[k] if k < len(CANDIDATES) else {}
    return TrainConfig(**{
        "env_id": "takeover/Plain-v1", "action_type": "discrete", "seed": TRAIN_SEED0 + k,
        "total_timesteps": steps, "out": str(work / f"member{k}"), "tensorboard": False,
        "reference_obs": 0, "lr_schedule": "linear", "n_envs": 16, "n_steps": 128,
        "env": dict(NOVICE_ENV), **variant})


def _train_member(args: tuple[int, int, Path, dict | None]) -> str:
    import torch

    from takeover.agents.train import train

    torch.set_num_threads(1)
    k, steps, work, variant = args
    return str(train(member_config(k, steps, work, variant)))


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


def build(out: Path, *, steps: int = 450_000, members: int = 5, candidates: int = 2,
          ensemble_steps: int = 80_000, risk_episodes: int = 400, risk_epochs: int = 20,
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

    def train_all(jobs_: list[tuple[int, int, Path, dict | None]]) -> None:
        todo = [j for j in jobs_
                if not (tmp / f"member{j[0]}" / "checkpoint" / "manifest.json").is_file()]
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            for path in pool.map(_train_member, todo):
                print(f"trained {path}", flush=True)

    train_all([(k, steps, tmp, None) for k in range(candidates)])
    # model selection on validation plain-traffic seeds: the novice is the candidate that
    # arrives most often; it becomes member 0 of the ensemble, the others train like it
    val = [evaluate(load_checkpoint(tmp / f"member{k}" / "checkpoint"), ["takeover/Plain-v1"],
                    n_seeds=200, seed0=VALIDATION_SEED0)["takeover/Plain-v1"]["success"].mean
           for k in range(candidates)]
    best = int(np.argmax(val))
    print("validation plain success per candidate:", np.round(val, 3), "-> novice =", best)
    variant = CANDIDATES[best] if best < len(CANDIDATES) else {}
    train_all([(k, ensemble_steps, tmp, variant) for k in range(candidates, members)])
    members_ = [load_checkpoint(tmp / f"member{k}" / "checkpoint") for k in range(members)]
    order = [best] + [k for k in range(members) if k != best]
    singles = [m for m in members_ if isinstance(m, PolicyAgent)]
    if len(singles) != members:
        raise RuntimeError("every member checkpoint must hold one policy")
    policies = [singles[k].policy for k in order]
    meta = {k: v for k, v in members_[best].metadata.items() if k != "path"}
    meta["validation_plain_success"] = [float(v) for v in val]
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
DISAGREEMENT_HORIZON = 4.0
"""s: the ensembles' disagreement is scored for "the agent alone fails within 4 s", the
human-matched takeover horizon of the measurement reports."""


def disagreement(probs: np.ndarray) -> np.ndarray:
    """``(N, K, n)`` member action distributions -> ``(N,)`` mean KL(member || mixture), the
    quantity the supervisor's ``ensemble`` estimator reads
    (``supervisor.estimators.ensemble_kl``, a later layer than agents)."""
    p = np.clip(np.asarray(probs, np.float64), 1e-8, 1.0)
    mix = p.mean(axis=1, keepdims=True)
    return (p * (np.log(p) - np.log(mix))).sum(-1).mean(-1)


def disagreement_auroc(agent, env_ids: list[str], seeds: list[int], *,
                       horizon: float = DISAGREEMENT_HORIZON, reps: int = 1000,
                       seed: int = 0) -> dict[str, list[float]]:
    """AUROC of ``agent``'s ensemble disagreement for "fails (collision, off-road) within
    ``horizon`` s" over its own episodes, per env and pooled: ``{name: [auroc, lo, hi]}``,
    95% CIs from an episode-cluster bootstrap (episodes resampled within each env: the
    steps of one episode are not independent)."""
    from sklearn.metrics import roc_auc_score

    from takeover.agents.risk import failure_labels
    from takeover.agents.rollout import run_episodes

    steps = np.array([round(horizon * 10.0)])
    per: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # env -> [(scores, labels)]
    for env_id in env_ids:
        per[env_id.split("/")[1]] = [
            (disagreement(agent.act_arrays(e.obs).probs),
             failure_labels(len(cast(np.ndarray, e.obs)), e.failed, steps)[:, 0])
            for e in run_episodes(agent.predict, env_id, seeds, keep_obs=True,
                                  action_type="discrete")]

    def auc(episodes: list[tuple[np.ndarray, np.ndarray]]) -> float:
        y = np.concatenate([e[1] for e in episodes])
        if not 0 < y.sum() < len(y):
            return float("nan")
        return float(roc_auc_score(y, np.concatenate([e[0] for e in episodes])))

    rng = np.random.default_rng(seed)
    out = {}
    for name, strata in [*((k, [v]) for k, v in per.items()), ("pooled", list(per.values()))]:
        boots = [auc([g[i] for g in strata for i in rng.integers(0, len(g), len(g))])
                 for _ in range(reps)]
        lo, hi = np.nanpercentile(boots, [2.5, 97.5])
        out[name] = [round(auc([e for g in strata for e in g]), 4), round(float(lo), 4),
                     round(float(hi), 4)]
    return out


def _finish(name: str, agent, out: Path, risk_episodes: int, risk_epochs: int) -> dict:
    """Fit ``agent``'s risk critic, evaluate it, save it under ``out``; returns metrics."""
    from takeover.agents.checkpoint import save_agent
    from takeover.agents.evaluate import evaluate
    from takeover.envs import ENV_IDS

    critic, auroc = fit_critic(agent.predict, episodes=risk_episodes, seed0=RISK_SEED0,
                               epochs=risk_epochs)
    agent.risk_critic = critic
    metrics: dict = {"risk_auroc_2s": auroc}
    if len(getattr(agent, "policies", [])) > 1:
        from takeover.envs import HAZARD_IDS

        metrics["disagreement_auroc_4s"] = disagreement_auroc(
            agent, list(HAZARD_IDS), list(range(HELD_OUT_SEED, HELD_OUT_SEED + EVAL_SEEDS)))
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
            ret += cast(float, r)
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
    p.add_argument("--steps", type=int, default=450_000, help="PPO steps per novice candidate")
    p.add_argument("--ensemble-steps", type=int, default=80_000,
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
