"""The report's figures, drawn headless: ``matplotlib.figure.Figure`` objects rendered by
the Agg canvas, never ``pyplot``, so no GUI backend is chosen and the user's global backend
is left alone (importing ``gymnasium.utils.play`` would switch it to TkAgg; nothing here
touches it).

Each function takes plain data (no env, no agent) and writes one PNG, so the figures can be
redrawn from ``metrics.json`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

CONTROL_COLOURS = {"human": "#f4a261", "fallback": "#e63946"}


def _save(fig: Figure, path: Path, top: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, top))
    fig.savefig(path, dpi=100)  # a bare Figure renders with the Agg canvas
    return path


def timeline(traces: Sequence[Any], path: Path, score_name: str) -> Path:
    """Per episode: the gate's score against its threshold over time, who drove (shaded),
    takeover requests (triangles) and the hazard onset (dashed)."""
    n = max(len(traces), 1)
    fig = Figure(figsize=(8, 2.2 * n))
    axes = fig.subplots(n, 1, squeeze=False)
    for ax, tr in zip(axes[:, 0], traces, strict=False):
        ax.plot(tr.time, tr.score, color="#264653", lw=1.2, label=f"{score_name} score")
        if np.any(np.isfinite(tr.threshold)):
            ax.plot(tr.time, tr.threshold, color="#2a9d8f", lw=1.0, ls="--", label="threshold")
        dt = float(np.median(np.diff(tr.time))) if len(tr.time) > 1 else 0.1
        for who, colour in CONTROL_COLOURS.items():
            on = np.r_[False, [c == who for c in tr.controller], False].astype(int)
            starts, ends = np.flatnonzero(np.diff(on) == 1), np.flatnonzero(np.diff(on) == -1)
            for a, b in zip(starts, ends, strict=True):  # one span per stretch of control
                ax.axvspan(tr.time[a] - dt, tr.time[b - 1], color=colour, alpha=0.35, lw=0)
        top = np.nanmax(tr.score) if np.any(np.isfinite(tr.score)) else 1.0
        for t in tr.tor_times:
            ax.plot([t], [top], marker="v", color="#e76f51", ms=8, ls="none")
        if math.isfinite(tr.hazard_onset):
            ax.axvline(tr.hazard_onset, color="black", ls=":", lw=1.2)
        ax.set_title(f"{tr.episode}  ({tr.scenario}, end: {tr.reason or 'running'})",
                     fontsize=9)
        ax.set_xlabel("time, s")
        ax.set_ylabel("score")
    handles = [Line2D([], [], color="#264653", label=f"{score_name} score"),
               Line2D([], [], color="#2a9d8f", ls="--", label="threshold"),
               Line2D([], [], color="#e76f51", marker="v", ls="none", label="TOR"),
               Line2D([], [], color="black", ls=":", label="hazard onset"),
               Patch(color=CONTROL_COLOURS["human"], alpha=0.35, label="human drives"),
               Patch(color=CONTROL_COLOURS["fallback"], alpha=0.35, label="fallback")]
    fig.legend(handles=handles, fontsize=7, loc="upper center", ncol=6, frameon=False)
    return _save(fig, path, top=1.0 - 0.25 / fig.get_figheight())


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Names of the non-dominated points (lower x and lower y are better)."""
    ok = {k: v for k, v in points.items() if all(math.isfinite(c) for c in v)}
    front = []
    for k, (x, y) in ok.items():
        if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for x2, y2 in ok.values()):
            front.append(k)
    return sorted(front, key=lambda k: ok[k])


def pareto(points: Mapping[str, tuple[float, float]], path: Path, *,
           xlabel: str = "interventions per episode",
           ylabel: str = "failure rate") -> Path:
    """Intervention rate vs failure rate per gate, with the Pareto front drawn through the
    non-dominated gates."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    front = pareto_front(points)
    for name, (x, y) in points.items():
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        ax.scatter([x], [y], s=40, color="#e76f51" if name in front else "#8d99ae", zorder=3)
        ax.annotate(name, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    if len(front) > 1:
        xs, ys = zip(*(points[k] for k in front), strict=True)
        ax.plot(xs, ys, color="#e76f51", lw=1, zorder=2, label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def learning_curves(rows: Sequence[Mapping[str, Any]], path: Path,
                    metrics: Sequence[str] = ("success_rate", "interventions_per_episode",
                                              "human_share")) -> Path:
    """Each metric across fine-tuning rounds, supervised and agent alone."""
    fig = Figure(figsize=(4 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    rounds = [r["round"] for r in rows]
    for ax, m in zip(axes[0], metrics, strict=True):
        for cond, style in (("supervised", "-o"), ("agent_alone", "--s")):
            ys = [r.get(f"{cond}.{m}") for r in rows]
            ys = [math.nan if y is None else y for y in ys]
            if any(math.isfinite(y) for y in ys):
                ax.plot(rounds, ys, style, label=cond, ms=4)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return _save(fig, path)


def roc(curves: Mapping[str, Mapping[str, Any]], path: Path, horizon: float) -> Path:
    """ROC of each estimator for predicting an agent-alone failure within ``horizon``."""
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="chance")
    for name, c in curves.items():
        auc = c.get("auroc")
        label = f"{name} (AUROC {auc:.2f})" if isinstance(auc, float) else f"{name} (n/a)"
        ax.plot(c["fpr"], c["tpr"], lw=1.5, label=label)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"failure within {horizon:g} s", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
