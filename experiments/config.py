"""The experiment configuration: one typed, documented tree of frozen dataclasses.

Every field carries its help text and valid range, so a typo, a wrong type or an
out-of-range value stops the run before any episode starts, naming the key and the
closest valid one (``takeover.config``). Names of estimators, gates and humans are checked
against the supervisor's registries, and their ``*_kwargs`` against the chosen plugin's
signature (unknown key, wrong type, non-finite number: refused at load, before anything is
written), so a new gate registered in ``takeover.supervisor.gates`` is accepted without
touching this file. An empty config file runs the embedded default
(``configs/default.yaml``); the dataclass defaults agree with it where a key is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from takeover.config import (
    CALIBRATION_SEED,
    HELD_OUT_SEED,
    ConfigError,
    apply_overrides,
    check_kwargs,
    from_dict,
    load_yaml,
    option,
    validate,
)
from takeover.folders import FolderError, check_name
from takeover.registry import Registry, closest
from takeover.supervisor.estimators import ESTIMATORS
from takeover.supervisor.gates import GATES
from takeover.supervisor.handover import HandoverConfig
from takeover.supervisor.humans import HUMANS

CONFIG_DIR = Path(__file__).parent / "configs"
"""Shipped example configs; ``takeover run NAME`` also accepts a bare name from here."""

DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

SCENARIO_NAMES = ("sudden_brake", "cut_in", "stalled_car", "merge", "lane_closure", "none",
                  "mixed")
"""Scenario names of ``takeover.envs`` (kept here so config checks need no env import)."""

BASELINES = ("agent_alone", "never", "always", "random", "random_time", "absent")
"""Reference conditions evaluated beside the configured gate: the agent with no supervisor,
the supervisor with the ``never`` / ``always`` gates and two random gates (``random``
matched to the configured gate's takeover requests per episode, ``random_time`` to its
human-controlled seconds per episode), and the configured gate with an ``absent`` human
(nobody answers: the sanity floor)."""


TRAIN_METHODS = ("hg-dagger", "thrifty", "none")
"""Behaviour-cloning updates of the agent's PPO policies (``takeover.agents.learners``). PVP
and RLIF need the off-policy DQN agent: ``takeover run learning`` runs them."""


def gate_names() -> list[str]:
    return GATES.names()


def estimator_names() -> list[str]:
    return ESTIMATORS.names()


def human_names() -> list[str]:
    return HUMANS.names()


def _kwargs(registry: Registry, name: str, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """``kwargs`` of plugin ``name`` checked against its signature, then tried once by
    building the plugin (so e.g. ``low > high`` is refused at load too)."""
    kwargs = check_kwargs(registry.get(name), kwargs, where, f"{registry.what} {name!r}")
    try:
        registry.make(name, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {registry.what} {name!r} refuses {kwargs}: {e}") from None
    return kwargs


def _check_names(key: str, values: Sequence[str], allowed: Sequence[str], what: str) -> None:
    for v in values:
        if v not in allowed:
            raise ConfigError(
                f"{key}: unknown {what} {v!r}.{closest(v, list(allowed))} "
                f"Valid {what}s: {', '.join(allowed)}"
            )


def _nonempty(key: str, values: Sequence[Any]) -> None:
    if len(values) == 0:
        raise ConfigError(f"{key} must list at least one value")
    if len(set(values)) != len(values):
        raise ConfigError(f"{key} lists a value twice: {list(values)}")


@dataclass(frozen=True)
class EnvSection:
    """Which worlds the experiment drives in."""

    scenarios: tuple[str, ...] = option(
        ("sudden_brake", "cut_in", "stalled_car", "merge", "lane_closure"),
        "hazard scenarios; each is one task in the statistics", factory=None)
    action_type: str = option("discrete", "env action space (the shipped novice is "
                              "discrete)", choices=("continuous", "discrete"))
    duration: float = option(30.0, "episode length, s", range=(1.0, 600.0))
    vehicles: int = option(20, "traffic vehicles besides the ego", range=(0, 60))
    observe: int = option(8, "nearest vehicles in the observation (the agent's sensor: with "
                          "8 a standing car 60-80 m ahead is hidden behind nearer traffic in "
                          "74-86% of steps, with 16 in none; an agent drives only the K it "
                          "was trained on)", range=(1, 32))
    observe_lanes: bool = option(False, "add the three lane rows to the observation "
                                 "(takeover.envs.lane_view: leader and follower of the ego's "
                                 "lane and the lanes beside it); the agent must be trained "
                                 "with them")

    def __post_init__(self) -> None:
        validate(self, "env")
        _nonempty("env.scenarios", self.scenarios)
        _check_names("env.scenarios", self.scenarios, SCENARIO_NAMES, "scenario")

    def env_kwargs(self) -> dict[str, Any]:
        return {"action_type": self.action_type, "duration": self.duration,
                "vehicles": self.vehicles, "observe": self.observe,
                "observe_lanes": self.observe_lanes}


@dataclass(frozen=True)
class AgentSection:
    """The policy under supervision."""

    name: str = option("novice",
                       "shipped agent name (novice, novice-ensemble) or a path to a saved agent")

    def __post_init__(self) -> None:
        validate(self, "agent")


@dataclass(frozen=True)
class SupervisorSection:
    """Estimators, gate, handover and the (scripted) human of the supervised condition."""

    gate: str = option("threshold", "takeover gate of the main condition", choices=gate_names)
    gate_kwargs: dict[str, Any] = option(None, "keyword arguments of the gate", factory=dict)
    gate_score: str = option("q_risk", "estimator whose score the gate reads")
    estimators: tuple[str, ...] = option(("q_risk", "novelty", "ttc"),
                                         "estimators scored every step (the ROC curves)")
    human: str = option("average", "scripted human model", choices=human_names)
    human_kwargs: dict[str, Any] = option(None, "keyword arguments of the human",
                                          factory=dict)
    handover_kwargs: dict[str, Any] = option(None, "handover protocol settings "
                                             "(HandoverConfig), e.g. timeout",
                                             factory=dict)

    def __post_init__(self) -> None:
        validate(self, "supervisor")
        set_ = object.__setattr__
        set_(self, "gate_kwargs", _kwargs(GATES, self.gate, self.gate_kwargs,
                                          "supervisor.gate_kwargs"))
        set_(self, "human_kwargs", _kwargs(HUMANS, self.human, self.human_kwargs,
                                           "supervisor.human_kwargs"))
        from_dict(HandoverConfig, self.handover_kwargs, where="supervisor.handover_kwargs")
        _nonempty("supervisor.estimators", self.estimators)
        _check_names("supervisor.estimators", self.estimators, estimator_names(), "estimator")
        if self.gate_score not in self.estimators:
            raise ConfigError(
                f"supervisor.gate_score={self.gate_score!r} must be one of supervisor.estimators"
                f".{closest(self.gate_score, list(self.estimators))} "
                f"Add it to estimators or pick one of: {', '.join(self.estimators)}"
            )


@dataclass(frozen=True)
class TrainSection:
    """Rounds of supervised data collection and fine-tuning (issue 6's multi-round loop)."""

    method: str = option("hg-dagger", "how the agent learns from the log", choices=TRAIN_METHODS)
    rounds: int = option(2, "fine-tuning rounds (0 = evaluate the shipped agent only)",
                         range=(0, 100))
    episodes_per_round: int = option(4, "supervised episodes per scenario per round",
                                     range=(1, 10_000))
    epochs: int = option(5, "passes over the aggregated data per round", range=(1, 1000))
    lr: float = option(3e-4, "learning rate", range=(1e-7, 1.0))
    batch_size: int = option(256, "minibatch size", range=(1, 1_000_000))
    anchor_weight: float = option(1.0, "weight of KL(shipped policy || policy) on the steps "
                                  "the agent drove (0 = plain BC)", range=(0.0, 1000.0))
    relabel: bool = option(True, "clone discrete labels as executed: an 'idle' while the "
                           "car still brakes/accelerates hard counts as slower/faster")
    seeds: int = option(1, "independent fine-tuning seeds (collection + training), the "
                        "learning curve's CI is over them; the final evaluation uses seed 0's "
                        "agent", range=(1, 100))
    validation_episodes: int = option(10, "agent-alone episodes per scenario (training seed "
                                      "stream) on which a fine-tuned round must arrive more "
                                      "often than the best agent so far, else its update is "
                                      "dropped "
                                      "(DAgger's best policy over rounds; 0 = keep every "
                                      "round)", range=(0, 10_000))

    def __post_init__(self) -> None:
        validate(self, "train")


@dataclass(frozen=True)
class EvalSection:
    """Held-out evaluation: seeds are the independent runs of the statistics."""

    seeds: int = option(3, "independent evaluation seeds (runs for IQM / bootstrap)",
                         range=(1, 10_000))
    episodes: int = option(2, "episodes per seed per scenario", range=(1, 10_000))
    baselines: tuple[str, ...] = option(BASELINES, "reference conditions (subset of "
                                        + ", ".join(BASELINES) + ")")
    round_episodes: int = option(1, "episodes per seed per scenario for the per-round "
                                 "learning curve", range=(1, 10_000))
    seed_start: int = option(HELD_OUT_SEED, "first episode seed of the final evaluation; "
                             "condition c, scenario s, episode i plays seed_start + i for every "
                             "c and s (paired); keep the held-out block >= 1_000_000 for "
                             "reported numbers", range=(0, 2**31 - 1))
    round_seed_start: int = option(HELD_OUT_SEED + 500_000, "first episode seed of the "
                                   "per-round evaluation (the same seeds every round)",
                                   range=(0, 2**31 - 1))
    calibration_episodes: int = option(
        20, "episodes per seed per scenario of each play that matches the random gate to the "
        "configured gate's requests per episode", range=(1, 10_000))
    calibration_plays: int = option(
        2, "plays on the calibration seeds that refine the random gate's per-step rate "
        "(each sets rate = target requests per episode / askable steps per episode of the "
        "previous play); 0 keeps the first estimate from the configured gate's own episodes",
        range=(0, 10))
    calibration_seed_start: int = option(
        CALIBRATION_SEED, "first episode seed of the random gate's calibration plays (the "
        "calibration block 200_000..299_999: never reported)", range=(0, 2**31 - 1))
    humans: tuple[str, ...] = option((), "human presets also evaluated with the configured "
                                     "gate (condition 'human_NAME'), for the preset-order "
                                     "invariant, e.g. [perfect, expert, novice]", factory=None)

    def __post_init__(self) -> None:
        validate(self, "eval")
        _check_names("eval.baselines", self.baselines, BASELINES, "baseline")
        if len(set(self.baselines)) != len(self.baselines):
            raise ConfigError(f"eval.baselines lists a value twice: {list(self.baselines)}")
        _check_names("eval.humans", self.humans, human_names(), "human")


@dataclass(frozen=True)
class CounterfactualSection:
    """Labels whether each trigger was needed (the agent alone fails within ``horizon``)."""

    enabled: bool = option(True, "label triggers and sampled non-triggers")
    horizon: float = option(2.0, "look-ahead of the agent-alone rollout, s", range=(0.1, 30.0))
    sample_every: int = option(10, "also label every n-th non-trigger step", range=(1, 10_000))

    def __post_init__(self) -> None:
        validate(self, "counterfactual")


@dataclass(frozen=True)
class MetricsSection:
    """How metrics are measured (``metric_definitions`` holds what each one means)."""

    horizons: tuple[float, ...] = option(
        (4.0, 2.0, 6.0), "failure-prediction horizons of the trigger-quality tables, s; the "
        "first is the headline (4 s: the average human needs 2.7 s to respond under urgency, "
        "Zhang et al. 2019, plus margin)", factory=None)
    false_alarm: float = option(0.05, "false-alarm rate (share of steps far from any failure) "
                                "at which the warning lead time is measured", range=(1e-4, 0.5))
    lead_window: float = option(10.0, "window before a failure searched for its warning, s",
                                range=(0.5, 120.0))
    rohe_min_intervention: float = option(5.0, "ROHE: the least human time one intervention "
                                          "costs, s (Fleet-DAgger's minimum intervention time)",
                                          range=(0.0, 600.0))
    rohe_reset_time: float = option(60.0, "ROHE: human time to recover a car left wrecked, "
                                    "off the road or at rest (metric_definitions."
                                    "RECOVERY_OUTCOMES), s (Fleet-DAgger's hard-reset time)",
                                    range=(0.0, 3600.0))

    def __post_init__(self) -> None:
        validate(self, "metrics")
        _nonempty("metrics.horizons", self.horizons)
        if any(not 0.1 <= h <= 30.0 for h in self.horizons):
            raise ConfigError(f"metrics.horizons must lie in [0.1, 30] s; got "
                              f"{list(self.horizons)}")


@dataclass(frozen=True)
class StatsSection:
    """rliable aggregation across seeds x scenarios."""

    bootstrap: int = option(1000, "stratified bootstrap resamples (use ~200 in CI)",
                            range=(10, 1_000_000))
    confidence: float = option(0.95, "confidence level of the intervals", range=(0.5, 0.999))
    auc_bootstrap: int = option(300, "episode-cluster bootstrap resamples of each AUROC / "
                                "AUPRC", range=(10, 100_000))

    def __post_init__(self) -> None:
        validate(self, "stats")


@dataclass(frozen=True)
class SweepSection:
    """The grid of ``takeover sweep``: every combination is one cell."""

    gates: tuple[str, ...] = option(("threshold", "never", "always"),
                                    "gates to compare: registered names or gate_specs keys")
    gate_specs: dict[str, Any] = option(
        None, "named gate variants, {alias: {type: registered gate, **its kwargs}}, e.g. "
              "{predictive_4s: {type: predictive, horizon: 4.0}}", factory=dict)
    estimators: tuple[str, ...] = option(("ensemble",), "estimators the gate reads")
    humans: tuple[str, ...] = option(("average",), "scripted human models")
    scenarios: tuple[str, ...] = option(("sudden_brake", "cut_in"), "scenarios")
    seeds: tuple[int, ...] = option((0, 1), "seeds (one cell each)")
    episodes: int = option(2, "episodes per cell", range=(1, 100_000))
    workers: int = option(2, "parallel workers of the local backend", range=(1, 512))

    def __post_init__(self) -> None:
        validate(self, "sweep")
        for name in ("gates", "estimators", "humans", "scenarios", "seeds"):
            _nonempty(f"sweep.{name}", getattr(self, name))
        known = gate_names()
        for alias, spec in self.gate_specs.items():
            try:
                check_name(alias, "sweep.gate_specs alias")
            except FolderError as e:  # aliases name cell files
                raise ConfigError(str(e)) from None
            if not isinstance(spec, dict) or "type" not in spec:
                raise ConfigError(f"sweep.gate_specs.{alias} must be a mapping with a 'type' "
                                  "(a registered gate) and that gate's kwargs")
            _check_names(f"sweep.gate_specs.{alias}.type", [spec["type"]], known, "gate")
            _kwargs(GATES, spec["type"], {k: v for k, v in spec.items() if k != "type"},
                    f"sweep.gate_specs.{alias}")
        _check_names("sweep.gates", self.gates, [*known, *self.gate_specs], "gate")
        _check_names("sweep.estimators", self.estimators, estimator_names(), "estimator")
        _check_names("sweep.humans", self.humans, human_names(), "human")
        _check_names("sweep.scenarios", self.scenarios, SCENARIO_NAMES, "scenario")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run needs; the run folder keeps the resolved copy (``config.yaml``)."""

    name: str = option("default", "run name (the run folder's prefix)")
    seed: int = option(0, "base seed: every episode seed derives from it", range=(0, 2**31 - 1))
    env: EnvSection = field(default_factory=EnvSection, metadata={"help": "worlds"})
    agent: AgentSection = field(default_factory=AgentSection, metadata={"help": "policy"})
    supervisor: SupervisorSection = field(default_factory=SupervisorSection,
                                          metadata={"help": "supervision"})
    train: TrainSection = field(default_factory=TrainSection, metadata={"help": "fine-tuning"})
    eval: EvalSection = field(default_factory=EvalSection, metadata={"help": "evaluation"})
    counterfactual: CounterfactualSection = field(default_factory=CounterfactualSection,
                                                  metadata={"help": "trigger labels"})
    metrics: MetricsSection = field(default_factory=MetricsSection,
                                    metadata={"help": "measurement"})
    stats: StatsSection = field(default_factory=StatsSection, metadata={"help": "statistics"})
    sweep: SweepSection = field(default_factory=SweepSection, metadata={"help": "sweep grid"})
    figures: bool = option(True, "draw the report's figures")
    tensorboard: bool = option(False, "also write the rounds and final metrics as "
                                      "TensorBoard scalars (run folder's tb/)")

    def __post_init__(self) -> None:
        validate(self)
        try:
            check_name(self.name, "name")  # it names the run folder
        except FolderError as e:
            raise ConfigError(str(e)) from None


def resolve_path(config: str | Path | None) -> Path:
    """A config argument as a file: ``None`` is the default, a bare name is looked up in
    the shipped configs, a run folder means its ``config.yaml``."""
    if config is None:
        return DEFAULT_CONFIG
    path = Path(config)
    if path.is_dir():
        path = path / "config.yaml"
    elif not path.exists() and not path.suffix:
        shipped = CONFIG_DIR / f"{path.name}.yaml"
        if shipped.exists():
            return shipped
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(
            f"config {str(config)!r} is neither a file nor a shipped config."
            f"{closest(str(config), names)} Shipped: {', '.join(names)}"
        )
    return path


def load_config(config: str | Path | None = None,
                overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, dict[str, Any]]:
    """Load, override and validate; returns the config and the raw (overridden) mapping."""
    data = load_yaml(resolve_path(config)) or load_yaml(DEFAULT_CONFIG)  # empty: the default
    data = apply_overrides(data, list(overrides))
    return from_dict(ExperimentConfig, data), data


def with_sweep_cell(cfg: ExperimentConfig, *, gate: str, estimator: str, human: str,
                    scenario: str, seed: int) -> ExperimentConfig:
    """The config of one sweep cell: the grid values replace the main condition. A gate is
    a ``sweep.gate_specs`` alias, the main gate (keeping its kwargs) or a registered gate
    with its defaults."""
    spec = cfg.sweep.gate_specs.get(gate)
    if spec is not None:
        gate, kwargs = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    elif gate == cfg.supervisor.gate:
        kwargs = dict(cfg.supervisor.gate_kwargs)
    else:
        kwargs = {}
    estimators = tuple(dict.fromkeys((estimator, *cfg.supervisor.estimators)))
    sup = replace(cfg.supervisor, gate=gate, gate_kwargs=kwargs, gate_score=estimator,
                  estimators=estimators, human=human)
    env = replace(cfg.env, scenarios=(scenario,))
    return replace(cfg, seed=seed, supervisor=sup, env=env)


def describe(cls: type = ExperimentConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, default, help)`` rows of every field, for ``--help`` style listings."""
    rows = []
    inst = cls()
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        value = getattr(inst, f.name)
        if hasattr(value, "__dataclass_fields__"):
            rows += describe(type(value), key + ".")
        else:
            rows.append((key, repr(value), f.metadata.get("help", "")))
    return rows
