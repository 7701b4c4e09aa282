"""CI expectations on a run's metrics: ``--expect 'success_rate>=0.9'`` and JUnit XML.

An expectation is ``[condition.]metric OP number`` with OP one of ``>= <= > < == !=``; the
condition defaults to ``supervised`` (the configured gate). Values are the pooled metrics of
``metrics.json["conditions"]`` -- the statistic of the report's headline table, whose 95% CI
the message repeats -- and the trigger metrics. A metric that is undefined in the run (NaN,
e.g. a takeover time when nobody took over) fails the expectation, saying so.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from takeover.atomic import atomic_write_text
from takeover.config import ConfigError
from takeover.registry import closest

OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
       ">": operator.gt, "<": operator.lt}
_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+|nan|inf)\s*$")


@dataclass(frozen=True)
class Expectation:
    text: str
    condition: str
    metric: str
    op: str
    value: float


@dataclass(frozen=True)
class Outcome:
    expectation: Expectation
    actual: float | None
    passed: bool
    message: str


def parse(text: str, default_condition: str = "supervised") -> Expectation:
    m = _RE.match(text)
    if not m:
        raise ConfigError(
            f"--expect {text!r} is not 'metric OP number' (OP: {' '.join(OPS)}), e.g. "
            "'success_rate>=0.9' or 'agent_alone.collision_rate<=0.5'"
        )
    key, op, num = m.groups()
    cond, _, metric = key.rpartition(".")
    return Expectation(text.strip(), cond or default_condition, metric, op, float(num))


def _values(metrics: Mapping[str, Any], condition: str) -> dict[str, Any]:
    conds = metrics["conditions"]
    if condition not in conds:
        raise ConfigError(f"--expect: no condition {condition!r} in this run."
                          f"{closest(condition, list(conds))} Conditions: {', '.join(conds)}")
    return {**conds[condition], **metrics.get("triggers", {}).get(condition, {})}


def check(metrics: Mapping[str, Any], texts: Sequence[str]) -> list[Outcome]:
    """Evaluate every expectation (unknown metric or condition -> ``ConfigError``)."""
    out = []
    for text in texts:
        e = parse(text)
        vals = _values(metrics, e.condition)
        if e.metric not in vals:
            raise ConfigError(f"--expect {text!r}: unknown metric {e.metric!r}."
                              f"{closest(e.metric, list(vals))} Metrics: {', '.join(vals)}")
        v = vals[e.metric]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(Outcome(e, None, False,
                               f"{e.text}: {e.condition}.{e.metric} is undefined in this run"))
            continue
        ok = bool(OPS[e.op](float(v), e.value))
        iv = metrics.get("ci", {}).get(e.condition, {}).get(e.metric) or {}
        ci = (f" [95% CI {iv['lo']:.3g}, {iv['hi']:.3g}]"
              if isinstance(iv.get("lo"), float) and isinstance(iv.get("hi"), float) else "")
        out.append(Outcome(e, float(v), ok,
                           f"{e.text}: {e.condition}.{e.metric} = {float(v):.6g}{ci} "
                           f"-> {'ok' if ok else 'FAILED'}"))
    return out


def junit_xml(outcomes: Sequence[Outcome], suite: str) -> str:
    """One ``testcase`` per expectation (a CI service shows each as a test)."""
    fails = sum(not o.passed for o in outcomes)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f"<testsuites><testsuite name={quoteattr(suite)} tests=\"{len(outcomes)}\" "
             f"failures=\"{fails}\" errors=\"0\">"]
    for o in outcomes:
        lines.append(f"  <testcase classname={quoteattr(suite)} "
                     f"name={quoteattr(o.expectation.text)}>")
        if not o.passed:
            lines.append(f"    <failure message={quoteattr(o.message)}>{escape(o.message)}"
                         "</failure>")
        lines.append("  </testcase>")
    lines.append("</testsuite></testsuites>")
    return "\n".join(lines) + "\n"


def write_junit(path: str | Path, outcomes: Sequence[Outcome], suite: str) -> None:
    atomic_write_text(Path(path), junit_xml(outcomes, suite))
