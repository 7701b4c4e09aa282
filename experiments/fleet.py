"""``takeover run fleet``: H humans for a growing fleet of N worlds, per allocation policy.

For each N in ``sweep.worlds``, each policy in ``sweep.allocations`` and each of
``sweep.reps`` repetitions, one engine steps N worlds (batched) whose humans are a
:class:`~takeover.supervisor.fleet.FleetHumans` of ``fleet.num_humans`` over N scripted
per-world humans; every world plays ``sweep.episodes_per_world`` episodes back to back.
Repetition ``r`` uses episode seeds ``seed + 100_000 r + k`` (k = 0 .. N E - 1), the same
for every policy and N, so policies are compared on the same traffic (paired).

Outputs in the run folder: ``fleet.json`` (every cell's :class:`FleetStats` summary and the
per-(N, policy) means with 95% CIs), ``fleet.csv``, ``fleet.png`` (the curves against N/H)
and ``report.md``. CIs are Student-t over repetitions; a policy's edge over ``random`` and
``round_robin`` is the paired per-repetition difference in ROHE.

With ``sweep.seconds`` every run lasts that long on the fleet clock (Fleet-DAgger runs a
fixed number of steps): a world out of service keeps its clock running and earns nothing,
as the paper's blocked robot idles, and a fleet whose episodes end quickly (crashes) does
not get a shorter run for it. Without it a run ends when every world has played
``episodes_per_world`` episodes, so its length depends on how fast they crash.

ROHE is the testbed's one definition, ``metric_definitions.rohe``: Fleet-DAgger's
``(H / N) * arrivals / (1 + human-seconds)``, human-seconds being the time humans were
assigned to a world (switching in, driving, recovering a car) plus the recoveries still owed
at the end (:attr:`~takeover.supervisor.fleet.FleetStats.human_effort`); the paper counts
human actions (control steps), which would tie the value to the control rate.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from takeover.atomic import atomic_write_text
from takeover.config import ConfigError, from_dict, load_yaml, option, to_dict, validate
from takeover.experiments.config import AgentSection, EnvSection, SupervisorSection, resolve_path
from takeover.registry import closest
from takeover.supervisor.fleet import FleetConfig

KIND = "fleet"
"""A config with ``kind: fleet`` is a fleet sweep (``takeover run`` dispatches on it)."""

BASELINES = ("random", "round_robin")
"""The policies every other is compared with, paired by repetition."""

CURVES = ("rohe", "wait_mean_s", "worlds_waiting_mean", "failures_waiting_rate",
          "throughput_per_hour", "human_idle_fraction")


@dataclass(frozen=True)
class FleetSweepSection:
    """The grid: fleet sizes x allocation policies x repetitions."""

    worlds: tuple[int, ...] = option((2, 5, 10, 20, 50, 100), "fleet sizes N", factory=None)
    allocations: tuple[str, ...] = option(("random", "round_robin", "fifo", "risk", "cur"),
                                          "allocation policies compared", factory=None)
    reps: int = option(3, "repetitions per cell (independent seed blocks)", range=(1, 1000))
    episodes_per_world: int = option(2, "episodes each world plays (without seconds)",
                                     range=(1, 1000))
    seconds: float | None = option(
        None, "fleet clock of every run, s (Fleet-DAgger's num_steps): the run stops then, "
        "its unfinished episodes uncounted, so every cell measures the same time whatever "
        "its worlds' episodes last; None: until every world played episodes_per_world",
        range=(1.0, 86_400.0))

    def __post_init__(self) -> None:
        validate(self, "sweep")
        if not self.worlds or min(self.worlds) < 1:
            raise ConfigError(f"sweep.worlds={list(self.worlds)}: list fleet sizes >= 1")
        from takeover.supervisor.allocation import ALLOCATIONS

        names = ALLOCATIONS.names()
        for a in self.allocations:
            if a not in names:
                raise ConfigError(f"sweep.allocations: unknown policy {a!r}."
                                  f"{closest(a, names)} Valid: {', '.join(names)}")


@dataclass(frozen=True)
class FleetExperimentConfig:
    """``kind: fleet`` configs (``experiments/configs/fleet.yaml``)."""

    kind: str = option(KIND, "must be 'fleet'", choices=(KIND,))
    name: str = option("fleet", "run name (the run folder's prefix)")
    seed: int = option(1_000_000, "base episode seed (held-out block: 1_000_000 up)",
                       range=(0, 2**31 - 1))
    env: EnvSection = field(default_factory=lambda: EnvSection(
        scenarios=("mixed",), action_type="discrete"))
    agent: AgentSection = field(default_factory=lambda: AgentSection(name="novice"))
    supervisor: SupervisorSection = field(default_factory=lambda: SupervisorSection(
        gate_score="q_risk", estimators=("q_risk", "entropy", "ttc")))
    fleet: FleetConfig = field(default_factory=FleetConfig)
    sweep: FleetSweepSection = field(default_factory=FleetSweepSection)
    figures: bool = option(True, "draw fleet.png")

    def __post_init__(self) -> None:
        validate(self)


def is_fleet(config: str | Path | None) -> bool:
    """The config file says ``kind: fleet``."""
    if config is None:
        return False
    try:
        return load_yaml(resolve_path(config)).get("kind") == KIND
    except Exception:  # not ours to report: the normal loader names the problem
        return False


def load_fleet_config(config: str | Path, overrides: Sequence[str] = ()
                      ) -> FleetExperimentConfig:
    from takeover.config import apply_overrides

    data = apply_overrides(load_yaml(resolve_path(config)), list(overrides))
    return from_dict(FleetExperimentConfig, data)


def run_cell(cfg: FleetExperimentConfig, agent: Any, estimators: dict, n: int,
             allocation: str, rep: int, envs: dict) -> dict[str, Any]:
    """One fleet run: ``n`` worlds, ``cfg.fleet.num_humans`` humans, ``allocation``."""
    from takeover.envs.vector import make_vector_env
    from takeover.experiments.episodes import SCENARIO_IDS
    from takeover.supervisor.engine import Engine
    from takeover.supervisor.fleet import FleetHumans
    from takeover.supervisor.gates import GATES
    from takeover.supervisor.handover import HandoverConfig
    from takeover.supervisor.humans import HUMANS

    s = cfg.supervisor
    key = (cfg.env.scenarios[0], n)
    if key not in envs:
        envs[key] = make_vector_env(SCENARIO_IDS[key[0]], n, **cfg.env.env_kwargs())
    inner = HUMANS.make(s.human, num_worlds=n, **dict(s.human_kwargs))  # batched, native
    fleet = FleetHumans(inner, n, replace(cfg.fleet, allocation=allocation, seed=cfg.seed + rep))
    eng = Engine(envs[key], agent, estimators, GATES.make(s.gate, **dict(s.gate_kwargs)),
                 fleet, gate_score=s.gate_score,
                 handover=from_dict(HandoverConfig, dict(s.handover_kwargs)),
                 keep_records=False)
    base = cfg.seed + 100_000 * rep
    sw = cfg.sweep
    if sw.seconds is None:
        eng.run([base + k for k in range(n * sw.episodes_per_world)])
    else:  # seeds enough for an episode per world per second; the clock ends the run
        eng.start([base + k for k in range(n * (int(sw.seconds) + 1))])
        while eng.active.any() and fleet.clock < sw.seconds - 1e-9:
            eng.step()
    return {**cell_summary(fleet.stats()), "allocation": allocation, "rep": rep}


def cell_summary(stats: Any) -> dict[str, float]:
    """A :class:`~takeover.supervisor.fleet.FleetStats`'s summary plus its ROHE
    (``metric_definitions.rohe`` of its arrivals and human effort)."""
    from takeover.experiments.metric_definitions import rohe

    s = stats.summary()
    return {**s, "rohe": rohe(s["arrivals"], s["human_effort_s"], s["H"], s["N"])}


def t_interval(x: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t CI over repetitions (NaN bounds for one repetition)."""
    from scipy import stats

    a = np.asarray([v for v in x if math.isfinite(v)], dtype=float)
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    m = float(a.mean())
    if len(a) < 2:
        return m, math.nan, math.nan
    h = float(stats.t.ppf(0.5 + confidence / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return m, m - h, m + h


def aggregate(cells: list[dict[str, Any]], worlds: Sequence[int],
              allocations: Sequence[str]) -> dict[str, Any]:
    """Per (N, policy): each curve's mean and CI; per N: paired ROHE differences."""
    out: dict[str, Any] = {"curves": {}, "paired": {}}
    for a in allocations:
        out["curves"][a] = {}
        for n in worlds:
            rows = [c for c in cells if c["allocation"] == a and c["N"] == n]
            out["curves"][a][str(n)] = {m: dict(zip(("mean", "lo", "hi"),
                                                    t_interval([r[m] for r in rows])))
                                        for m in (*CURVES, "failure_rate", "arrival_rate")}
    for n in worlds:
        by = {a: {c["rep"]: c["rohe"] for c in cells if c["allocation"] == a and c["N"] == n}
              for a in allocations}
        out["paired"][str(n)] = {}
        for a in allocations:
            for b in BASELINES:
                if a == b or b not in by or (a == BASELINES[0] and b in BASELINES):
                    continue  # each pair of baselines once: round_robin - random
                reps = sorted(set(by[a]) & set(by[b]))
                d = [by[a][r] - by[b][r] for r in reps]
                out["paired"][str(n)][f"{a}-{b}"] = dict(zip(("mean", "lo", "hi"),
                                                             t_interval(d)))
    return out


def plot(path: Path, agg: dict[str, Any], worlds: Sequence[int], h: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    x = np.asarray(worlds, dtype=float) / h
    for ax, m in zip(axes.flat, CURVES):
        for a, by_n in agg["curves"].items():
            mean = np.array([by_n[str(n)][m]["mean"] for n in worlds], dtype=float)
            lo = np.array([by_n[str(n)][m]["lo"] for n in worlds], dtype=float)
            hi = np.array([by_n[str(n)][m]["hi"] for n in worlds], dtype=float)
            ax.plot(x, mean, marker="o", label=a)
            ax.fill_between(x, lo, hi, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("N / H (worlds per human)")
        ax.set_title(m)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class FleetResult:
    """What ``takeover run`` prints for a fleet sweep (the fields of the runner's
    ``RunResult``; the runner dispatches here, so this module must not import it)."""

    run_dir: Path
    metrics: dict[str, Any]
    report: Path
    seconds: float


def run_fleet(cfg: FleetExperimentConfig, run_dir: Path, *, overrides: Sequence[str] = (),
              progress: Callable[[int], Callable[[str], None]] | None = None,
              agent: Any = None) -> Any:
    """The whole sweep into ``run_dir`` (see the module docstring)."""
    import torch

    from takeover.experiments.provenance import write_provenance
    from takeover.supervisor.estimators import make_estimators

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if agent is None:
            import gymnasium as gym

            from takeover.agents import load_agent
            from takeover.experiments.episodes import SCENARIO_IDS

            env = gym.make(SCENARIO_IDS[cfg.env.scenarios[0]], **cfg.env.env_kwargs())
            agent = load_agent(cfg.agent.name, env=env)
        write_provenance(run_dir, cfg, overrides, {"base": cfg.seed, "reps": cfg.sweep.reps,
                                                   "derivation": "seed + 100_000 rep + k"})
        est = make_estimators(list(cfg.supervisor.estimators),
                              reference_obs=getattr(agent, "reference_obs", None))
        sw = cfg.sweep
        tick = progress(len(sw.worlds) * len(sw.allocations) * sw.reps) if progress else None
        cells: list[dict[str, Any]] = []
        envs: dict[tuple[str, int], Any] = {}
        for rep in range(sw.reps):
            for n in sw.worlds:
                for a in sw.allocations:
                    cells.append(run_cell(cfg, agent, est, n, a, rep, envs))
                    if tick:
                        tick(f"fleet N={n} {a} rep {rep}")
    finally:
        torch.set_num_threads(threads)
    agg = aggregate(cells, sw.worlds, sw.allocations)
    metrics = {"name": cfg.name, "seed": cfg.seed, "H": cfg.fleet.num_humans,
               "config": to_dict(cfg), "cells": cells, **agg}
    metrics = json.loads(json.dumps(metrics, default=float).replace("NaN", "null"))
    atomic_write_text(run_dir / "fleet.json", json.dumps(metrics, indent=2, sort_keys=True))
    keys = list(cells[0])
    atomic_write_text(run_dir / "fleet.csv", "\n".join(
        [",".join(keys)] + [",".join(str(c[k]) for k in keys) for c in cells]) + "\n")
    if cfg.figures:
        plot(run_dir / "fleet.png", agg, sw.worlds, cfg.fleet.num_humans)
    report = run_dir / "report.md"
    atomic_write_text(report, _report(cfg, agg))
    seconds = time.perf_counter() - t0
    atomic_write_text(run_dir / "timing.json", json.dumps({"seconds": round(seconds, 3)}))
    return FleetResult(run_dir, metrics, report, seconds)


def _fmt(iv: dict[str, float | None]) -> str:
    m, lo, hi = (iv.get(k) for k in ("mean", "lo", "hi"))
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return f"{m:.3g}"
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


def _report(cfg: FleetExperimentConfig, agg: dict[str, Any]) -> str:
    sw, h = cfg.sweep, cfg.fleet.num_humans
    lines = [f"# Fleet sweep `{cfg.name}`", "",
             f"H = {h} humans, N in {list(sw.worlds)}, {sw.reps} repetitions x "
             + (f"{sw.episodes_per_world} episodes per world" if sw.seconds is None else
                f"{sw.seconds:g} s of fleet clock") + f", seeds from {cfg.seed}; "
             "95% Student-t CIs over repetitions.", "",
             "ROHE (Fleet-DAgger's return on human effort, `metric_definitions.rohe`) = "
             "(H / N) x arrivals / (1 + human-seconds): arrivals per second of human time "
             "assigned to a world (switching, driving, recovering, and recoveries owed at the "
             "end), weighted by humans per world.", "",
             "![curves](fleet.png)", ""]
    for m in (*CURVES, "failure_rate"):
        lines += [f"## {m}", "", "| policy | " + " | ".join(f"N/H={n / h:g}" for n in sw.worlds)
                  + " |", "|---" * (len(sw.worlds) + 1) + "|"]
        for a, by_n in agg["curves"].items():
            lines.append(f"| {a} | " + " | ".join(_fmt(by_n[str(n)][m]) for n in sw.worlds)
                         + " |")
        lines.append("")
    lines += ["## ROHE difference, paired by repetition", "",
              "| N/H | " + " | ".join(next(iter(agg["paired"].values()), {})) + " |"]
    lines.append("|---" * (1 + len(next(iter(agg["paired"].values()), {}))) + "|")
    for n, d in agg["paired"].items():
        lines.append(f"| {int(n) / h:g} | " + " | ".join(_fmt(v) for v in d.values()) + " |")
    return "\n".join(lines) + "\n"
