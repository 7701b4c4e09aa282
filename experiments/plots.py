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


class EmptyFigureError(ValueError):
    """A figure would have been written with an axes that shows no data."""


def empty_axes(fig: Figure) -> list[str]:
    """Titles (or indices) of the axes of ``fig`` that draw no data: no line with a finite
    point, no collection (scatter, error bars, bands) and no bar."""
    empty = []
    for k, ax in enumerate(fig.axes):
        lines = [ln for ln in ax.get_lines() if np.any(np.isfinite(
            np.asarray(ln.get_ydata(), dtype=float))) and ln.get_label() != "chance"]
        if not lines and not ax.collections and not ax.patches:
            empty.append(ax.get_title() or f"axes {k}")
    return empty


def _save(fig: Figure, path: Path, top: float = 1.0) -> Path:
    """Write ``fig`` as PNG; refuses a figure with an empty axes (it would look like a
    result and show none)."""
    empty = empty_axes(fig)
    if empty:
        raise EmptyFigureError(f"{path.name}: axes with no data: {', '.join(empty)}")
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


Point = tuple[float, float]
Span = tuple[float, float]


def label_groups(points: Mapping[str, Point], tol: float = 0.01) -> list[list[str]]:
    """Names of the finite points grouped by closeness: two points share a group when they
    are within ``tol`` of each axis' span of each other (chained), so conditions that land
    on one spot (``absent``, ``never`` and ``agent_alone`` at no human time and the same
    failures) get one label listing them all, not three labels drawn over each other."""
    ok = {k: v for k, v in points.items() if all(math.isfinite(c) for c in v)}
    if not ok:
        return []
    xy = np.array(list(ok.values()), dtype=float)
    span = np.where(np.ptp(xy, axis=0) > 0, np.ptp(xy, axis=0), 1.0)
    names = list(ok)
    group = list(range(len(names)))  # union-find over close pairs

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i in range(len(names)):
        for j in range(i):
            if np.all(np.abs(xy[i] - xy[j]) <= tol * span):
                group[root(i)] = root(j)
    out: dict[int, list[str]] = {}
    for i, n in enumerate(names):
        out.setdefault(root(i), []).append(n)
    return list(out.values())


def pareto(points: Mapping[str, Point], path: Path, *,
           errors: Mapping[str, tuple[Span, Span]] | None = None,
           xlabel: str = "human time per episode, s",
           ylabel: str = "failure rate (collision or off-road)") -> Path:
    """Human effort vs failure rate per condition with 95% CI error bars on both axes
    (``errors[name] = ((x_lo, x_hi), (y_lo, y_hi))``), the Pareto front through the
    non-dominated conditions and one label per group of points that land on one spot
    (:func:`label_groups`), offset to stay readable."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    front = pareto_front(points)
    shown = [(n, p) for n, p in points.items() if all(math.isfinite(c) for c in p)]
    for name, (x, y) in shown:
        colour = "#e76f51" if name in front else "#457b9d"
        err = (errors or {}).get(name)
        if err is not None:
            (xl, xh), (yl, yh) = err
            xerr = [[max(x - xl, 0.0) if math.isfinite(xl) else 0.0],
                    [max(xh - x, 0.0) if math.isfinite(xh) else 0.0]]
            yerr = [[max(y - yl, 0.0) if math.isfinite(yl) else 0.0],
                    [max(yh - y, 0.0) if math.isfinite(yh) else 0.0]]
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color=colour, ms=5,
                        capsize=3, lw=1, zorder=3)
        else:
            ax.scatter([x], [y], s=30, color=colour, zorder=3)
    groups = sorted(label_groups(points), key=lambda g: points[g[0]])
    labels = []
    for names in groups:
        x, y = (float(np.mean([points[n][i] for n in names])) for i in (0, 1))
        labels.append(ax.annotate(", ".join(names), (x, y), fontsize=8, xytext=(6, 4),
                                  textcoords="offset points",
                                  arrowprops={"arrowstyle": "-", "lw": 0.5,
                                              "color": "#999999"}))
    if len(front) > 1:
        xs, ys = zip(*(points[k] for k in front), strict=True)
        ax.plot(xs, ys, color="#e76f51", lw=1, zorder=2, label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"human effort vs {ylabel.split(' (')[0]} (95% CI)", fontsize=9)
    ax.grid(alpha=0.3)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.08 * (hi - lo))  # room for the labels of the top points
    separate_labels(fig, labels)
    return _save(fig, path)


LABEL_SLOTS = [(dx, dy) for r in (1, 2, 3) for dy in (4 + 11 * (r - 1), -4 - 11 * r)
               for dx in (6, -6)]
"""Label offsets from a point (points; ``dx < 0`` puts the label left of it), nearest
first: :func:`separate_labels` takes the first that overlaps no label placed before."""


def separate_labels(fig: Figure, labels: Sequence[Any], marker: float = 6.0) -> None:
    """Place each annotation at the first of :data:`LABEL_SLOTS` around its point where it
    overlaps no earlier label and no point's marker (a square of ``marker`` px around each
    annotated point) and stays inside the axes, so no two labels are drawn over each other
    and none sits on another condition's point (checked on the laid-out figure, in display
    pixels); the first slot if none is free."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.tight_layout()

    def extent(a: Any) -> Any:  # the text alone, not its leader line
        a.update_positions(renderer)  # apply the new offset first
        return Text.get_window_extent(a, renderer)

    placed: list[Any] = []
    for a in labels:
        x, y = a.axes.transData.transform(a.xy)
        placed.append(Bbox.from_extents(x - marker, y - marker, x + marker, y + marker))
    for a in labels:
        frame = a.axes.get_window_extent(renderer)
        for dx, dy in [*LABEL_SLOTS, LABEL_SLOTS[0]]:
            a.set_horizontalalignment("left" if dx > 0 else "right")
            a.xyann = (dx, dy)
            box = extent(a)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                      and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(b) for b in placed):
                break
        placed.append(extent(a))


def learning_curves(rows: Sequence[Mapping[str, Any]], path: Path,
                    metrics: Sequence[str] = ("success_rate", "failure_rate",
                                              "human_share")) -> Path:
    """Each metric across fine-tuning rounds, supervised and agent alone, with the 95% CI of
    each round's held-out evaluation as a band (``<cond>.<metric>.ci`` in the rows)."""
    fig = Figure(figsize=(4 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    rounds = [r["round"] for r in rows]
    for ax, m in zip(axes[0], metrics, strict=True):
        for cond, style in (("supervised", "-o"), ("agent_alone", "--s")):
            ys: list[Any] = [r.get(f"{cond}.{m}") for r in rows]
            ys = [math.nan if y is None else y for y in ys]
            if not any(math.isfinite(y) for y in ys):
                continue
            (line,) = ax.plot(rounds, ys, style, label=cond, ms=4)
            ci = [r.get(f"{cond}.{m}.ci") or [None, None] for r in rows]
            lo = [math.nan if c[0] is None else c[0] for c in ci]
            hi = [math.nan if c[1] is None else c[1] for c in ci]
            if any(math.isfinite(v) for v in lo):
                ax.fill_between(rounds, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(f"{m} (95% CI)", fontsize=9)
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
        ax.grid(alpha=0.3)
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize=8)
    return _save(fig, path)


def roc(curves: Mapping[str, Mapping[str, Any]], path: Path, horizon: float,
        auroc: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """ROC of each estimator for predicting an agent-alone failure within ``horizon``, the
    AUROC and its episode-cluster 95% CI in the legend (``auroc[name] = {value, lo, hi}``)."""
    fig = Figure(figsize=(5, 4.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="chance")
    for name, c in curves.items():
        a = (auroc or {}).get(name) or {}
        v, lo, hi = (a.get(k) for k in ("value", "lo", "hi"))
        if isinstance(v, float) and math.isfinite(v):
            label = f"{name} AUROC {v:.2f} [{lo:.2f}, {hi:.2f}]" if isinstance(lo, float) \
                else f"{name} AUROC {v:.2f}"
        else:
            label = f"{name} (n/a)"
        ax.plot(c["fpr"], c["tpr"], lw=1.5, label=label)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"agent-alone failure within {horizon:g} s (95% CI)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def intervals(rows: Mapping[str, Mapping[str, tuple[float, float, float]]], path: Path,
              title: str) -> Path:
    """Forest plot: per metric (one axes each), every condition's value with its 95% CI."""
    metrics = list(rows)
    fig = Figure(figsize=(3.2 * len(metrics), 0.45 * max(len(v) for v in rows.values()) + 1.4))
    axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], metrics, strict=True):
        names = list(rows[m])
        for k, name in enumerate(names):
            v, lo, hi = rows[m][name]
            if not math.isfinite(v):
                continue
            ax.errorbar([v], [k], xerr=[[v - lo if math.isfinite(lo) else 0.0],
                                        [hi - v if math.isfinite(hi) else 0.0]],
                        fmt="o", color="#264653", capsize=3, ms=4)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=8)
        ax.set_title(m, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, top=0.92)
