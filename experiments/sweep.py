"""``takeover sweep``: the grid gates x estimators x humans x scenarios x seeds, one cell per
combination, on a local process pool (default) or a Ray cluster.

Every cell is independent (its own gate, env seeds and agent copy), so the backend cannot
change a result: a cell's metrics depend on its config alone. The driver process writes each
finished cell atomically to ``cells/<cell>.json``; re-running the same sweep skips the cells
already there, so a killed sweep resumes where it stopped. A cell that raises is written to
``cells/<cell>.error.json`` with its traceback and retried on the next run; the sweep goes on.

The sweep evaluates a fixed agent (no fine-tuning rounds): it compares *when to ask*, and
is summarised per (gate, estimator, human) with rliable over seeds x scenarios.
"""

from __future__ import annotations

import itertools
import json
import math
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from takeover.atomic import atomic_write_text, json_safe
from takeover.config import ConfigError, from_dict, to_dict
from takeover.experiments.config import ExperimentConfig, with_sweep_cell
from takeover.experiments.metrics import METRICS, TRIGGER_METRICS
from takeover.folders import check_name, claimed

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Cell:
    """One grid point."""

    gate: str
    estimator: str
    human: str
    scenario: str
    seed: int

    @property
    def id(self) -> str:
        """The cell's file name stem; every part is checked as a safe path name."""
        for what, v in (("gate", self.gate), ("estimator", self.estimator),
                        ("human", self.human), ("scenario", self.scenario)):
            check_name(v, f"sweep cell {what}")
        return f"{self.gate}__{self.estimator}__{self.human}__{self.scenario}__s{self.seed}"

    @property
    def group(self) -> str:
        """The compared method: everything but scenario and seed."""
        return f"{self.gate}/{self.estimator}/{self.human}"


def grid(cfg: ExperimentConfig) -> list[Cell]:
    s = cfg.sweep
    return [Cell(*c) for c in itertools.product(s.gates, s.estimators, s.humans, s.scenarios,
                                                 s.seeds)]


_AGENTS: dict[str, Any] = {}
"""Per-process agent cache: a worker loads the (read-only) agent once for all its cells."""


def run_cell(cfg_data: dict[str, Any], cell: Cell) -> dict[str, Any]:
    """Play one cell and return its metrics (plain data, picklable, no wall-clock values)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same float results on any worker; the nets are tiny
    try:
        return _run_cell(from_dict(ExperimentConfig, cfg_data), cell)
    finally:
        torch.set_num_threads(threads)


def _run_cell(base: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    from takeover.experiments.episodes import Condition
    from takeover.experiments.metrics import trigger_metrics
    from takeover.experiments.runner import Experiment, gate_report

    cfg = with_sweep_cell(base, gate=cell.gate, estimator=cell.estimator, human=cell.human,
                          scenario=cell.scenario, seed=cell.seed)
    name = cfg.agent.name
    exp = Experiment(cfg, Path("."), agent=_AGENTS.get(name))
    _AGENTS[name] = exp.agent
    try:
        cond = Condition("supervised", cfg.supervisor.gate, dict(cfg.supervisor.gate_kwargs))
        res = exp.evaluate(cond, "eval", episodes=cfg.sweep.episodes, runs=[cell.seed],
                           label=cfg.counterfactual.enabled)
    finally:
        exp.close()
    eps = res.all_episodes()
    return {
        "cell": cell.__dict__, "status": "ok", "episodes": len(eps),
        "metrics": res.metrics(),
        "triggers": {**trigger_metrics(gate_report(res.labels), len(eps)),
                     "request_rate": res.request_rate},
    }


class SweepStore:
    """The sweep folder: ``sweep.yaml`` (resolved config), ``cells/``, the summary."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cells = self.root / "cells"

    def done(self, cell: Cell) -> bool:
        path = self.cells / f"{cell.id}.json"
        if not path.exists():
            return False
        try:
            return json.loads(path.read_text()).get("status") == "ok"
        except (OSError, json.JSONDecodeError):
            return False  # unreadable: run it again (the atomic write makes this rare)

    def write(self, cell: Cell, result: dict[str, Any]) -> None:
        ok = result.get("status") == "ok"
        name = f"{cell.id}.json" if ok else f"{cell.id}.error.json"
        atomic_write_text(self.cells / name, json.dumps(json_safe(result), indent=1,
                                                        sort_keys=True))
        if ok:
            (self.cells / f"{cell.id}.error.json").unlink(missing_ok=True)

    def load(self, cell: Cell) -> dict[str, Any] | None:
        path = self.cells / f"{cell.id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def errors(self) -> dict[str, str]:
        return {p.name[: -len(".error.json")]: json.loads(p.read_text()).get("error", "")
                for p in sorted(self.cells.glob("*.error.json"))}


def _safe(fn: Callable[[dict, Cell], dict], cfg_data: dict, cell: Cell) -> dict[str, Any]:
    """Run a cell, turning any exception into an error record (the sweep goes on)."""
    try:
        return fn(cfg_data, cell)
    except Exception as e:  # noqa: BLE001 - every failure is recorded, none stops the sweep
        return {"cell": cell.__dict__, "status": "error",
                "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def _local(fn, cfg_data: dict, cells: list[Cell], workers: int) -> Iterator[tuple[Cell, dict]]:
    if workers <= 1 or len(cells) <= 1:
        for c in cells:
            yield c, _safe(fn, cfg_data, c)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: forking a process that already runs torch / numba threads can hang
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_safe, fn, cfg_data, c): c for c in cells}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _ray(fn, cfg_data: dict, cells: list[Cell], workers: int,
         address: str | None) -> Iterator[tuple[Cell, dict]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'takeover[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(_safe)
        pending = {remote.remote(fn, cfg_data, c): c for c in cells}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                yield pending.pop(ref), ray.get(ref)
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class SweepResult:
    root: Path
    total: int
    ran: int
    skipped: int
    failed: int
    summary: dict[str, Any]


def run_sweep(cfg: ExperimentConfig, root: Path, *, backend: str = "local",
              address: str | None = None, workers: int | None = None,
              cell_fn: Callable[[dict, Cell], dict] = run_cell,
              progress: Callable[[int], Callable[[str], None]] | None = None) -> SweepResult:
    """Run every missing cell of ``cfg.sweep`` into ``root`` and write the summary.

    ``root`` is claimed for the sweep (``takeover.folders.claim``): a new or empty folder, or
    one an earlier sweep created (resumed); a second writer is refused naming the holder."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    root = Path(root)
    with claimed(root, resume=True):
        return _run_sweep(cfg, root, backend, address, workers, cell_fn, progress)


def _run_sweep(cfg: ExperimentConfig, root: Path, backend: str, address: str | None,
               workers: int | None, cell_fn: Callable[[dict, Cell], dict],
               progress: Callable[[int], Callable[[str], None]] | None) -> SweepResult:
    store = SweepStore(root)
    data = to_dict(cfg)
    _check_same_sweep(root, data)
    cells = grid(cfg)
    todo = [c for c in cells if not store.done(c)]
    tick = progress(len(todo)) if progress else (lambda _m: None)
    n = workers or cfg.sweep.workers
    it = (_ray(cell_fn, data, todo, n, address) if backend == "ray"
          else _local(cell_fn, data, todo, n))
    failed = 0
    for cell, result in it:
        store.write(cell, result)
        failed += result.get("status") != "ok"
        tick(f"{cell.id} {'ok' if result.get('status') == 'ok' else 'FAILED'}")
    summary = summarize_sweep(cfg, store, cells)
    atomic_write_text(root / "summary.json", json.dumps(json_safe(summary), indent=2,
                                                        sort_keys=True))
    write_sweep_report(root, summary)
    return SweepResult(root, len(cells), len(todo), len(cells) - len(todo), failed, summary)


def _check_same_sweep(root: Path, data: dict[str, Any]) -> None:
    """Resuming is only sound with the same config: refuse a different one."""
    import yaml

    path = root / "sweep.yaml"
    if path.exists():
        old = yaml.safe_load(path.read_text())
        if old != yaml.safe_load(yaml.safe_dump(data)):
            raise ConfigError(
                f"{root} holds a sweep with another config; resume it with its own "
                f"{path} or choose another --out"
            )
    else:
        atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def summarize_sweep(cfg: ExperimentConfig, store: SweepStore,
                    cells: list[Cell]) -> dict[str, Any]:
    """Per method (gate/estimator/human): pooled-over-cells mean and rliable IQM + CI of
    every metric over the ``(seeds, scenarios)`` matrix of its cells."""
    from takeover.experiments.stats import summarize

    seeds, scens = list(cfg.sweep.seeds), list(cfg.sweep.scenarios)
    groups: dict[str, dict[str, np.ndarray]] = {}
    missing: dict[str, int] = {}
    keys = (*METRICS, *TRIGGER_METRICS)
    for c in cells:
        mats = groups.setdefault(c.group, {k: np.full((len(seeds), len(scens)), np.nan)
                                           for k in keys})
        res = store.load(c)
        if res is None:
            missing[c.group] = missing.get(c.group, 0) + 1
            continue
        vals = {**res["metrics"], **res["triggers"]}
        for k in keys:
            v = vals.get(k)
            mats[k][seeds.index(c.seed), scens.index(c.scenario)] = (math.nan if v is None
                                                                      else v)
    out: dict[str, Any] = {"methods": {}, "errors": store.errors(), "cells": len(cells)}
    for g, mats in groups.items():
        stats = summarize(mats, reps=cfg.stats.bootstrap, confidence=cfg.stats.confidence,
                          seed=cfg.seed)
        out["methods"][g] = {
            "missing_cells": missing.get(g, 0),
            "mean": {k: float(np.nanmean(m)) if np.any(np.isfinite(m)) else math.nan
                     for k, m in mats.items()},
            "iqm": {k: iv.as_dict() for k, iv in stats.items()},
        }
    return out


def write_sweep_report(root: Path, summary: dict[str, Any]) -> Path:
    """``report.md`` / ``report.html`` with the per-method table and the Pareto front."""
    from takeover.experiments import plots
    from takeover.experiments.report import Block, fmt, fmt_ci, to_html, to_markdown

    methods = summary["methods"]
    pts = {g: (_num(m["mean"].get("interventions_per_episode")),
               _num(m["mean"].get("failure_rate"))) for g, m in methods.items()}
    plots.pareto(pts, root / "figures" / "pareto.png")
    cols = ("success_rate", "failure_rate", "interventions_per_episode", "human_share",
            "takeover_time", "false_alarm_rate", "missed_failures_per_episode")
    blocks = [
        Block("h1", "Takeover sweep"),
        Block("p", f"{summary['cells']} cells; values are IQM [CI] over seeds x scenarios."),
        Block("table", (["gate/estimator/human", *cols, "missing"],
                        [[g, *(fmt_ci(m["iqm"].get(k)) for k in cols),
                          fmt(m["missing_cells"])] for g, m in methods.items()])),
        Block("img", ("figures/pareto.png", "Pareto front")),
    ]
    if summary["errors"]:
        blocks += [Block("h2", "Failed cells"), Block("table", (
            ["cell", "error"], [[k, v] for k, v in summary["errors"].items()]))]
    atomic_write_text(root / "report.md", to_markdown(blocks))
    atomic_write_text(root / "report.html", to_html(blocks, "takeover sweep"))
    return root / "report.md"


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)
