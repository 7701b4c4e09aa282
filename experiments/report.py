"""``report.md`` and ``report.html`` of a run folder: tables and figures from the metrics.

The report is built as a list of blocks (heading, text, table, figure) rendered twice, so
the Markdown and the HTML always say the same thing. Numbers are IQM with their bootstrap
confidence interval where seeds allow, plus the pooled value.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from takeover.atomic import atomic_write_text
from takeover.experiments import plots
from takeover.experiments.metrics import METRICS, TRIGGER_METRICS

HEADLINE = ("success_rate", "collision_rate", "offroad_rate", "interventions_per_episode",
            "interventions_per_km", "human_share", "context_switches_per_episode",
            "tor_lead_time", "takeover_time", "min_ttc_after_takeover", "missed_failure_rate",
            "rohe")


@dataclass(frozen=True)
class Block:
    kind: str  # "h2", "p", "table", "img"
    content: Any


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def fmt_ci(iv: Mapping[str, Any] | None) -> str:
    if not iv or not math.isfinite(_num(iv.get("iqm"))):
        return "–"
    if not math.isfinite(_num(iv.get("lo"))) or iv["lo"] == iv["hi"]:
        return fmt(iv["iqm"])
    return f"{fmt(iv['iqm'])} [{fmt(iv['lo'])}, {fmt(iv['hi'])}]"


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.content}\n")
        elif b.kind == "h2":
            out.append(f"## {b.content}\n")
        elif b.kind == "p":
            out.append(f"{b.content}\n")
        elif b.kind == "table":
            head, rows = b.content
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        elif b.kind == "img":
            src, alt = b.content
            out.append(f"![{alt}]({src})\n")
    return "\n".join(out)


def to_html(blocks: Sequence[Block], title: str) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>{e(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;"
           "margin:auto}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid "
           "#ccc;padding:3px 6px;text-align:right}th{background:#eee}img{max-width:100%}"
           "</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            out.append(f"<{b.kind}>{e(b.content)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{e(b.content)}</p>")
        elif b.kind == "table":
            head, rows = b.content
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</table>")
        elif b.kind == "img":
            src, alt = b.content
            out.append(f"<p><img src='{e(src)}' alt='{e(alt)}'></p>")
    out.append("</body></html>")
    return "\n".join(out)


def figures(run_dir: Path, cfg: Any, metrics: Mapping[str, Any],
            results: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Draw every figure the data allows; ``(relative path, caption)`` pairs."""
    fig_dir = run_dir / "figures"
    out = []
    main = (results or {}).get("supervised")
    if main is not None and main.traces:
        plots.timeline(main.traces, fig_dir / "timeline.png", cfg.supervisor.gate_score)
        out.append(("figures/timeline.png", "Episode timelines of the configured gate"))
    pts = {name: (_num(m["interventions_per_episode"]), _num(m["failure_rate"]))
           for name, m in metrics["conditions"].items()}
    plots.pareto(pts, fig_dir / "pareto.png")
    out.append(("figures/pareto.png", "Intervention rate vs failure rate per condition"))
    if metrics.get("rounds"):
        plots.learning_curves(metrics["rounds"], fig_dir / "learning_curves.png")
        out.append(("figures/learning_curves.png", "Across fine-tuning rounds (held-out seeds)"))
    if metrics.get("roc"):
        plots.roc(metrics["roc"], fig_dir / "roc.png", cfg.counterfactual.horizon)
        out.append(("figures/roc.png", "Estimators predicting agent-alone failure"))
    return out


def build_blocks(cfg: Any, metrics: Mapping[str, Any],
                 figs: Sequence[tuple[str, str]]) -> list[Block]:
    conds = list(metrics["conditions"])
    s = cfg.supervisor
    blocks = [
        Block("h1", f"Takeover experiment: {cfg.name}"),
        Block("p", f"Agent `{cfg.agent.name}`, gate `{s.gate}` on `{s.gate_score}`, human "
                   f"`{s.human}`, scenarios {', '.join(cfg.env.scenarios)}; "
                   f"{cfg.eval.seeds} seeds x {cfg.eval.episodes} episodes per scenario per "
                   f"condition; {cfg.train.rounds} round(s) of {cfg.train.method}. "
                   f"Values: IQM [{cfg.stats.confidence:.0%} stratified bootstrap CI, "
                   f"{cfg.stats.bootstrap} resamples] over seeds x scenarios."),
        Block("h2", "Main metrics"),
        Block("table", (["metric", *conds],
                        [[m] + [fmt_ci(metrics["iqm"][c].get(m)) for c in conds]
                         for m in HEADLINE])),
        Block("h2", "Pooled over all episodes"),
        Block("table", (["metric", *conds],
                        [[m] + [fmt(metrics["conditions"][c].get(m)) for c in conds]
                         for m in METRICS])),
        Block("h2", "Trigger quality (counterfactual labels)"),
        Block("table", (["metric", *conds],
                        [[m] + [fmt(metrics["triggers"][c].get(m)) for c in conds]
                         for m in (*TRIGGER_METRICS, "labels", "request_rate")])),
        Block("h2", "Success rate per scenario"),
        Block("table", (["scenario", *conds],
                        [[sc] + [fmt(metrics["per_scenario"][c][sc]["success_rate"])
                                 for c in conds] for sc in metrics["scenarios"]])),
    ]
    if metrics.get("roc"):
        blocks += [Block("h2", "Estimators"), Block("table", (
            ["estimator", "AUROC", "AUPRC", "labelled steps", "needed"],
            [[n, fmt(r.get("auroc")), fmt(r.get("auprc")), str(r["n"]), str(r["positives"])]
             for n, r in metrics["roc"].items()]))]
    if metrics.get("rounds"):
        keys = [k for k in metrics["rounds"][0] if k != "round"]
        blocks += [Block("h2", "Rounds"), Block("table", (
            ["round", *keys],
            [[str(r["round"])] + [fmt(r.get(k)) for k in keys] for r in metrics["rounds"]]))]
    if figs:
        blocks.append(Block("h2", "Figures"))
        for src, caption in figs:
            blocks += [Block("p", caption), Block("img", (src, caption))]
    blocks += [Block("h2", "Definitions"), Block("table", (
        ["metric", "definition"],
        [[k, v] for k, v in metrics["metric_definitions"].items()]))]
    return blocks


def write_report(run_dir: Path, cfg: Any, metrics: Mapping[str, Any],
                 results: Mapping[str, Any] | None = None) -> Path:
    """Write the figures, ``report.md`` and ``report.html``; returns the Markdown path."""
    figs = figures(run_dir, cfg, metrics, results) if cfg.figures else []
    blocks = build_blocks(cfg, metrics, figs)
    atomic_write_text(run_dir / "report.md", to_markdown(blocks))
    atomic_write_text(run_dir / "report.html", to_html(blocks, cfg.name))
    return run_dir / "report.md"
