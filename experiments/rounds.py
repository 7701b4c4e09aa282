"""The multi-round loop of interactive imitation learning (issue 6, item 5), top to bottom:

    for round in 0..R:
        evaluate the current agent on held-out seeds (supervised and alone)  -> learning curve
        if round == R: stop
        supervise N episodes per scenario with the configured gate + human -> crash-safe log
        aggregate the human-labelled steps of every round so far
        fine-tune the agent on the aggregate (HG-DAgger / ThriftyDAgger: behaviour cloning)
        validate it alone on a fixed training-stream block; unless it arrives more often
        than the best agent so far, drop this round's update (keep the best policy)

Round 0 is the shipped agent. Every round is evaluated on the same held-out seeds (so the
curve compares policies, not luck), and training episodes use their own seed stream per
round, disjoint from both evaluation streams. Each ensemble member is fine-tuned with its own
seed on the same aggregate, so the members stay distinct and the ensemble's disagreement
stays meaningful.

Why validate: on the v2 world the default run's HG-DAgger update lowered agent-alone
arrival on every fine-tuning seed (session 3, v1: 0.17 -> 0.10 / 0.03 / 0.02 after two
rounds). DAgger's guarantee is for the best policy of the sequence, not the last (Ross et
al. 2011, and the HG-DAgger / ThriftyDAgger code keeps the best checkpoint on held-out
rollouts), so a round's update is kept only if it beats the best agent so far on a
validation block played by the agent alone: seeds of the training stream (run
``VALIDATION_RUN``), never the held-out block the curve and the report use. A tie drops
it: measured on the v2 default run (dev seeds), a round that tied on validation (0.14 vs
0.14 over 50 episodes) arrived in 0.15 of the round block against the shipped 0.19.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from takeover.agents.learners.base import intervened
from takeover.atomic import atomic_write_text
from takeover.config import HELD_OUT_SEED, ConfigError, option, validate
from takeover.experiments.config import (
    CounterfactualSection,
    EnvSection,
    ExperimentConfig,
    StatsSection,
    SupervisorSection,
    TrainSection,
)
from takeover.experiments.episodes import Condition
from takeover.experiments.metrics import METRICS
from takeover.experiments.stats import crossed_iqm_interval, iqm_interval
from takeover.records import StepRecord
from takeover.registry import closest
from takeover.types import CloningLearner

CURVE_METRICS = ("success_rate", "collision_rate", "failure_rate", "interventions_per_episode",
                 "interventions_per_km", "human_share", "context_switches_per_episode",
                 "km_per_episode")
"""The learning-curve columns (issue 6: success, collisions, interventions, human steps,
context switches; plus distance, so a policy made "safe" by crawling shows up)."""


VALIDATION_RUN = 10_000
"""Run index of the validation block in the training seed stream (collection uses the
round index, < 100)."""


def _trainable(agent: Any) -> list[Any]:
    """The modules fine-tuning changes: an ensemble's policies, an intent agent's net, a Q
    agent's networks, and the risk critic."""
    model = getattr(agent, "model", None)
    return (list(getattr(agent, "policies", [])) + [getattr(agent, "net", None)]
            + [getattr(model, "q_net", None), getattr(model, "q_net_target", None)]
            + [getattr(agent, "risk_critic", None)])


def snapshot(agent: Any) -> list[dict[str, Any]]:
    """The trainable state of ``agent`` (its policies and risk critic): what fine-tuning
    changes, to restore a round's update that lost on validation."""
    import copy

    return [copy.deepcopy(m.state_dict()) if hasattr(m, "state_dict") else {}
            for m in _trainable(agent)]


def restore(agent: Any, state: list[dict[str, Any]]) -> None:
    """Put back a :func:`snapshot` in place (the batched forward sees the new weights)."""
    for m, sd in zip(_trainable(agent), state, strict=True):
        if sd:
            m.load_state_dict(sd)


def finetune(agent: Any, episodes: list[list[StepRecord]], *, method: str, epochs: int,
             batch_size: int, lr: float, seed: int, references: list[Any] | None = None,
             anchor_weight: float = 0.0, relabel: bool = True) -> list[float]:
    """Update ``agent`` in place from every logged episode so far with the BC learner
    ``method`` (``hg-dagger`` / ``thrifty``, ``takeover.agents.learners``); returns the
    mean BC loss per epoch of the first member (empty when there is nothing to learn).

    ``references`` (one frozen policy per member, e.g. the shipped agent's) with
    ``anchor_weight > 0`` keep each member close to its reference on the agent-driven
    steps; ``relabel`` turns discrete labels into executed ones."""
    if method == "none":
        return []
    from takeover.agents.learners import LEARNERS

    anchor = list(references) if references is not None and anchor_weight > 0 else None
    learner = LEARNERS.make(method, epochs=epochs, batch_size=batch_size, lr=lr,
                            anchor_weight=anchor_weight if anchor is not None else 0.0,
                            relabel=relabel)
    if not isinstance(learner, CloningLearner):
        raise ValueError(f"train.method {method!r} does not behaviour-clone an actor-critic "
                         "agent: use 'hg-dagger' or 'thrifty' (the learning study runs the "
                         "others)")
    learner.references = anchor
    stats = learner.update(agent, episodes, seed=seed)
    return list(learner.history) if stats.get("samples") else []


def run_rounds(exp: Any, round0: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The loop above on an ``Experiment`` (``runner.py``); one row per round.

    ``round0``: another fine-tuning seed's round-0 row. Round 0 is the starting agent on the
    same held-out round seeds, whatever the fine-tuning seed, so its evaluation is taken
    from that row instead of played again (a third of each extra seed's episodes)."""
    cfg = exp.cfg
    t = cfg.train
    main = Condition("supervised", cfg.supervisor.gate, dict(cfg.supervisor.gate_kwargs))
    alone = Condition("agent_alone", None)
    logged: list[list[StepRecord]] = []
    labelled = 0
    rows: list[dict[str, Any]] = []
    human_steps_total = 0
    references = None
    if t.method != "none" and t.rounds > 0 and t.anchor_weight > 0:
        from takeover.agents.learners.hg_dagger import frozen_copy

        references = [frozen_copy(p) for p in getattr(exp.agent, "policies", [])]
    # the agent the run keeps: its round, validation success and weights
    best_round, best_success, best_state = 0, -1.0, None
    for rnd in range(t.rounds + 1):
        row: dict[str, Any] = {"round": rnd, "human_steps_total": human_steps_total,
                               "agent_round": best_round}
        for cond in (main, alone):
            keys = [f"{cond.name}.{k}" for k in CURVE_METRICS if k in METRICS]
            if rnd == 0 and round0 is not None:
                row.update({k: round0[k] for k in keys})
                continue
            res = exp.evaluate(cond, "round", episodes=cfg.eval.round_episodes,
                               log_dir=exp.run_dir / "logs" / f"round{rnd}-{cond.name}")
            m = res.metrics()
            row.update(dict(zip(keys, (m[k.split(".", 1)[1]] for k in keys), strict=True)))
        if t.method != "none" and t.validation_episodes and rnd == 0:
            best_success = _validate(exp, alone, 0)
        if rnd == t.rounds:
            rows.append(row)
            break
        if t.method != "none" and t.validation_episodes:
            best_state = snapshot(exp.agent)
        collected: list[StepRecord] = []
        exp.evaluate(main, "train", episodes=t.episodes_per_round, runs=[rnd],
                     log_dir=exp.run_dir / "logs" / f"train-round{rnd}", keep=collected)
        by_episode: dict[str, list[StepRecord]] = {}
        for r in collected:
            by_episode.setdefault(r.episode, []).append(r)
        logged += list(by_episode.values())
        new = sum(map(intervened, collected))
        human_steps_total += new
        labelled += new
        losses = finetune(exp.agent, logged, method=t.method, epochs=t.epochs,
                          batch_size=t.batch_size, lr=t.lr, seed=cfg.seed * 1000 + rnd,
                          references=references, anchor_weight=t.anchor_weight,
                          relabel=t.relabel)
        row.update({"new_human_steps": new, "aggregate_size": labelled,
                    "bc_loss_first": losses[0] if losses else None,
                    "bc_loss_last": losses[-1] if losses else None})
        if losses and t.validation_episodes:
            success = _validate(exp, alone, rnd + 1)
            kept = success > best_success  # a tie is no evidence the update helped
            row.update({"validation_success": success, "validation_best": best_success,
                        "kept": kept})
            if kept:
                best_round, best_success = rnd + 1, success
            elif best_state is not None:
                restore(exp.agent, best_state)
        rows.append(row)
    return rows


def _validate(exp: Any, alone: Condition, rnd: int) -> float:
    """Agent-alone success (arrival) on the validation block: ``train.validation_episodes``
    per scenario, the same seeds every round (training stream, run ``VALIDATION_RUN``)."""
    res = exp.evaluate(alone, "train", episodes=exp.cfg.train.validation_episodes,
                       runs=[VALIDATION_RUN], log_dir=exp.run_dir / "logs" / f"validate-round{rnd}")
    return float(res.metrics()["success_rate"])


# ======================================================================== learning experiment
# ``takeover run learning``: every method of ``takeover.agents.learners`` through the same
# rounds, compared on agent-alone arrival per human-minute.
#
#   for method x human x fine-tuning seed:
#       agent = a fresh starting agent (PPO novice for BC methods, the DQN for pvp / rlif)
#       for round in 0..R:
#           evaluate agent alone on held-out seeds (1_000_000 + ...), hazards and plain traffic
#           if round == R: stop
#           supervise N episodes per scenario (training seeds 100_000 + ...) -> crash-safe log
#           learner.update(agent, read_episodes(every round's log so far))
#
# Held-out seeds are the same for every method, human, fine-tuning seed and round, so
# differences are paired. Human-minutes are simulated time under human control.

LEARNING_METHODS = ("hg-dagger", "thrifty", "pvp", "rlif")
TRAIN_SEED = 100_000
"""First seed of supervised collection (the training block 100_000..199_999)."""


def _learner_names() -> list[str] | None:
    try:
        from takeover.agents.learners import LEARNERS
    except ImportError:
        return None
    return LEARNERS.names()


@dataclass(frozen=True)
class LearningSection:
    """The comparison grid and its budget."""

    methods: tuple[str, ...] = option(LEARNING_METHODS, "learners to compare "
                                      "(takeover.agents.learners.LEARNERS names)")
    humans: tuple[str, ...] = option(("average", "novice"), "scripted humans, each its own "
                                     "arm (the second is the weaker one)")
    finetune_seeds: int = option(3, "independent fine-tuning seeds per method and human "
                                 "(the runs of the CIs)", range=(1, 9))
    rounds: int = option(3, "fine-tuning rounds", range=(0, 9))
    episodes_per_round: int = option(4, "supervised episodes per scenario per round",
                                     range=(1, 30))
    eval_episodes: int = option(20, "held-out agent-alone episodes per scenario per round",
                                range=(1, 10_000))
    plain_episodes: int = option(10, "held-out plain-traffic episodes per round (the "
                                 "'keeps ordinary driving' check; 0 = off)", range=(0, 10_000))
    bc_agent: str = option("novice", "starting agent of the behaviour-cloning learners "
                           "(shipped name or checkpoint folder)")
    q_agent: str = option("agents/pretrained/novice-dqn", "starting DQN of pvp / rlif "
                          "(a takeover.agents.learners.offpolicy checkpoint folder)")
    intent_agent: str = option("agents/pretrained/novice-intent", "starting agent of "
                               "intent-dagger (a takeover.agents.intent checkpoint folder; "
                               "its arms observe the lane rows, env.observe_lanes)")
    learner_kwargs: dict[str, Any] = option(None, "per method, keyword arguments of its "
                                            "learner, e.g. {pvp: {gradient_steps: 300}}",
                                            factory=dict)
    gates: dict[str, Any] = option(None, "per method, a gate override {gate: NAME, "
                                   "gate_kwargs: {...}} (default: supervisor.gate)",
                                   factory=dict)
    eval_seed: int = option(HELD_OUT_SEED, "first held-out evaluation seed (scenario k "
                            "uses eval_seed + 10_000 k + i)", range=(0, 2**31 - 1_000_000))
    train_seed: int = option(TRAIN_SEED, "first supervised-collection seed",
                             range=(0, 2**31 - 1_000_000))
    target_arrival: float = option(0.5, "arrival rate whose human-minutes the report "
                                   "tabulates", range=(0.0, 1.0))
    teacher_alone: bool = option(True, "also measure each human driving alone on the "
                                 "held-out hazard seeds")
    teacher_clone: int = option(0, "supervised episodes per scenario of each human driving "
                                "every step (gate always) that a copy of bc_agent clones "
                                "(plain BC, clone_epochs), then driving alone on the held-out "
                                "seeds: how much of the teacher cloning can recover at best "
                                "(0 = off)", range=(0, 30))
    clone_epochs: int = option(30, "BC epochs of the teacher clone", range=(1, 1000))
    keep_best: bool = option(True, "keep a round's update only if the agent alone then "
                             "arrives more often on the validation block (training-stream "
                             "seeds, never the evaluation ones) than the best agent so far "
                             "(DAgger's best policy of the sequence; a tie drops it)")
    validation_episodes: int = option(20, "agent-alone validation episodes per scenario "
                                      "(and in plain traffic) per round (keep_best)",
                                      range=(1, 1000))
    fresh_validation: bool = option(False, "keep_best compares the update with the agent it "
                                    "would replace on a fresh validation block each round "
                                    "(both measured on it: a paired test) instead of with the "
                                    "best score so far on one fixed block, which the "
                                    "selection itself inflated (the winner's curse)")
    keep_plain: float = option(0.95, "keep_best also needs plain-traffic validation arrival "
                               "of at least this (or of the starting agent's, if lower): an "
                               "update that buys hazard arrival with plain driving is put "
                               "back", range=(0.0, 1.0))
    processes: int = option(2, "arms run at once, each in a forked worker (1: in this "
                            "process); the rows do not depend on it", range=(1, 64))
    disagreement_horizon: float = option(2.0, "s; an ensemble's disagreement is scored "
                                         "against failure within this horizon", range=(0.1, 30))

    def __post_init__(self) -> None:
        validate(self, "learning")
        for key in ("methods", "humans"):
            vals = getattr(self, key)
            if not vals or len(set(vals)) != len(vals):
                raise ConfigError(f"learning.{key} must list distinct values, got {list(vals)}")
        names = _learner_names()
        for m in self.methods:
            if names is not None and m not in names:
                raise ConfigError(f"learning.methods: unknown learner {m!r}."
                                  f"{closest(m, names)} Valid: {', '.join(names)}")
        for key in ("learner_kwargs", "gates"):  # entries of unselected methods are kept
            for m in getattr(self, key):
                if m not in (names or self.methods):
                    raise ConfigError(f"learning.{key}.{m}: unknown learner {m!r}."
                                      f"{closest(m, names or list(self.methods))}")
        if self.fresh_validation and (self.rounds + 1) * self.validation_episodes > 1000:
            raise ConfigError(
                f"learning.fresh_validation: (rounds + 1) x validation_episodes = "
                f"{(self.rounds + 1) * self.validation_episodes} fresh seeds per scenario, at "
                f"most 1000 fit the validation block: lower rounds or validation_episodes")


@dataclass(frozen=True)
class LearningConfig:
    """A ``takeover run`` config with a ``learning:`` section (see ``configs/learning.yaml``)."""

    name: str = option("learning", "run name (the run folder's prefix)")
    seed: int = option(0, "base seed of the learner updates", range=(0, 2**31 - 1))
    env: EnvSection = field(default_factory=EnvSection, metadata={"help": "worlds"})
    supervisor: SupervisorSection = field(default_factory=SupervisorSection,
                                          metadata={"help": "supervision during collection"})
    learning: LearningSection = field(default_factory=LearningSection,
                                      metadata={"help": "methods, humans, budget"})
    stats: StatsSection = field(default_factory=StatsSection, metadata={"help": "CIs"})
    figures: bool = option(True, "draw the report's figure")

    def __post_init__(self) -> None:
        validate(self)
        if not self.name or any(c in self.name for c in "/\\"):
            raise ConfigError(f"name={self.name!r} must be non-empty and contain no slashes")
        if len(self.env.scenarios) > 10:
            raise ConfigError("env.scenarios: at most 10 (the training seed layout)")


def is_learning_config(config: str | Path | None) -> bool:
    """Does this ``takeover run`` argument name a config with a ``learning:`` section?"""
    from takeover.config import load_yaml
    from takeover.experiments.config import resolve_path

    try:
        data = load_yaml(resolve_path(config))
    except ConfigError:  # the experiment path reports a bad file
        return False
    return isinstance(data, dict) and "learning" in data


def load_learning_config(config: str | Path,
                         overrides: Sequence[str] = ()) -> LearningConfig:
    from takeover.config import apply_overrides, from_dict, load_yaml
    from takeover.experiments.config import resolve_path

    data = apply_overrides(load_yaml(resolve_path(config)), list(overrides))
    return from_dict(LearningConfig, data)


def _experiment_config(cfg: LearningConfig, human: str, method: str) -> ExperimentConfig:
    """The per-arm ``ExperimentConfig`` the episode runner (``episodes.Rollouts``) needs."""
    sup = replace(cfg.supervisor, human=human)
    gate = cfg.learning.gates.get(method)
    if gate:
        sup = replace(sup, gate=gate["gate"], gate_kwargs=dict(gate.get("gate_kwargs", {})))
    return ExperimentConfig(name=cfg.name, seed=cfg.seed, env=arm_env(cfg, method),
                            supervisor=sup,
                            train=TrainSection(method="none", rounds=0),
                            counterfactual=CounterfactualSection(enabled=False))


def _agent_kind(method: str) -> str:
    from takeover.agents.learners import LEARNERS

    return LEARNERS.make(method).agent_kind  # building a learner does no work


def arm_env(cfg: LearningConfig, method: str) -> EnvSection:
    """The worlds of one method's arms: the configured ones, with the lane rows observed
    for an intent agent (``observe_lanes`` changes what is seen, not the traffic or the
    hazards: every method drives the same episodes for the same seeds)."""
    if method in (_learner_names() or ()) and _agent_kind(method) == "intent" \
            and not cfg.env.observe_lanes:
        return replace(cfg.env, observe_lanes=True)
    return cfg.env


def starting_agent(cfg: LearningConfig, method: str, env: Any) -> Any:
    """A fresh copy of the method's starting agent (loaded anew for every arm)."""
    kind = _agent_kind(method)
    if kind == "intent":
        from takeover.agents.intent import load_intent_agent

        return load_intent_agent(resolve_agent_path(cfg.learning.intent_agent))
    if kind == "q":
        from takeover.agents.learners.offpolicy import load_q_agent

        return load_q_agent(resolve_agent_path(cfg.learning.q_agent))
    from takeover.agents import load_agent

    return load_agent(cfg.learning.bc_agent, env=env)


def resolve_agent_path(name: str) -> Path:
    """A relative checkpoint path is taken from the current folder, else the package root."""
    p = Path(name)
    if p.is_absolute() or p.exists():
        return p
    return Path(__file__).resolve().parents[1] / p


def held_out_seeds(cfg: LearningConfig) -> dict[str, list[int]]:
    """Evaluation seeds per scenario (and ``plain``): ``eval_seed + 10_000 k + i``
    (``eval_seed`` = 1_000_000, the held-out block, unless a test moves it)."""
    lc = cfg.learning
    out = {s: [lc.eval_seed + 10_000 * k + i for i in range(lc.eval_episodes)]
           for k, s in enumerate(cfg.env.scenarios)}
    if lc.plain_episodes:
        out["plain"] = [lc.eval_seed + 900_000 + i for i in range(lc.plain_episodes)]
    return out


def train_seed(base: int, ft_seed: int, rnd: int, scenario_index: int, episode: int) -> int:
    """Collection seed ``base + 3000 ft + 300 rnd + 30 k + i``: disjoint across
    fine-tuning seeds, rounds (< 10), scenarios (< 10) and episodes (< 30), which the
    config's ranges guarantee; within 30_000 of ``base`` (the training block from
    100_000 by default)."""
    return base + 3000 * ft_seed + 300 * rnd + 30 * scenario_index + episode


VALIDATION_SEED = 50_000
"""Offset from ``train_seed`` of the keep-best validation block: scenario ``k`` uses
``train_seed + VALIDATION_SEED + 1000 k + i`` (past the collection and clone seeds)."""


def validation_seeds(cfg: LearningConfig, block: int = 0) -> dict[str, list[int]]:
    """Keep-best validation seeds per scenario and ``plain``: ``train_seed +
    VALIDATION_SEED + 1000 k + n b + i`` for scenario ``k`` (< 10) in block ``b`` of ``n``
    = ``validation_episodes`` (``fresh_validation`` uses block ``round + 1``; the config
    keeps every block under 1000), plain traffic after them at ``+ 10_000 + n b + i``."""
    lc = cfg.learning
    base = lc.train_seed + VALIDATION_SEED + block * lc.validation_episodes
    out = {s: [base + 1000 * k + i for i in range(lc.validation_episodes)]
           for k, s in enumerate(cfg.env.scenarios)}
    out["plain"] = [base + 10_000 + i for i in range(lc.validation_episodes)]
    return out


@dataclass(frozen=True)
class Validation:
    """Agent-alone arrival on the keep-best validation block: the hazard scenarios pooled,
    and plain traffic."""

    hazard: float
    plain: float

    def beats(self, best: Validation, start: Validation, keep_plain: float) -> bool:
        """More hazard arrivals than ``best``, plain traffic no worse than ``keep_plain``
        (or than ``start``'s, if that is lower)."""
        return self.hazard > best.hazard and self.plain >= min(keep_plain, start.plain)


def validation_score(agent: Any, cfg: LearningConfig, env: EnvSection,
                     block: int = 0) -> Validation:
    """Agent-alone arrival on validation block ``block`` (``validation_seeds``)."""
    from takeover.agents.rollout import run_episodes
    from takeover.experiments.episodes import SCENARIO_IDS

    kw = env.env_kwargs()
    arrived = {scen: [e.arrived for e in run_episodes(
        agent.predict, SCENARIO_IDS["none" if scen == "plain" else scen], sd, **kw)]
        for scen, sd in validation_seeds(cfg, block).items()}
    plain = arrived.pop("plain")
    return Validation(float(np.mean([a for v in arrived.values() for a in v])),
                      float(np.mean(plain)))


def evaluate_alone(agent: Any, cfg: LearningConfig, seeds: Mapping[str, list[int]],
                   horizon: float, env: EnvSection | None = None) -> dict[str, Any]:
    """Agent-alone held-out evaluation: arrival and safety per scenario, and for an
    ensemble the AUROC of its disagreement for failure within ``horizon`` s."""
    from takeover.agents.rollout import run_episodes
    from takeover.agents.scoring import disagreement_auroc
    from takeover.experiments.episodes import SCENARIO_IDS

    kw = (env or cfg.env).env_kwargs()
    out: dict[str, Any] = {"arrived": {}, "safe": {}, "km": {}, "outcomes": {}}
    kept: list[Any] = []
    ensemble = (len(getattr(agent, "policies", [])) > 1
                or getattr(getattr(agent, "spec", None), "members", 1) > 1)  # intent agent
    for scen, sd in seeds.items():
        env_id = SCENARIO_IDS["none" if scen == "plain" else scen]
        eps = run_episodes(agent.predict, env_id, sd, keep_obs=ensemble and scen != "plain",
                           **kw)
        out["arrived"][scen] = float(np.mean([e.arrived for e in eps]))
        out["outcomes"][scen] = [int(e.arrived) for e in eps]  # per seed: the crossed CIs
        out["safe"][scen] = float(np.mean([not e.failed for e in eps]))
        out["km"][scen] = float(np.mean([e.distance for e in eps]) / 1000.0)
        if ensemble and scen != "plain":
            kept += eps
    if kept:  # episodes resampled within each scenario
        iv = disagreement_auroc(agent, kept, horizon, reps=cfg.stats.bootstrap,
                                confidence=cfg.stats.confidence, seed=cfg.seed)["auroc"]
        out["disagreement_auroc"] = {"auroc": iv.value, "lo": iv.lo, "hi": iv.hi}
    return out


def run_arm(cfg: LearningConfig, method: str, human: str, ft_seed: int, run_dir: Path,
            seeds: Mapping[str, list[int]], progress: Any = None) -> list[dict[str, Any]]:
    """One method x human x fine-tuning seed: the round loop; one row per round."""
    from takeover.agents.learners import LEARNERS, human_seconds, read_episodes
    from takeover.experiments.episodes import EnvCache, Rollouts
    from takeover.logio import LogWriter
    from takeover.records import RunMeta

    lc = cfg.learning
    exp_cfg = _experiment_config(cfg, human, method)
    envs = EnvCache(exp_cfg)
    try:
        agent = starting_agent(cfg, method, envs.get(cfg.env.scenarios[0]))
        learner = LEARNERS.make(method, **dict(lc.learner_kwargs.get(method, {})))
        learner.start(agent)
        rollouts = Rollouts(exp_cfg, envs, agent)
        cond = Condition("supervised", exp_cfg.supervisor.gate,
                         dict(exp_cfg.supervisor.gate_kwargs))
        logs: list[Path] = []
        # (fresh_validation measures the agent an update would replace on each round's block)
        start = best = (None if not lc.keep_best else Validation(0.0, 0.0)
                        if lc.fresh_validation else validation_score(agent, cfg, exp_cfg.env))
        best_state = snapshot(agent) if lc.keep_best else None
        minutes = 0.0
        interventions = 0
        rows = []
        for rnd in range(lc.rounds + 1):
            ev = evaluate_alone(agent, cfg, seeds, lc.disagreement_horizon, exp_cfg.env)
            row = {"method": method, "human": human, "ft_seed": ft_seed, "round": rnd,
                   "human_minutes": minutes, "interventions": interventions, **ev}
            rows.append(row)
            if progress:
                progress(f"{method} {human} ft{ft_seed} round {rnd}")
            if rnd == lc.rounds:
                break
            log_dir = run_dir / "logs" / method / human / f"ft{ft_seed}" / f"round{rnd}"
            meta = RunMeta(run_id=f"{cfg.name}-{method}-{human}-ft{ft_seed}-r{rnd}",
                           seed=cfg.seed, config={"method": method, "human": human})
            with LogWriter(log_dir, meta) as w:
                for k, scen in enumerate(cfg.env.scenarios):
                    n = range(lc.episodes_per_round)  # one batch: the same records as one by one
                    batch = rollouts.run_batch(
                        cond, scen, [train_seed(lc.train_seed, ft_seed, rnd, k, i) for i in n],
                        [f"{scen}-r{rnd}-e{i:02d}" for i in n])
                    w.write_episodes([(records[0].episode, records) for records, _ in batch])
            logs.append(log_dir)
            new = read_episodes(log_dir)
            minutes += human_seconds(new) / 60.0
            interventions += sum(
                1 for e in new for a, b in zip(e, e[1:], strict=False)
                if a.controller != "human" and b.controller == "human")
            stats = dict(learner.update(agent, read_episodes(*logs),
                                        seed=cfg.seed * 1000 + ft_seed * 100 + rnd))
            if best_state is not None and start is not None and best is not None:
                if lc.fresh_validation:  # both on this round's fresh block: paired
                    update = snapshot(agent)
                    restore(agent, best_state)
                    best = start = validation_score(agent, cfg, exp_cfg.env, rnd + 1)
                    restore(agent, update)
                score = validation_score(agent, cfg, exp_cfg.env,
                                         rnd + 1 if lc.fresh_validation else 0)
                kept = score.beats(best, start, lc.keep_plain)
                stats.update(validation=score.hazard, validation_plain=score.plain, kept=kept)
                if lc.fresh_validation:
                    stats.update(incumbent=best.hazard, incumbent_plain=best.plain)
                if kept:
                    best, best_state = score, snapshot(agent)
                else:
                    restore(agent, best_state)
            row["update"] = stats
        return rows
    finally:
        envs.close()


def teacher_alone(cfg: LearningConfig, human: str,
                  seeds: Mapping[str, list[int]]) -> dict[str, dict[str, float]]:
    """How scripted teacher ``human`` drives on its own, on the held-out hazard seeds: the
    ``always`` gate asks it at once and it keeps control (the bc agent drives only the
    reaction time before the takeover): a learner cannot be expected to arrive more often
    than the teacher it imitates (:func:`teacher_clone` measures how much of it cloning
    recovers). ``{"arrived": {scenario: rate}, "collision": ..., "human_share": ...}``."""
    from takeover.experiments.episodes import EnvCache, Rollouts

    exp_cfg = _experiment_config(cfg, human, "teacher")
    envs = EnvCache(exp_cfg)
    out: dict[str, dict[str, float]] = {"arrived": {}, "collision": {}, "human_share": {}}
    try:
        agent = starting_agent(cfg, "hg-dagger", envs.get(cfg.env.scenarios[0]))
        rollouts = Rollouts(exp_cfg, envs, agent)
        cond = Condition("teacher_alone", "always")
        for scen in cfg.env.scenarios:
            sd = seeds[scen]
            eps = [r for r, _ in rollouts.run_batch(cond, scen, sd, [f"{scen}-{s}" for s in sd])]
            out["arrived"][scen] = float(np.mean([e[-1].outcome == "arrived" for e in eps]))
            out["collision"][scen] = float(np.mean([e[-1].outcome == "collision" for e in eps]))
            out["human_share"][scen] = float(np.mean([np.mean([r.controller == "human"
                                                               for r in e]) for e in eps]))
    finally:
        envs.close()
    return out


CLONE_SEED = 28_000
"""Offset from ``train_seed`` of the teacher-clone demonstrations (``train_seed`` stays
below 27_100 for every fine-tuning seed, round, scenario and episode)."""


def teacher_clone(cfg: LearningConfig, human: str, seeds: Mapping[str, list[int]],
                  run_dir: Path) -> dict[str, dict[str, float]]:
    """Behaviour cloning at its best: ``human`` drives every step (gate ``always``) of
    ``teacher_clone`` training episodes per scenario, logged; a fresh copy of the bc agent
    is fitted to every labelled step (HG-DAgger's BC, no anchor, raw labels) and drives
    alone on the held-out seeds (``seeds``, plain traffic included). DAgger-family learners
    see fewer and later labels, so they rarely beat this; measured on the v2 world (dev
    seeds, expert, 30 stalled-car episodes) it halves plain arrival (1.0 -> 0.50).
    ``{"arrived": {scenario: rate}, "safe": ..., "labels": n}``."""
    from takeover.agents.learners import LEARNERS, read_episodes
    from takeover.experiments.episodes import EnvCache, Rollouts
    from takeover.logio import LogWriter
    from takeover.records import RunMeta

    lc = cfg.learning
    exp_cfg = _experiment_config(cfg, human, "teacher")
    envs = EnvCache(exp_cfg)
    log_dir = run_dir / "logs" / "teacher-clone" / human
    try:
        agent = starting_agent(cfg, "hg-dagger", envs.get(cfg.env.scenarios[0]))
        rollouts = Rollouts(exp_cfg, envs, agent)
        cond = Condition("teacher_clone", "always")
        meta = RunMeta(run_id=f"{cfg.name}-teacher-clone-{human}", seed=cfg.seed,
                       config={"human": human})
        with LogWriter(log_dir, meta) as w:
            for k, scen in enumerate(cfg.env.scenarios):
                n = range(lc.teacher_clone)
                batch = rollouts.run_batch(
                    cond, scen, [lc.train_seed + CLONE_SEED + 30 * k + i for i in n],
                    [f"{scen}-clone-e{i:02d}" for i in n])
                w.write_episodes([(records[0].episode, records) for records, _ in batch])
        learner = LEARNERS.make("hg-dagger", epochs=lc.clone_epochs, anchor_weight=0.0,
                                relabel=False)
        learner.start(agent)
        stats = learner.update(agent, read_episodes(log_dir), seed=cfg.seed)
        ev = evaluate_alone(agent, cfg, seeds, lc.disagreement_horizon)
    finally:
        envs.close()
    return {"arrived": ev["arrived"], "safe": ev["safe"],
            "labels": float(stats.get("samples", 0.0))}


def _pooled(row: Mapping[str, Any], key: str, scenarios: Sequence[str]) -> float:
    return float(np.mean([row[key][s] for s in scenarios]))


def summarize_learning(cfg: LearningConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method x human x round: arrival / safety on the hazards, plain arrival and
    human-minutes, as IQM with stratified bootstrap CIs over (fine-tuning seeds x
    scenarios); the gain over round 0 paired by seed and scenario; human-minutes to the
    target arrival rate."""
    lc, scen = cfg.learning, list(cfg.env.scenarios)
    kw: dict[str, Any] = {"reps": cfg.stats.bootstrap, "confidence": cfg.stats.confidence,
                          "seed": cfg.seed}
    curves: dict[str, Any] = {}
    for method in lc.methods:
        for human in lc.humans:
            arm = [r for r in rows if r["method"] == method and r["human"] == human]
            by_round: list[dict[str, Any]] = []
            for rnd in range(lc.rounds + 1):
                rr = sorted((r for r in arm if r["round"] == rnd), key=lambda r: r["ft_seed"])
                if not rr:
                    continue
                cell = {k: np.array([[r[k][s] for s in scen] for r in rr])
                        for k in ("arrived", "safe", "km")}
                r0 = sorted((r for r in arm if r["round"] == 0), key=lambda r: r["ft_seed"])
                gain = cell["arrived"] - np.array([[r["arrived"][s] for s in scen] for r in r0])
                arrived = iqm_interval(cell["arrived"], **kw)
                gained = iqm_interval(gain, **kw)
                if all("outcomes" in r for r in rr + r0):  # the evaluation block redrawn too
                    ep = np.array([[r["outcomes"][s] for s in scen] for r in rr], float)
                    ep0 = np.array([[r["outcomes"][s] for s in scen] for r in r0], float)
                    arrived = crossed_iqm_interval(ep, **kw)
                    gained = crossed_iqm_interval(ep - ep0, **kw)
                entry: dict[str, Any] = {
                    "round": rnd,
                    "arrived": arrived.as_dict(),
                    "safe": iqm_interval(cell["safe"], **kw).as_dict(),
                    "km": iqm_interval(cell["km"], **kw).as_dict(),
                    "gain": gained.as_dict(),
                    "human_minutes": float(np.mean([r["human_minutes"] for r in rr])),
                    "interventions": float(np.mean([r["interventions"] for r in rr])),
                    "arrived_mean": float(cell["arrived"].mean()),
                }
                if all("plain" in r["arrived"] for r in rr):
                    plain = np.array([[r["arrived"]["plain"]] for r in rr])
                    pl = iqm_interval(plain, **kw)
                    if all("plain" in r.get("outcomes", {}) for r in rr):  # block redrawn
                        pl = crossed_iqm_interval(
                            np.array([[r["outcomes"]["plain"]] for r in rr], float), **kw)
                    entry["plain_arrived"] = pl.as_dict()
                aucs = [r["disagreement_auroc"]["auroc"] for r in rr
                        if "disagreement_auroc" in r]
                if aucs:
                    entry["disagreement_auroc"] = [r["disagreement_auroc"] for r in rr]
                by_round.append(entry)
            reached = [e for e in by_round if e["arrived_mean"] >= lc.target_arrival]
            curves[f"{method}/{human}"] = {
                "method": method, "human": human, "rounds": by_round,
                "minutes_to_target": reached[0]["human_minutes"] if reached else None,
            }
    return {"target_arrival": lc.target_arrival, "curves": curves}


def plot_arrival_vs_minutes(summary: Mapping[str, Any], path: Path) -> Path:
    """Agent-alone arrival (top) and safety (no collision or road departure, bottom) on the
    hazards, IQM with 95% CIs over fine-tuning seeds x scenarios, against cumulative
    human-minutes: one line per method, one column per human. Both, because a policy can
    buy safety by stopping (arrival falls) or arrival by risk (safety falls)."""
    from matplotlib.figure import Figure

    from takeover.experiments.plots import _save

    curves = summary["curves"]
    humans = list(dict.fromkeys(c["human"] for c in curves.values()))
    fig = Figure(figsize=(4.5 * len(humans), 6.2))
    axes = fig.subplots(2, len(humans), squeeze=False, sharex="col")
    for col, human in enumerate(humans):
        for row, (key, label) in enumerate((("arrived", "agent-alone arrival"),
                                            ("safe", "agent-alone safety"))):
            ax = axes[row, col]
            for c in curves.values():
                if c["human"] != human:
                    continue
                x = [e["human_minutes"] for e in c["rounds"]]
                y = np.array([e[key]["iqm"] for e in c["rounds"]], float)
                lo = np.array([e[key]["lo"] for e in c["rounds"]], float)
                hi = np.array([e[key]["hi"] for e in c["rounds"]], float)
                ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", ms=4, capsize=3,
                            label=c["method"])
            if key == "arrived":
                ax.axhline(summary["target_arrival"], color="grey", ls=":", lw=1)
                ax.set_title(f"human: {human}", fontsize=9)
            else:
                ax.set_xlabel("cumulative human-minutes")
            ax.set_ylabel(label)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def write_learning_report(run_dir: Path, cfg: LearningConfig, summary: Mapping[str, Any],
                          seconds: float) -> Path:
    from takeover.experiments.report import Block, fmt, fmt_ci, to_html, to_markdown

    lc = cfg.learning
    blocks = [
        Block("h1", f"Learning from interventions: {cfg.name}"),
        Block("p", f"Methods {', '.join(lc.methods)}; humans {', '.join(lc.humans)}; "
                   f"{lc.finetune_seeds} fine-tuning seeds; {lc.rounds} rounds of "
                   f"{lc.episodes_per_round} supervised episodes per scenario "
                   f"({', '.join(cfg.env.scenarios)}), gate `{cfg.supervisor.gate}`. After "
                   f"every round the agent drives alone on the same evaluation seeds "
                   f"({lc.eval_seed} upward, "
                   f"{'the held-out block' if lc.eval_seed >= HELD_OUT_SEED else 'development seeds, not the held-out block'}"
                   f": {lc.eval_episodes} per scenario, "
                   f"{lc.plain_episodes} in plain traffic). Values: IQM "
                   f"[{cfg.stats.confidence:.0%} stratified bootstrap CI] over fine-tuning "
                   f"seeds x scenarios; arrival, gains and plain arrival also redraw the "
                   f"shared evaluation episodes (one draw for every seed). Human-minutes: simulated time under human control. "
                   f"Arrival: the world's `arrived` outcome where it reports one, else "
                   f"arrived-like (no collision / off-road, final speed > 5 m/s, >= 300 m "
                   f"driven). Wall time {seconds / 60:.1f} min."),
        Block("h2", f"Human-minutes to reach arrival {lc.target_arrival:.2f}"),
        Block("table", (["method", "human", "human-minutes", "final arrival",
                         "gain over round 0 (paired)"],
                        [[c["method"], c["human"], fmt(c["minutes_to_target"]),
                          fmt_ci(c["rounds"][-1]["arrived"]), fmt_ci(c["rounds"][-1]["gain"])]
                         for c in summary["curves"].values()])),
        *([Block("h2", "The teachers driving alone (gate `always`)"),
           Block("p", "Each scripted human asked at once and keeping control, on the same "
                      "held-out hazard seeds: what a learner imitating it can reach at most."),
           Block("table", (["human", "scenario", "arrival", "collision", "human share"],
                           [[h, sc, fmt(t["arrived"][sc]), fmt(t["collision"][sc]),
                             fmt(t["human_share"][sc])]
                            for h, t in summary["teachers"].items() for sc in t["arrived"]]))]
          if "teachers" in summary else []),
        *([Block("h2", "Cloning the teachers' full demonstrations"),
           Block("p", f"Each human drove every step of {lc.teacher_clone} training episodes "
                      f"per scenario; a copy of `{lc.bc_agent}` was fitted to all of them "
                      f"({lc.clone_epochs} epochs of BC) and drove alone on the held-out "
                      "seeds. Round 0 of the rounds table is the agent before cloning. "
                      "Where the clone arrives less often than round 0, the teacher's "
                      "labels do not say what to do in the agent's observation, and no "
                      "cloning learner can be expected to gain."),
           Block("table", (["human", "labels", *[f"arrival: {sc}" for sc in
                                                 next(iter(summary["clones"].values()))
                                                 ["arrived"]]],
                           [[h, str(int(c["labels"])), *[fmt(v) for v in c["arrived"].values()]]
                            for h, c in summary["clones"].items()]))]
          if summary.get("clones") else []),
        Block("h2", "Rounds"),
        Block("table", (["method", "human", "round", "human-min", "arrival", "safety",
                         "plain arrival", "km/episode", "disagreement AUROC [CI] per seed"],
                        [[c["method"], c["human"], str(e["round"]), fmt(e["human_minutes"]),
                          fmt_ci(e["arrived"]), fmt_ci(e["safe"]),
                          fmt_ci(e.get("plain_arrived")), fmt_ci(e["km"]),
                          "; ".join(f"{fmt(a['auroc'], 2)} [{fmt(a['lo'], 2)}, "
                                    f"{fmt(a['hi'], 2)}]"
                                    for a in e.get("disagreement_auroc", []))]
                         for c in summary["curves"].values() for e in c["rounds"]])),
    ]
    if cfg.figures:
        plot_arrival_vs_minutes(summary, run_dir / "figures" / "arrival_vs_minutes.png")
        blocks += [Block("h2", "Arrival and safety vs human-minutes"),
                   Block("img", ("figures/arrival_vs_minutes.png",
                                 "agent-alone arrival and safety vs cumulative "
                                 "human-minutes"))]
    atomic_write_text(run_dir / "report.md", to_markdown(blocks))
    atomic_write_text(run_dir / "report.html", to_html(blocks, cfg.name))
    return run_dir / "report.md"


def n_arms(cfg: LearningConfig) -> int:
    lc = cfg.learning
    return len(lc.methods) * len(lc.humans) * lc.finetune_seeds


_ARMS: tuple | None = None  # (cfg, run_dir, seeds) of the forked arm workers


def _run_arm_job(arm: tuple[str, str, int]) -> list[dict[str, Any]]:
    assert _ARMS is not None
    cfg, run_dir, seeds = _ARMS
    return run_arm(cfg, *arm, run_dir, seeds)


def _quiet_worker() -> None:
    """A forked arm worker leaves stopping to the parent: Ctrl-C (sent to the whole process
    group) is ignored, and the ``SIGTERM`` with which the pool ends its workers, after the
    last arm too, kills it without the parent's handler (which would raise inside the pool's
    result queue and print a traceback under a finished run's report line)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_arms(cfg: LearningConfig, arms: list[tuple[str, str, int]], run_dir: Path,
              seeds: Mapping[str, list[int]], progress: Any) -> list[list[dict[str, Any]]]:
    """Every arm's rows, in arm order: on ``learning.processes`` forked workers when there
    are several (each arm is seeded by its own method, human and fine-tuning seed, so the
    rows are the same as one by one), else here with per-round progress."""
    n = min(cfg.learning.processes, len(arms))
    if n <= 1:
        return [run_arm(cfg, *a, run_dir, seeds, progress) for a in arms]
    import multiprocessing as mp

    from takeover.envs.warmup import warm_up
    from takeover.supervisor.humans.warmup import warm_humans

    warm_up(warm_humans)  # compile once here; forks inherit (no concurrent cache writes)
    global _ARMS
    _ARMS = (cfg, run_dir, seeds)
    out = []
    try:
        with mp.get_context("fork").Pool(n, initializer=_quiet_worker) as pool:
            for a, rows in zip(arms, pool.imap(_run_arm_job, arms, chunksize=1),
                               strict=True):
                out.append(rows)
                if progress:
                    progress(f"{a[0]} {a[1]} ft{a[2]} done")
    finally:
        _ARMS = None
    return out


def run_learning(cfg: LearningConfig, run_dir: Path, *,
                 progress: Any = None) -> tuple[dict[str, Any], Path, float]:
    """Every arm, then ``metrics.json`` (rows + summary) and the report; returns the
    metrics, the report path and the wall seconds. Torch runs on one thread meanwhile."""
    import json
    import time

    import torch

    from takeover.atomic import json_safe
    from takeover.config import to_dict

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seeds = held_out_seeds(cfg)
        arms = [(m, h, k) for m in cfg.learning.methods for h in cfg.learning.humans
                for k in range(cfg.learning.finetune_seeds)]
        rows = [r for arm_rows in _run_arms(cfg, arms, run_dir, seeds, progress)
                for r in arm_rows]
        if cfg.learning.teacher_alone:
            hazards = {k: v for k, v in seeds.items() if k != "plain"}
            teachers = {h: teacher_alone(cfg, h, hazards) for h in cfg.learning.humans}
        clones = ({h: teacher_clone(cfg, h, seeds, run_dir) for h in cfg.learning.humans}
                  if cfg.learning.teacher_clone else {})
    finally:
        torch.set_num_threads(threads)
    summary = summarize_learning(cfg, rows)
    if cfg.learning.teacher_alone:
        summary["teachers"] = teachers
    if clones:
        summary["clones"] = clones
    metrics = json_safe({"name": cfg.name, "kind": "learning", "rows": rows, **summary})
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    seconds = time.perf_counter() - t0
    report = write_learning_report(run_dir, cfg, summary, seconds)
    atomic_write_text(run_dir / "timing.json", json.dumps({"seconds": round(seconds, 3)}))
    return metrics, report, seconds
