"""Is the scripted human the human it claims to be? Its takeover times and brake reactions
against the literature targets each preset cites, how each preset drives on its own, and a
sensitivity sweep of any result over the human's parameters.

``takeover humans report --out DIR`` writes ``human_calibration.md`` and ``.png`` (see
:func:`write_report`). Measurements use the held-out seed block (``HELD_OUT_SEED`` upward).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from takeover.atomic import atomic_open, atomic_write_text
from takeover.config import HELD_OUT_SEED

PRESETS = ("expert", "average", "novice")


# --- driving alone -----------------------------------------------------------------------
def drive_alone(skill: str, env_id: str, seeds: Sequence[int], action_type: str = "continuous",
                **overrides: Any) -> np.ndarray:
    """One episode per seed with the human driving from the first step (phase HUMAN), all
    worlds batched; returns each episode's ``info["outcome"]`` (``takeover.envs.OUTCOMES``:
    ``arrived`` is the only success)."""
    import takeover.envs  # noqa: F401  (registers the ids)
    from takeover.envs.vector import make_vector_env
    from takeover.supervisor.humans import HUMANS
    from takeover.types import PHASES, HumanViews, Phase

    n = len(seeds)
    venv = make_vector_env(env_id, n, action_type=action_type)
    humans = HUMANS.make(skill, num_worlds=n, **overrides)
    seeds = [int(s) for s in seeds]
    obs, info = venv.reset(seed=seeds)
    humans.reset(np.arange(n), seeds)
    phase = np.full(n, PHASES.index(Phase.HUMAN), dtype=np.int8)
    zeros, off = np.zeros(n), np.zeros(n, dtype=bool)
    outcome = np.full(n, "", dtype=object)
    while (outcome == "").any():
        views = HumanViews(phase=phase, tor_active=off, tor_elapsed=zeros, urgency=zeros,
                           time=info["time"])
        out = humans.act(obs, info, venv, views)
        obs, _, term, trunc, info = venv.step(out.action)
        ended = np.flatnonzero((term | trunc) & (outcome == ""))
        outcome[ended] = info["final_info"]["outcome"][ended] if len(ended) else []
    return outcome


def wilson(k: int, n: int) -> tuple[float, float, float]:
    """Rate and Wilson 95% CI of ``k`` successes in ``n`` independent episodes."""
    from scipy.stats import binomtest

    if n == 0:
        return math.nan, math.nan, math.nan
    ci = binomtest(int(k), int(n)).proportion_ci(0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


@dataclass(frozen=True)
class DrivingRow:
    skill: str
    env_id: str
    action_type: str
    n: int
    arrived: tuple[float, float, float]
    outcomes: dict[str, int]


def driving_table(env_ids: Sequence[str], n: int = 200, first_seed: int = HELD_OUT_SEED,
                  skills: Sequence[str] = PRESETS,
                  action_types: Sequence[str] = ("continuous", "discrete")) -> list[DrivingRow]:
    """Arrival rate (Wilson CI) of each preset driving alone, per env id and action type,
    on seeds ``first_seed .. first_seed + n - 1`` (the same seeds for every preset), with
    the count of every outcome."""
    from takeover.envs import OUTCOMES

    rows = []
    seeds = list(range(first_seed, first_seed + n))
    for env_id in env_ids:
        for at in action_types:
            for skill in skills:
                oc = drive_alone(skill, env_id, seeds, at)
                counts = {k: int(np.sum(oc == k)) for k in OUTCOMES}
                rows.append(DrivingRow(skill, env_id, at, n, wilson(counts["arrived"], n),
                                       counts))
    return rows


def separation(driving: Sequence[DrivingRow], better: str = "expert",
               worse: str = "novice") -> dict[str, dict[str, bool]]:
    """Per scenario (and ``"pooled"``) and action type: does ``better`` arrive more often
    than ``worse`` with 95% Wilson CIs that do not overlap?"""
    out: dict[str, dict[str, bool]] = {}
    for scen in [*dict.fromkeys(r.env_id for r in driving), "pooled"]:
        for at in dict.fromkeys(r.action_type for r in driving):
            ci = {}
            for skill in (better, worse):
                rs = [r for r in driving if r.skill == skill and r.action_type == at
                      and scen in ("pooled", r.env_id)]
                ci[skill] = wilson(sum(r.outcomes["arrived"] for r in rs), sum(r.n for r in rs))
            out.setdefault(scen, {})[at] = ci[better][1] > ci[worse][2]
    return out


# --- reaction times against the literature -----------------------------------------------
@dataclass(frozen=True)
class Target:
    """A literature statistic a preset claims to reproduce."""

    skill: str
    what: str
    statistic: str  # "median", "mean", "min", "max"
    value: float
    urgency: float
    source: str


TARGETS: tuple[Target, ...] = (
    Target("average", "takeover", "median", 4.56, 0.0, "Eriksson & Stanton 2017"),
    Target("average", "takeover", "min", 1.97, 0.0, "Eriksson & Stanton 2017 (fastest of 26)"),
    Target("average", "takeover", "max", 25.75, 0.0, "Eriksson & Stanton 2017 (slowest of 26)"),
    Target("average", "takeover", "mean", 2.72, 1.0, "Zhang et al. 2019 (urgent)"),
    Target("expert", "brake", "median", 1.0, 0.0, "Green 2000 (between 0.75 and 1.25)"),
    Target("average", "brake", "median", 1.25, 0.0, "Green 2000 (unexpected)"),
    Target("novice", "brake", "median", 1.5, 0.0, "Green 2000 (surprise)"),
)
_STATS: dict[str, Callable[..., Any]] = {"median": np.median, "mean": np.mean, "min": np.min,
                                        "max": np.max}


def samples(skill: str, what: str, n: int, urgency: float = 0.0,
            seed: int = HELD_OUT_SEED) -> np.ndarray:
    """``n`` takeover (``what="takeover"``) or brake reaction times of a preset, drawn by the
    humans' own generator and model."""
    from takeover.supervisor.humans import SKILLS, sample_reaction_times, sample_takeover_times

    p = SKILLS[skill]
    if what == "takeover":
        return sample_takeover_times(p, n, urgency=urgency, seed=seed)
    return sample_reaction_times(p, n, seed=seed)


@dataclass(frozen=True)
class TargetCheck:
    """A target's statistic over simulated studies of ``n`` drivers: the median over the
    studies and the central 95% of them (how far a study of that size scatters)."""

    target: Target
    n: int
    studies: int
    value: float
    lo: float
    hi: float

    @property
    def inside(self) -> bool:
        return self.lo <= self.target.value <= self.hi


def check_targets(n: int = 26, studies: int = 2000,
                  seed: int = HELD_OUT_SEED) -> list[TargetCheck]:
    """Each target's statistic over ``studies`` simulated studies of ``n`` drivers (26 is
    Eriksson & Stanton's sample)."""
    out = []
    for k, t in enumerate(TARGETS):
        x = samples(t.skill, t.what, n * studies, t.urgency, seed + k).reshape(studies, n)
        per_study = _STATS[t.statistic](x, axis=1)
        lo, mid, hi = np.quantile(per_study, (0.025, 0.5, 0.975))
        out.append(TargetCheck(t, n, studies, float(mid), float(lo), float(hi)))
    return out


# --- sensitivity -------------------------------------------------------------------------
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "takeover_median": (3.0, 4.56, 7.0),
    "urgent_factor": (0.2, 0.332, 0.6),
    "lapse_prob": (0.0, 0.03, 0.1),
    "danger_reaction": (1.0, 1.25, 1.5),
    "headway": (1.0, 1.5, 2.0),
    "brake_use": (0.6, 0.8, 1.0),
}
"""One-at-a-time values around the ``average`` preset (its value in the middle)."""

DRIVING_GRID: dict[str, tuple[float, ...]] = {
    "danger_reaction": (1.0, 1.5),
    "headway": (1.0, 2.0),
    "brake_use": (0.6, 1.0),
    "anticipation": (0.3, 1.2),
}
"""The driving parameters the report sweeps (the ``average`` value is the pooled row)."""


def _pooled_arrival(skill: str, env_ids: Sequence[str], n: int, first_seed: int,
                    action_type: str = "continuous", **overrides: Any) -> tuple[float, ...]:
    seeds = list(range(first_seed, first_seed + n))
    k = sum(int(np.sum(drive_alone(skill, e, seeds, action_type, **overrides) == "arrived"))
            for e in env_ids)
    return wilson(k, n * len(env_ids))


@dataclass(frozen=True)
class SensitivityRow:
    parameter: str
    value: float
    result: float
    lo: float
    hi: float


def sensitivity(result: Callable[[str, dict[str, float]], Any], skill: str = "average",
                grid: Mapping[str, Sequence[float]] | None = None) -> list[SensitivityRow]:
    """A result's sensitivity to the human's parameters, one parameter at a time.

    ``result(skill, overrides)`` runs whatever the caller measures with the human
    ``HUMANS.make(skill, num_worlds=N, **overrides)`` and returns a number or a
    ``(value, lo, hi)`` triple (CI). Every override is validated first (a value the model
    refuses, e.g. ``danger_reaction`` below the floor, raises before any run).
    """
    from takeover.supervisor.humans import make_params

    grid = DEFAULT_GRID if grid is None else grid
    for name, values in grid.items():
        for v in values:
            make_params(skill, **{name: v})
    rows = []
    for name, values in grid.items():
        for v in values:
            r = result(skill, {name: float(v)})
            val, lo, hi = (r if isinstance(r, tuple) else (r, math.nan, math.nan))
            rows.append(SensitivityRow(name, float(v), float(val), float(lo), float(hi)))
    return rows


# --- the report --------------------------------------------------------------------------
def _plot(path: Path, n: int, seed: int, driving: list[DrivingRow]) -> None:
    from matplotlib.figure import Figure

    from takeover.supervisor.humans import SKILLS

    fig = Figure(figsize=(13, 4))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    bins = np.geomspace(0.5, 35, 60)
    for skill, colour in zip(PRESETS, ("#2a9d8f", "#264653", "#e76f51"), strict=True):
        for u, ls in ((0.0, "-"), (1.0, ":")):
            x = samples(skill, "takeover", n, u, seed)
            ax1.hist(x, bins=bins, histtype="step", color=colour, ls=ls, density=True,
                     label=f"{skill}, urgency {u:g}")
        r = samples(skill, "brake", n, 0.0, seed)
        ax2.hist(r, bins=np.linspace(0.5, 3.0, 50), histtype="step", color=colour,
                 density=True, label=f"{skill} (median {np.median(r):.2f} s)")
    p = SKILLS["average"]
    ax1.axvline(4.56, color="k", lw=0.8)
    ax1.axvspan(1.97, 25.75, color="k", alpha=0.06, label="E&S 2017 median / range")
    ax1.axvline(2.72, color="k", lw=0.8, ls=":", label="Zhang 2019 mean (urgent)")
    ax1.axvline(p.reaction_floor, color="r", lw=0.8, label="0.7 s floor")
    ax1.set(xscale="log", xlabel="takeover time (s)", ylabel="density",
            title="Takeover time")
    ax1.legend(fontsize=6)
    for v, lbl in ((0.72, "expected"), (1.25, "unexpected"), (1.5, "surprise")):
        ax2.axvline(v, color="k", lw=0.8, ls="--")
        ax2.text(v, ax2.get_ylim()[1] * 0.95, lbl, fontsize=6, rotation=90, va="top")
    ax2.set(xlabel="brake reaction (s)", title="Brake / danger reaction vs Green 2000")
    ax2.legend(fontsize=6)
    labels = sorted({(r.env_id.split("/")[-1].split("-")[0], r.action_type) for r in driving})
    width = 0.8 / len(PRESETS)
    for k, skill in enumerate(PRESETS):
        rs = {(r.env_id.split("/")[-1].split("-")[0], r.action_type): r for r in driving
              if r.skill == skill}
        xs = np.arange(len(labels)) + (k - 1) * width
        vals = np.array([rs[lab].arrived for lab in labels])
        ax3.bar(xs, vals[:, 0], width, yerr=[vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]],
                capsize=2, label=skill)
    ax3.set_xticks(np.arange(len(labels)),
                   [f"{a} ({'cont' if b == 'continuous' else 'disc'})" for a, b in labels],
                   fontsize=7, rotation=40, ha="right")
    ax3.set(ylim=(0, 1.05), ylabel="arrived (Wilson 95% CI)", title="Driving alone")
    ax3.legend(fontsize=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:  # never a torn .png (a full disk)
        fig.savefig(f, dpi=110, format="png")


def write_report(out: Path, n_samples: int = 20_000, n_drive: int = 200,
                 env_ids: Sequence[str] | None = None, seed: int = HELD_OUT_SEED,
                 sensitivity_drive: bool = True) -> Path:
    """The calibration report: ``out/human_calibration.md`` and ``.png``; returns the md."""
    from takeover.envs import HAZARD_IDS
    from takeover.supervisor.humans import LITERATURE, SKILLS

    env_ids = list(HAZARD_IDS) if env_ids is None else list(env_ids)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Human-model calibration", "",
             f"Held-out seeds from {seed}; {n_samples} draws per distribution; driving alone "
             f"{n_drive} episodes per preset, scenario and action type (the same seeds).", "",
             "## Takeover time and brake reaction per preset", "",
             "| preset | floor | takeover median | 5-95 % | mean, urgency 1 | min, urgency 1 "
             "| max | brake reaction median | 5-95 % |", "|---|" + "---|" * 9]
    for skill in PRESETS:
        p = SKILLS[skill]
        t0 = samples(skill, "takeover", n_samples, 0.0, seed)
        t1 = samples(skill, "takeover", n_samples, 1.0, seed)
        r = samples(skill, "brake", n_samples, 0.0, seed)
        lines.append(
            f"| {skill} | {p.reaction_floor:.2f} | {np.median(t0):.2f} | "
            f"{np.quantile(t0, 0.05):.2f}-{np.quantile(t0, 0.95):.2f} | {t1.mean():.2f} | "
            f"{t1.min():.2f} | {max(t0.max(), t1.max()):.2f} | {np.median(r):.2f} | "
            f"{np.quantile(r, 0.05):.2f}-{np.quantile(r, 0.95):.2f} |")
    lines += ["", "## Against the literature", "",
              "Each statistic over 2000 simulated studies of 26 drivers (Eriksson & Stanton's "
              "sample size): the median study and the central 95% of studies.", "",
              "| preset | quantity | statistic | target | source | model: median study "
              "[2.5-97.5 %] | target inside |", "|---|" + "---|" * 6]
    for c in check_targets(26, seed=seed):
        t = c.target
        what = t.what + (" (urgency 1)" if t.urgency else "")
        lines.append(f"| {t.skill} | {what} | {t.statistic} | {t.value:g} | {t.source} | "
                     f"{c.value:.2f} [{c.lo:.2f}, {c.hi:.2f}] | {'yes' if c.inside else 'NO'} |")
    driving = driving_table(env_ids, n_drive, seed)
    lines += ["", "## Driving alone", "",
              "Each preset drives every episode from the first step (no automation); arrived "
              "(`info[\"outcome\"] == \"arrived\"`, the route's end) is the only success.", "",
              "| scenario | actions | preset | arrived [Wilson 95% CI] | collision | off-road "
              "| timeout | stopped |", "|---|" + "---|" * 7]
    for row in driving:
        a, counts = row.arrived, row.outcomes
        lines.append(f"| {row.env_id} | {row.action_type} | {row.skill} | {a[0]:.2f} "
                     f"[{a[1]:.2f}, {a[2]:.2f}] | {counts['collision']} | {counts['off_road']} | "
                     f"{counts['timeout']} | {counts['stopped']} |")
    lines += ["", "Pooled over the scenarios above (episodes are independent: Wilson CI):", "",
              "| actions | preset | arrived [Wilson 95% CI] | n |", "|---|---|---|---|"]
    for at in ("continuous", "discrete"):
        for skill in PRESETS:
            rs = [r for r in driving if r.skill == skill and r.action_type == at]
            k, n = sum(r.outcomes["arrived"] for r in rs), sum(r.n for r in rs)
            a = wilson(k, n)
            lines.append(f"| {at} | {skill} | {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}] | {n} |")
    lines += ["", "Expert above novice with non-overlapping 95% CIs (issue 10's check):", "",
              "| scenario | continuous | discrete |", "|---|---|---|"]
    for scen, ok in separation(driving).items():
        lines.append(f"| {scen} | " + " | ".join("yes" if ok[at] else "NO"
                                                 for at in ("continuous", "discrete")) + " |")
    if sensitivity_drive:
        lines += ["", "## Sensitivity of driving alone to the driving parameters", "",
                  f"Arrival pooled over the scenarios (continuous actions, {n_drive} episodes "
                  "each), one `average` parameter changed at a time.", "",
                  "| parameter | value | arrived [Wilson 95% CI] |", "|---|---|---|"]
        for srow in sensitivity(lambda skill, ov: _pooled_arrival(skill, env_ids, n_drive, seed,
                                                                  **cast("dict[str, Any]", ov)),
                                grid=DRIVING_GRID):
            lines.append(f"| {srow.parameter} | {srow.value:g} | {srow.result:.3f} "
                         f"[{srow.lo:.3f}, {srow.hi:.3f}] |")
    lines += ["", "## Sources", ""] + [f"- {k}: {v}" for k, v in LITERATURE.items()]
    lines += ["", "## Parameters", "", "| parameter | " + " | ".join(PRESETS) + " |",
              "|---|" + "---|" * len(PRESETS)]
    for f in dataclasses.fields(SKILLS["average"]):
        lines.append(f"| {f.name} | " + " | ".join(f"{getattr(SKILLS[s], f.name):g}"
                                                  for s in PRESETS) + " |")
    png = out / "human_calibration.png"
    _plot(png, n_samples, seed, driving)
    lines += ["", f"![calibration]({png.name})", ""]
    md = out / "human_calibration.md"
    atomic_write_text(md, "\n".join(lines))
    return md
