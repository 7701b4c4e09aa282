"""``takeover run``: one experiment from config to report, top to bottom.

1. load the agent (a bad name fails before anything is written), then write the run
   folder's provenance (``provenance.py``);
2. rounds of supervised collection + fine-tuning, evaluated after each (``rounds.py``);
3. final evaluation of the configured gate and the baselines on held-out seeds, every
   episode logged crash-safely (``takeover.logio``), labelled counterfactually in the loop
   (``takeover.supervisor.counterfactual``) and reduced to metrics (``metrics.py``);
4. rliable statistics (``stats.py``), ``metrics.json`` / ``metrics.csv``, figures and
   ``report.md`` / ``report.html`` (``report.py``).

Episodes stream: each is written to the log, measured and dropped, so memory stays flat.
``metrics.json`` holds no wall-clock value, so the same config and seed give the same file.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from takeover.atomic import atomic_write_text
from takeover.config import to_dict
from takeover.experiments import episodes as ep
from takeover.experiments.config import ExperimentConfig
from takeover.experiments.metrics import (
    METRICS,
    TRIGGER_METRICS,
    EpisodeMetrics,
    aggregate,
    episode_metrics,
    trigger_metrics,
)
from takeover.experiments.stats import summarize
from takeover.records import RunMeta, StepRecord

TRACE_EPISODES = 3
"""Episodes per condition whose per-step trace is kept for the timeline figure."""


@dataclass
class Trace:
    """The few per-step series the timeline figure draws (kept for a handful of episodes)."""

    episode: str
    scenario: str
    time: np.ndarray
    score: np.ndarray
    threshold: np.ndarray
    controller: list[str]
    tor_times: list[float]
    hazard_onset: float
    reason: str

    @classmethod
    def from_records(cls, records: Sequence[StepRecord], scenario: str, score: str) -> Trace:
        tors = sorted({r.tor_time for r in records if math.isfinite(r.tor_time)})
        onsets = [float(r.info.get("hazard_onset", -1.0)) for r in records]
        onset = next((o for o in onsets if o >= 0.0), math.nan)
        return cls(records[0].episode, scenario,
                   np.array([r.time for r in records]),
                   np.array([r.scores.get(score, math.nan) for r in records], dtype=float),
                   np.array([r.threshold for r in records], dtype=float),
                   [r.controller for r in records], tors, onset, records[-1].reason)


@dataclass
class ConditionResult:
    """Everything measured for one condition in one evaluation."""

    episodes: dict[tuple[int, str], list[EpisodeMetrics]] = field(
        default_factory=lambda: defaultdict(list))
    labels: list[Any] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    request_rate: float = math.nan

    def all_episodes(self) -> list[EpisodeMetrics]:
        return [e for k in sorted(self.episodes) for e in self.episodes[k]]

    def metrics(self) -> dict[str, float]:
        return aggregate(self.all_episodes())

    def cell_matrix(self, seeds: int, scenarios: Sequence[str]) -> dict[str, np.ndarray]:
        """``{metric: (seeds, scenarios)}``: each cell is the metric over that cell's
        episodes, the run x task layout rliable expects."""
        out = {m: np.full((seeds, len(scenarios)), np.nan) for m in METRICS}
        for (run, scen), eps in self.episodes.items():
            agg = aggregate(eps)
            for m in METRICS:
                out[m][run, scenarios.index(scen)] = agg[m]
        return out


Progress = Callable[[str], None]
"""Called once per finished episode with a short description (drives the progress bar)."""


class Experiment:
    """The agent, envs and log folders of one run; runs conditions episode by episode."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, *, agent: Any = None,
                 progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.envs = ep.EnvCache(cfg)
        self.agent = agent if agent is not None else self._load_agent()
        self.rollouts = ep.Rollouts(cfg, self.envs, self.agent)
        self.progress = progress or (lambda _msg: None)

    def _load_agent(self) -> Any:
        from takeover.agents import load_agent

        env = self.envs.get(self.cfg.env.scenarios[0])
        return load_agent(self.cfg.agent.name, env=env)

    def close(self) -> None:
        self.envs.close()

    def evaluate(self, condition: ep.Condition, purpose: str, *, episodes: int,
                 runs: Sequence[int] | None = None, log_dir: Path | None = None,
                 label: bool = False, traces: int = 0,
                 keep: list[StepRecord] | None = None) -> ConditionResult:
        """Play ``condition`` for ``episodes`` per run (seed index) per scenario; optionally
        log every episode, label it counterfactually, keep the first ``traces`` timelines
        and append the records to ``keep``."""
        cfg = self.cfg
        res = ConditionResult()
        writer = self._writer(log_dir, condition.name, purpose) if log_dir else None
        n_req = n_steps = 0
        try:
            for run in (range(cfg.eval.seeds) if runs is None else runs):
                for scen in cfg.env.scenarios:
                    seeds = [ep.episode_seed(cfg.seed, purpose, scen, run, i)
                             for i in range(episodes)]
                    eids = [f"{condition.name}-{scen}-s{run:02d}-e{i:03d}"
                            for i in range(episodes)]
                    batch = self.rollouts.run_batch(condition, scen, seeds, eids, label)
                    for i, (records, labels) in enumerate(batch):
                        if writer is not None:
                            for r in records:
                                writer.write(r)
                            writer.end_episode()
                        res.episodes[(run, scen)].append(
                            episode_metrics(records, cfg.counterfactual.horizon))
                        res.labels += labels
                        n_req += sum(r.gate_request for r in records)
                        n_steps += len(records)
                        if len(res.traces) < traces and i == 0:
                            res.traces.append(
                                Trace.from_records(records, scen, cfg.supervisor.gate_score))
                        if keep is not None:
                            keep.extend(records)
                        self.progress(f"{purpose} {condition.name} {scen}")
        finally:
            if writer is not None:
                writer.close()
        res.request_rate = n_req / n_steps if n_steps else math.nan
        return res

    def _writer(self, log_dir: Path, name: str, purpose: str):
        from takeover.logio import LogWriter

        meta = RunMeta(run_id=f"{self.cfg.name}-{purpose}-{name}", seed=self.cfg.seed,
                       config=to_dict(self.cfg))
        return LogWriter(log_dir, meta)


def n_episodes(cfg: ExperimentConfig) -> int:
    """Episodes a run will play (the progress bar's total)."""
    per = cfg.eval.seeds * len(cfg.env.scenarios)
    final = per * cfg.eval.episodes * (1 + len(cfg.eval.baselines))
    rounds = cfg.train.rounds * len(cfg.env.scenarios) * cfg.train.episodes_per_round
    curve = 2 * (cfg.train.rounds + 1) * per * cfg.eval.round_episodes
    return final + rounds + curve


def final_evaluation(exp: Experiment) -> dict[str, ConditionResult]:
    """The configured gate, then each baseline (``random`` at the gate's request rate)."""
    cfg = exp.cfg
    label = cfg.counterfactual.enabled
    logs = exp.run_dir / "logs"
    conds = ep.conditions(cfg)
    results = {conds[0].name: exp.evaluate(conds[0], "eval", episodes=cfg.eval.episodes,
                                           log_dir=logs / conds[0].name, label=label,
                                           traces=TRACE_EPISODES)}
    rate = results[conds[0].name].request_rate
    for cond in ep.conditions(cfg, random_rate=0.0 if math.isnan(rate) else rate)[1:]:
        results[cond.name] = exp.evaluate(cond, "eval", episodes=cfg.eval.episodes,
                                          log_dir=logs / cond.name, label=label,
                                          traces=TRACE_EPISODES)
    return results


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf become ``None`` so the file is valid JSON for every reader."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return round(x, 12) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def roc_by_estimator(labels: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per estimator: weighted ROC points and AUROC / AUPRC for predicting the
    counterfactual failure (weights undo the sampling of non-request steps)."""
    from sklearn.metrics import roc_curve

    from takeover.supervisor.counterfactual import report

    rep = report(labels)
    y = np.array([lab.needed for lab in labels], dtype=int)
    w = np.array([lab.weight for lab in labels], dtype=float)
    out = {}
    for name, vals in rep["estimators"].items():
        s = np.array([lab.scores.get(name, math.nan) for lab in labels], dtype=float)
        ok = np.isfinite(s)
        fpr, tpr = [0.0, 1.0], [0.0, 1.0]
        if len(np.unique(y[ok])) == 2:
            f, t, _ = roc_curve(y[ok], s[ok], sample_weight=w[ok])
            fpr, tpr = f.tolist(), t.tolist()
        out[name] = {**vals, "fpr": fpr, "tpr": tpr, "positives": int(y[ok].sum()),
                     "n": int(ok.sum())}
    return out


def gate_report(labels: Sequence[Any]) -> dict[str, Any] | None:
    if not labels:
        return None
    from takeover.supervisor.counterfactual import report

    return report(labels)["gates"].get("gate")


def build_metrics(cfg: ExperimentConfig, results: dict[str, ConditionResult],
                  rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of ``metrics.json`` (deterministic: no wall-clock values)."""
    scen = list(cfg.env.scenarios)
    conditions, stats, triggers = {}, {}, {}
    for name, res in results.items():
        conditions[name] = res.metrics()
        cells = res.cell_matrix(cfg.eval.seeds, scen)
        stats[name] = {m: iv.as_dict() for m, iv in summarize(
            cells, reps=cfg.stats.bootstrap, confidence=cfg.stats.confidence,
            seed=cfg.seed).items()}
        triggers[name] = {**trigger_metrics(gate_report(res.labels), len(res.all_episodes())),
                          "labels": len(res.labels), "request_rate": res.request_rate}
    main = results.get("supervised")
    roc = roc_by_estimator(main.labels) if main is not None and main.labels else {}
    per_scenario = {
        name: {s: aggregate([e for (_run, sc), eps in res.episodes.items() if sc == s
                             for e in eps]) for s in scen}
        for name, res in results.items()
    }
    return _clean({
        "name": cfg.name, "seed": cfg.seed, "scenarios": scen,
        "metric_definitions": {**METRICS, **TRIGGER_METRICS},
        "conditions": conditions, "iqm": stats, "triggers": triggers,
        "per_scenario": per_scenario, "roc": roc, "rounds": rounds,
    })


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json`` and the flat ``metrics.csv`` (condition, metric, value, iqm, lo, hi)."""
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    rows = ["condition,metric,value,iqm,ci_lo,ci_hi"]

    def fmt(v: Any) -> str:
        return "" if v is None else repr(v)

    for cond, vals in metrics["conditions"].items():
        for m, v in vals.items():
            iv = metrics["iqm"][cond][m]
            rows.append(f"{cond},{m},{fmt(v)},{fmt(iv['iqm'])},{fmt(iv['lo'])},{fmt(iv['hi'])}")
        for m, v in metrics["triggers"][cond].items():
            rows.append(f"{cond},{m},{fmt(v)},,,")
    atomic_write_text(run_dir / "metrics.csv", "\n".join(rows) + "\n")


def write_tensorboard(path: Path, metrics: dict[str, Any]) -> None:
    """Rounds as steps (``round/<condition>.<metric>``) and the final pooled metrics
    (``final/<condition>/<metric>``)."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(path))
    try:
        for row in metrics["rounds"]:
            for k, v in row.items():
                if k != "round" and isinstance(v, (int, float)):
                    w.add_scalar(f"round/{k}", v, row["round"])
        for cond, vals in metrics["conditions"].items():
            for k, v in vals.items():
                if v is not None:
                    w.add_scalar(f"final/{cond}/{k}", v, 0)
    finally:
        w.close()


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    report: Path
    seconds: float


def run_experiment(cfg: ExperimentConfig, run_dir: Path, *, overrides: Sequence[str] = (),
                   progress: Callable[[int], Progress] | None = None,
                   agent: Any = None) -> RunResult:
    """Run ``cfg`` into ``run_dir``; ``progress(total)`` returns the per-episode callback.
    Torch runs on one thread meanwhile, so the same config gives the same bits anywhere."""
    import torch

    if getattr(cfg, "kind", None) == "fleet":  # a fleet-size sweep: experiments/fleet.py
        from takeover.experiments.fleet import run_fleet

        return run_fleet(cfg, run_dir, overrides=overrides, progress=progress, agent=agent)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same float results on any machine; the nets are tiny
    try:
        return _run(cfg, run_dir, overrides, progress, agent, t0)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: ExperimentConfig, run_dir: Path, overrides: Sequence[str],
         progress: Callable[[int], Progress] | None, agent: Any, t0: float) -> RunResult:
    from takeover.experiments.provenance import write_provenance
    from takeover.experiments.report import write_report
    from takeover.experiments.rounds import run_rounds

    seeds = {"base": cfg.seed, "eval_runs": cfg.eval.seeds,
             "derivation": "numpy.random.SeedSequence([base, purpose, scenario, run, episode])"}
    exp = Experiment(cfg, run_dir, agent=agent)  # loads the agent: fail before writing
    write_provenance(run_dir, cfg, overrides, seeds)
    if progress:
        exp.progress = progress(n_episodes(cfg))
    try:
        rounds = run_rounds(exp)
        results = final_evaluation(exp)
    finally:
        exp.close()
    metrics = build_metrics(cfg, results, rounds)
    write_metrics(run_dir, metrics)
    report = write_report(run_dir, cfg, metrics, results)
    if cfg.tensorboard:
        write_tensorboard(run_dir / "tb", metrics)
    seconds = time.perf_counter() - t0
    atomic_write_text(run_dir / "timing.json", json.dumps({"seconds": round(seconds, 3)}))
    return RunResult(run_dir, metrics, report, seconds)
