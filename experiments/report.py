"""``report.md`` and ``report.html`` of a run folder: tables and figures from the metrics.

The report is built as a list of blocks (heading, text, table, figure) rendered twice, so
the Markdown and the HTML always say the same thing. It opens with what was evaluated (the
shipped agent or the one fine-tuned for k rounds), the design (episodes, held-out seeds) and
the sanity invariants (``invariants.py``), then the headline: pooled values with their 95%
bootstrap CIs, the statistic ``--expect`` checks. Every comparison is a paired difference on
the same seeds with its CI and p-value.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from takeover.atomic import atomic_write_text
from takeover.experiments import plots
from takeover.experiments.metrics import TRIGGER_METRICS

HEADLINE = ("success_rate", "safety_rate", "failure_rate", "success_rate_hazard",
            "mrm_rate", "interventions_per_episode", "human_time_per_episode", "human_share",
            "rohe")
"""The headline table: pooled value [95% CI] per condition; ``--expect`` checks these values."""

OUTCOME_TABLE = ("success_rate", "collision_rate", "offroad_rate", "stopped_rate",
                 "pulled_over_rate", "timeout_rate", "unknown_outcome_rate", "hazard_fired_rate",
                 "failure_rate_hazard")
HANDOVER_TABLE = ("tors_per_episode", "tor_lead_time", "takeover_time", "min_ttc_human",
                  "no_conflict_share", "self_initiated_per_episode",
                  "context_switches_per_episode", "interventions_per_km", "missed_failure_rate",
                  "km_per_episode", "mean_return")
COMPARISON_METRICS = ("success_rate", "safety_rate", "human_time_per_episode", "rohe")


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
    """``value [lo, hi]`` of an interval dict (``value`` or, for IQM dicts, ``iqm``)."""
    if not iv:
        return "–"
    v = _num(iv.get("value", iv.get("iqm")))
    if not math.isfinite(v):
        return "–"
    lo, hi = _num(iv.get("lo")), _num(iv.get("hi"))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt(v)
    return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"


def fmt_diff(d: Mapping[str, Any] | None) -> str:
    """``+diff [lo, hi] p=...`` of a paired difference."""
    if not d or not math.isfinite(_num(d.get("diff"))):
        return "–"
    return (f"{_num(d['diff']):+.3g} [{_num(d['lo']):+.3g}, {_num(d['hi']):+.3g}] "
            f"p={_num(d['p']):.2g}")


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


def _span(iv: Mapping[str, Any] | None) -> tuple[float, float]:
    return (_num((iv or {}).get("lo")), _num((iv or {}).get("hi")))


def figures(run_dir: Path, cfg: Any, metrics: Mapping[str, Any],
            results: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Draw every figure the data allows; ``(relative path, caption)`` pairs. Every figure
    shows 95% confidence intervals."""
    fig_dir = run_dir / "figures"
    out = []
    main = (results or {}).get("supervised")
    if main is not None and main.traces:
        plots.timeline(main.traces, fig_dir / "timeline.png", cfg.supervisor.gate_score)
        out.append(("figures/timeline.png", "Episode timelines of the configured gate "
                    "(single episodes: no interval applies)"))
    conds, ci = metrics["conditions"], metrics["ci"]
    # y = episodes that did not arrive: a failure-rate axis would put the absent human
    # (every hazard ends in the minimal-risk manoeuvre's standstill) on the front for free
    pts = {n: (_num(m["human_time_per_episode"]), 1.0 - _num(m["success_rate"]))
           for n, m in conds.items()}
    errs = {n: (_span(ci[n]["human_time_per_episode"]),
                cast("tuple[float, float]",
                     tuple(1.0 - v for v in reversed(_span(ci[n]["success_rate"])))))
            for n in conds}
    plots.pareto(pts, fig_dir / "pareto.png", errors=errs,
                 ylabel="not arrived (1 - success rate)")
    out.append(("figures/pareto.png", "Human effort vs episodes that did not arrive, per "
                "condition, 95% CI on both axes (a standstill is not an arrival, so doing "
                "nothing does not reach the front)"))
    rows = {m: {n: (_num(ci[n][m]["value"]), *_span(ci[n][m])) for n in conds}
            for m in ("success_rate", "safety_rate", "rohe")}
    plots.intervals(rows, fig_dir / "headline.png", "headline metrics, 95% CI")
    out.append(("figures/headline.png", "Headline metrics per condition with 95% CIs"))
    curve = metrics.get("learning_curve") or []
    if curve and curve[0].get("seeds", 1) > 1:
        plots.learning_curves(curve, fig_dir / "learning_curves.png")
        out.append(("figures/learning_curves.png", f"Across fine-tuning rounds: mean over "
                    f"{curve[0]['seeds']} fine-tuning seeds, 95% t-interval over them "
                    "(held-out round seeds; round 0, the starting agent, evaluated once)"))
    elif metrics.get("rounds"):
        plots.learning_curves(metrics["rounds"], fig_dir / "learning_curves.png")
        out.append(("figures/learning_curves.png", "Across fine-tuning rounds (one "
                    "fine-tuning seed; 95% CI bands over held-out episodes)"))
    if metrics.get("roc"):
        h = cfg.metrics.horizons[0]
        tq = metrics.get("trigger_quality", {})
        auc = {e: tq.get(e, {}).get("all", {}).get(f"{h:g}s", {}).get("all_steps", {})
               .get("auroc") for e in metrics["roc"]}
        plots.roc(metrics["roc"], fig_dir / "roc.png", h, auc)
        out.append(("figures/roc.png", "Estimators predicting the agent-alone failure "
                    f"within {h:g} s (held-out agent-alone episodes)"))
    return out


def _random_gate_blocks(metrics: Mapping[str, Any]) -> list[Block]:
    """How each random twin was matched to the configured gate, and how well."""
    out = []
    conds = metrics["conditions"]
    design = metrics.get("design", {})
    for name, key, what in (("random", "random_gate", "takeover requests per episode (not on "
                             "the share of request steps: the configured gate's request "
                             "stays on for a whole takeover)"),
                            ("random_time", "random_gate_time", "human-controlled seconds per "
                             "episode (the second check: a gate must not win only by keeping "
                             "the human longer per request)")):
        rg = design.get(key) or {}
        if not rg or name not in conds:
            continue
        on = rg.get("matched_on", "tors_per_episode")
        got = {c: _num(conds[c].get(on)) for c in ("supervised", name)}
        seeds = rg.get("calibration_seeds", ["?", "?"])
        out.append(Block("p", f"Random gate `{name}`: matched on {what}. Per-step rate "
                              f"{fmt(_num(rg.get('rate')))} from {len(rg.get('plays', []))} "
                              f"play(s) on calibration seeds {seeds[0]}-{seeds[1]}; realised "
                              f"here {fmt(got[name])} against the configured gate's "
                              f"{fmt(got['supervised'])} ({on})."))
    return out


def _unknown_outcome_blocks(metrics: Mapping[str, Any]) -> list[Block]:
    """A warning when episodes ended without a world outcome: success (arrived) cannot be
    measured on them, and they are never counted as successes."""
    unknown = {c: _num(m.get("unknown_outcome_rate")) for c, m in metrics["conditions"].items()}
    bad = {c: u for c, u in unknown.items() if math.isfinite(u) and u > 0}
    if not bad:
        return []
    worst = max(bad.values())
    return [Block("p", f"WARNING: up to {worst:.0%} of the episodes of a condition ended without "
                       "an outcome from the world (info['outcome'] missing: a world older "
                       "than the outcome list). They count as no success, so every success "
                       "rate here is a lower bound; safety rates are exact (read from the "
                       "collision / off-road flags).")]


def _invariant_blocks(metrics: Mapping[str, Any]) -> list[Block]:
    invs = metrics.get("invariants", [])
    failed = [iv for iv in invs if iv["status"] == "FAIL"]
    open_ = [iv for iv in invs if iv["status"] == "unresolved"]
    head = (f"{sum(iv['status'] == 'pass' for iv in invs)} pass, {len(failed)} fail, "
            f"{len(open_)} not resolved at this sample size, "
            f"{sum(iv['status'] == 'n/a' for iv in invs)} not applicable. A '>=' relation "
            "fails when the paired difference is significantly negative and is not resolved "
            "when it is negative with a CI holding 0; 'beats' passes only when the "
            "difference is significantly positive and is not resolved when it is positive "
            "with a CI holding 0.")
    blocks = [Block("h2", "Sanity invariants"), Block("p", head)]
    blocks += [Block("p", f"WARNING: {iv['name']} is violated: {iv['message']}")
               for iv in failed]
    blocks += [Block("p", f"NOT RESOLVED: {iv['name']}: {iv['message']}") for iv in open_]
    blocks.append(Block("table", (["status", "invariant", "evidence"],
                                  [[iv["status"], iv["name"], iv["message"]] for iv in invs])))
    return blocks


def _trigger_blocks(cfg: Any, metrics: Mapping[str, Any]) -> list[Block]:
    tq = metrics.get("trigger_quality") or {}
    if not tq:
        return []
    hs = list(cfg.metrics.horizons)
    h0 = f"{hs[0]:g}s"
    scen = ["all", *metrics["scenarios"]]
    held = "held-out" if metrics.get("design", {}).get("held_out") else "development-seed"
    blocks = [Block("h2", f"Trigger quality ({held} agent-alone episodes)"),
              Block("p", f"Label: the agent alone fails (collision or off-road) within h s "
                         f"of the step. AUROC [95% episode-cluster bootstrap CI, "
                         f"{cfg.stats.auc_bootstrap} resamples]; hazard window: steps within "
                         f"h s of the hazard onset. Headline horizon {hs[0]:g} s (the average "
                         "human's takeover time under urgency is 2.7 s).")]
    rows = []
    for est, per in tq.items():
        for sc in scen:
            r = per.get(sc)
            if not r or h0 not in r:
                continue
            a = r[h0]
            rows.append([est, sc, str(r["episodes"]), str(r["failed_episodes"]),
                         fmt_ci(a["all_steps"]["auroc"]), fmt_ci(a["all_steps"]["auprc"]),
                         fmt_ci(a["hazard_window"]["auroc"])])
    blocks.append(Block("table", (["estimator", "scenario", "episodes", "failed",
                                   f"AUROC @{h0}", f"AUPRC @{h0}",
                                   f"AUROC hazard window @{h0}"], rows)))
    if len(hs) > 1:
        blocks.append(Block("table", (["estimator", *[f"AUROC @{h:g}s" for h in hs],
                                       *[f"hazard window @{h:g}s" for h in hs]],
                                      [[est] + [fmt_ci(per["all"][f"{h:g}s"]["all_steps"]
                                                       ["auroc"]) for h in hs]
                                       + [fmt_ci(per["all"][f"{h:g}s"]["hazard_window"]
                                                 ["auroc"]) for h in hs]
                                       for est, per in tq.items() if "all" in per])))
    blocks.append(Block("p", f"Warning lead time at a {cfg.metrics.false_alarm:.0%} false-alarm "
                             f"rate (threshold from steps more than {cfg.metrics.lead_window:g} "
                             "s from any failure): median over failed episodes, s."))
    blocks.append(Block("table", (["estimator", "scenario", "lead time, s", "detected",
                                   "failed episodes"],
                                  [[est, sc, fmt_ci(per[sc]["lead"]["lead_time"]),
                                    fmt_ci(per[sc]["lead"]["detected"]),
                                    str(per[sc]["failed_episodes"])]
                                   for est, per in tq.items() for sc in scen if sc in per])))
    return blocks


def _round_blocks(metrics: Mapping[str, Any]) -> list[Block]:
    rows = metrics.get("rounds") or []
    if not rows:
        return []

    def ci(r, c, m):
        lo, hi = (r.get(f"{c}.{m}.ci") or [None, None])
        return fmt_ci({"value": r.get(f"{c}.{m}"), "lo": lo, "hi": hi})

    n = rows[0].get("episodes_per_condition")
    held = "held-out" if metrics.get("design", {}).get("held_out") else "development-seed"
    blocks = [Block("h2", "Fine-tuning rounds"),
              Block("p", f"Round 0 is the shipped agent; every round is evaluated on the same "
                         f"{n} {held} episodes per condition; differences are paired on "
                         "those seeds.")]
    blocks.append(Block("table", (
        ["round", "supervised success", "vs round 0", "agent-alone success", "vs round 0"],
        [[str(r["round"]), ci(r, "supervised", "success_rate"),
          fmt_diff(r.get("supervised.success_rate.vs_round0")),
          ci(r, "agent_alone", "success_rate"),
          fmt_diff(r.get("agent_alone.success_rate.vs_round0"))] for r in rows])))
    blocks.append(Block("table", (
        ["round", "supervised failure", "vs round 0", "agent-alone failure", "vs round 0",
         "human share"],
        [[str(r["round"]), ci(r, "supervised", "failure_rate"),
          fmt_diff(r.get("supervised.failure_rate.vs_round0")),
          ci(r, "agent_alone", "failure_rate"),
          fmt_diff(r.get("agent_alone.failure_rate.vs_round0")),
          ci(r, "supervised", "human_share")] for r in rows])))
    blocks.append(Block("table", (
        ["round", "new human steps", "aggregate size", "BC loss first", "BC loss last"],
        [[str(r["round"]), fmt(r.get("new_human_steps")), fmt(r.get("aggregate_size")),
          fmt(r.get("bc_loss_first")), fmt(r.get("bc_loss_last"))] for r in rows])))
    curve = metrics.get("learning_curve") or []
    if curve and curve[0].get("seeds", 1) > 1:
        k = curve[0]["seeds"]
        blocks.append(Block("p", f"Learning curve over {k} independent fine-tuning seeds "
                                 "(mean [95% t-interval over seeds]; the final evaluation "
                                 "uses seed 0's agent). Round 0 is the starting agent, the "
                                 "same for every seed: it is evaluated once, so its "
                                 "interval has no width."))
        blocks.append(Block("table", (
            ["round", "supervised success", "agent-alone success", "agent-alone failure",
             "human share"],
            [[str(r["round"]), ci(r, "supervised", "success_rate"),
              ci(r, "agent_alone", "success_rate"), ci(r, "agent_alone", "failure_rate"),
              ci(r, "supervised", "human_share")] for r in curve])))
    ests = sorted({e for r in rows for e in (r.get("agent_alone.auroc") or {})})
    if ests:
        blocks.append(Block("table", (
            ["round", *[f"{e} AUROC" for e in ests]],
            [[str(r["round"])] + [fmt_ci((r.get("agent_alone.auroc") or {}).get(e))
                                  for e in ests] for r in rows])))
    return blocks


def build_blocks(cfg: Any, metrics: Mapping[str, Any],
                 figs: Sequence[tuple[str, str]]) -> list[Block]:
    conds = list(metrics["conditions"])
    s = cfg.supervisor
    d = metrics.get("design", {})
    seeds = d.get("eval_seeds", ["?", "?"])
    held = "held-out" if d.get("held_out") else "NOT held-out (development seeds)"
    ci = metrics["ci"]

    def table(names: Sequence[str]) -> Block:
        return Block("table", (["metric", *conds],
                               [[m] + [fmt_ci(ci[c].get(m)) for c in conds] for m in names]))

    blocks = [
        Block("h1", f"Takeover experiment: {cfg.name}"),
        Block("p", f"Agent evaluated: {metrics.get('agent', {}).get('evaluated', cfg.agent.name)}"
                   f". Gate `{s.gate}` on `{s.gate_score}`, human `{s.human}`, scenarios "
                   f"{', '.join(cfg.env.scenarios)}."),
        Block("p", f"Design: {d.get('episodes_per_condition')} episodes per condition "
                   f"({d.get('episodes_per_scenario')} per scenario), the same {held} seeds "
                   f"{seeds[0]}-{seeds[1]} in every condition. Values: pooled over episodes "
                   f"[{cfg.stats.confidence:.0%} CI, bootstrap of episodes stratified by "
                   f"scenario, {cfg.stats.bootstrap} resamples]. The human models' "
                   "takeover times and brake reactions against the literature they claim: "
                   "`takeover humans report`."),
        *_random_gate_blocks(metrics),
        *_unknown_outcome_blocks(metrics),
        *_invariant_blocks(metrics),
        Block("h2", "Headline"),
        table(HEADLINE),
        Block("h2", "Paired comparisons (same seeds)"),
        Block("table", (["comparison", *COMPARISON_METRICS],
                        [[name] + [fmt_diff(c.get(m)) for m in COMPARISON_METRICS]
                         for name, c in metrics.get("comparisons", {}).items()])),
        Block("h2", "Outcomes"),
        table(OUTCOME_TABLE),
        Block("h2", "Handover and human effort"),
        table(HANDOVER_TABLE),
        Block("h2", "Per scenario (success rate; IQM over scenarios as a secondary column)"),
        Block("table", (["scenario", *conds],
                        [[sc] + [fmt(metrics["per_scenario"][c][sc]["success_rate"])
                                 for c in conds] for sc in metrics["scenarios"]]
                        + [["IQM"] + [fmt(metrics["iqm"][c]["success_rate"]["iqm"])
                                      for c in conds]])),
        *_trigger_blocks(cfg, metrics),
        Block("h2", "Gate triggers (counterfactual labels)"),
        Block("table", (["metric", *conds],
                        [[m] + [fmt(metrics["triggers"][c].get(m)) for c in conds]
                         for m in (*TRIGGER_METRICS, "labels", "request_rate")])),
        *_round_blocks(metrics),
    ]
    if figs:
        blocks.append(Block("h2", "Figures"))
        for src, caption in figs:
            blocks += [Block("p", caption), Block("img", (src, caption))]
    defs = metrics["metric_definitions"]
    blocks += [Block("h2", "Definitions"), Block("table", (
        ["metric", "formula", "unit", "source"],
        [[k, v["formula"], v["unit"], v["source"]] for k, v in defs.items()]))]
    return blocks


def write_report(run_dir: Path, cfg: Any, metrics: Mapping[str, Any],
                 results: Mapping[str, Any] | None = None) -> Path:
    """Write the figures, ``report.md`` and ``report.html``; returns the Markdown path."""
    figs = figures(run_dir, cfg, metrics, results) if cfg.figures else []
    blocks = build_blocks(cfg, metrics, figs)
    atomic_write_text(run_dir / "report.md", to_markdown(blocks))
    atomic_write_text(run_dir / "report.html", to_html(blocks, cfg.name))
    return run_dir / "report.md"
