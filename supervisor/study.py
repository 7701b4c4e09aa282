"""A takeover experiment with participants: ``takeover study STUDY.yaml --participant ID``.

One participant's session is many live episodes in one log: consent, practice trials, then
the conditions in an order counterbalanced across participants by a balanced Latin square
(Williams design: each condition appears once in every position and follows every other
once), with questionnaires in the pygame window after each trial, answered with the keys:

* **NASA-TLX, raw** (Hart & Staveland 1988; raw = unweighted mean, Hart 2006): six subscales
  0-100 in steps of 5 (LEFT / RIGHT, ENTER to confirm);
* **Trust in automation** (Jian, Bisantz & Drury 2000): 12 items on a 1-7 scale (keys 1-7);
  items 1-5 measure distrust and are reversed in the score.

Every answer is logged with its response time, next to the episode it follows, in
``study.json`` (rewritten atomically after every trial, so a crash loses at most the trial
being driven). ``takeover study report DIR ...`` aggregates per participant and condition
and fits each person's takeover-time distribution (log-normal, MLE) next to the scripted
humans' in the same scenarios, so a study calibrates the human models.
"""

from __future__ import annotations

import functools
import json
import math
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from takeover.config import ConfigError, from_dict, load_yaml, option, validate

TLX = (("mental", "Mental demand", "How mentally demanding was the task?", "very low",
        "very high"),
       ("physical", "Physical demand", "How physically demanding was the task?", "very low",
        "very high"),
       ("temporal", "Temporal demand", "How hurried or rushed was the pace of the task?",
        "very low", "very high"),
       ("performance", "Performance", "How successful were you in accomplishing what you "
        "were asked to do?", "perfect", "failure"),
       ("effort", "Effort", "How hard did you have to work to accomplish your level of "
        "performance?", "very low", "very high"),
       ("frustration", "Frustration", "How insecure, discouraged, irritated, stressed and "
        "annoyed were you?", "very low", "very high"))
TRUST = ("The system is deceptive.", "The system behaves in an underhanded manner.",
         "I am suspicious of the system's intent, action, or outputs.",
         "I am wary of the system.",
         "The system's actions will have a harmful or injurious outcome.",
         "I am confident in the system.", "The system provides security.",
         "The system has integrity.", "The system is dependable.", "The system is reliable.",
         "I can trust the system.", "I am familiar with the system.")
TRUST_REVERSED = 5  # the first five items measure distrust
QUESTIONNAIRES = ("tlx", "trust")
DEFAULT_CONSENT = (
    "You will watch an automated car drive and take over when it asks (or whenever you want).",
    "Each drive lasts up to a minute; short questionnaires follow each drive.",
    "Your inputs, answers and timings are logged under your participant ID only.",
    "You may stop at any time with ESC; nothing is lost.")


@dataclass(frozen=True)
class Trial:
    """One drive: a scenario and a seed (``condition`` names what is compared)."""

    scenario: str = option("Highway-v2", "env id or scenario")
    seed: int = option(0, "the episode seed", range=(0, None))
    condition: str = option("", "condition name ('' for practice)")


@dataclass(frozen=True)
class Condition:
    name: str = option("", "condition name (as reported)")
    scenario: str = option("Highway-v2", "env id or scenario")
    seeds: list[int] = option(None, "one trial per seed", factory=list)


@dataclass(frozen=True)
class StudyConfig:
    """A study file (YAML), validated like every config: unknown keys name the closest one."""

    name: str = option("study", "study name (the output folder)")
    consent: list[str] = option(None, "consent text, one line each", factory=list)
    practice: list[Trial] = option(None, "practice trials, run first in this order",
                                   factory=list)
    conditions: list[Condition] = option(None, "counterbalanced conditions", factory=list)
    questionnaires: list[str] = option(None, "after each trial: tlx, trust",
                                       factory=lambda: ["tlx", "trust"])
    settings: dict = option(None, "live settings (takeover.supervisor.live.LiveSettings)",
                            factory=dict)
    scripted: list[str] = option(None, "scripted humans the report compares with",
                                 factory=lambda: ["expert", "average", "novice"])
    scripted_repeats: int = option(3, "scripted runs per trial seed in the report",
                                   range=(1, 100))

    def __post_init__(self) -> None:
        validate(self)
        if not self.conditions:
            raise ConfigError("a study needs at least one condition under 'conditions'")
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names) or not all(names):
            raise ConfigError(f"condition names must be unique and non-empty, got {names}")
        for q in self.questionnaires:
            if q not in QUESTIONNAIRES:
                raise ConfigError(f"unknown questionnaire {q!r}; use {', '.join(QUESTIONNAIRES)}")
        for c in self.conditions:
            if not c.seeds:
                raise ConfigError(f"condition {c.name!r} has no seeds: give one per trial")


def load_study(path: str | Path) -> StudyConfig:
    from .live import env_id, settings_from_dict

    cfg = from_dict(StudyConfig, load_yaml(path), "")
    settings_from_dict(cfg.settings)  # bad settings fail here, before any window
    from takeover.registry import closest

    from .humans import HUMANS

    for skill in cfg.scripted:
        if skill not in HUMANS:
            raise ConfigError(f"unknown scripted human {skill!r} under 'scripted'."
                              f"{closest(skill, HUMANS.names())} Valid: "
                              f"{', '.join(HUMANS.names())}")
    for s in [t.scenario for t in cfg.practice] + [c.scenario for c in cfg.conditions]:
        env_id(s)
    return cfg


def latin_square(n: int) -> list[list[int]]:
    """A balanced Latin square (Williams 1949) of ``n`` conditions: ``n`` rows for even
    ``n``, ``2n`` (the rows and their mirror images) for odd ``n``, so every condition
    follows every other equally often."""
    first = [0]
    lo, hi = 1, n - 1
    for k in range(1, n):
        if k % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    rows = [[(c + r) % n for c in first] for r in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows


def participant_index(pid: str) -> int:
    """The counterbalancing row of a participant: the digits at the end of the ID (P07 -> 7)."""
    digits = ""
    for ch in reversed(pid):
        if not ch.isdigit():
            break
        digits = ch + digits
    if not digits:
        raise ConfigError(f"participant ID {pid!r} has no number at the end (e.g. P07): pass "
                          "--order N to choose the counterbalancing row")
    return int(digits)


def trial_plan(cfg: StudyConfig, index: int) -> list[Trial]:
    """Practice trials, then each condition's trials in this participant's Latin-square order."""
    rows = latin_square(len(cfg.conditions))
    order = rows[index % len(rows)]
    out = [Trial(t.scenario, t.seed, "") for t in cfg.practice]
    for j in order:
        c = cfg.conditions[j]
        out += [Trial(c.scenario, s, c.name) for s in c.seeds]
    return out


# --- questionnaires in the window -------------------------------------------------------
@dataclass
class Answer:
    """One questionnaire item: its value and the seconds from showing it to confirming."""

    item: str
    value: int
    rt_s: float


def tlx_score(answers: list[dict[str, Any]]) -> float:
    """Raw TLX: the unweighted mean of the six subscales (0-100)."""
    return float(sum(a["value"] for a in answers) / len(answers)) if answers else math.nan


def trust_score(answers: list[dict[str, Any]]) -> float:
    """Jian et al. (2000) trust: mean over the 12 items (1-7), distrust items reversed."""
    if not answers:
        return math.nan
    vals = [8 - a["value"] if i < TRUST_REVERSED else a["value"] for i, a in enumerate(answers)]
    return float(sum(vals) / len(vals))


_PENDING: list[Any] = []  # events that arrived after the key that closed the last card


def _wait_key(screen: Any, title: str, lines: list[str], keys: dict[int, str], clock: Any,
              before_frame: Any = None, frame: list[int] | None = None) -> str:
    """Show a card until one of ``keys`` is pressed; returns its name (``close`` on QUIT).
    Keys typed faster than the frame rate are kept for the next card, never dropped."""
    import pygame

    while True:
        if before_frame is not None and frame is not None:
            before_frame(frame[0])
            frame[0] += 1
        _PENDING.extend(pygame.event.get())
        got = ""
        while _PENDING and not got:
            ev = _PENDING.pop(0)
            if ev.type == pygame.QUIT:
                got = "close"
            elif ev.type == pygame.KEYDOWN and ev.key in keys:
                got = keys[ev.key]
        screen.show(title, lines, hud=False)
        clock.tick()
        if got:
            return got


def ask_tlx(screen: Any, clock: Any, **kw: Any) -> list[Answer] | None:
    """The six TLX subscales, each a 0-100 slider in steps of 5; ``None`` if the person quit."""
    import pygame

    out: list[Answer] = []
    for key, name, question, lo, hi in TLX:
        value, shown = 50, clock.now()
        while True:
            bar = "".join("|" if v == value else "-" for v in range(0, 101, 5))
            what = _wait_key(screen, f"{name}  ({len(out) + 1}/6)", [
                question, f"{lo}  [{bar}]  {hi}", f"{value}",
                "LEFT / RIGHT to move, ENTER to confirm"],
                {pygame.K_LEFT: "l", pygame.K_RIGHT: "r", pygame.K_RETURN: "ok",
                 pygame.K_KP_ENTER: "ok", pygame.K_SPACE: "ok", pygame.K_ESCAPE: "close"},
                clock, **kw)
            if what == "close":
                return None
            if what == "ok":
                out.append(Answer(key, value, clock.now() - shown))
                break
            value = min(max(value + (5 if what == "r" else -5), 0), 100)
    return out


def ask_trust(screen: Any, clock: Any, **kw: Any) -> list[Answer] | None:
    """The 12 trust items, each answered with a key 1-7; ``None`` if the person quit."""
    import pygame

    keys = {getattr(pygame, f"K_{i}"): str(i) for i in range(1, 8)}
    keys.update({getattr(pygame, f"K_KP{i}"): str(i) for i in range(1, 8)})
    keys[pygame.K_ESCAPE] = "close"
    out = []
    for i, item in enumerate(TRUST):
        shown = clock.now()
        what = _wait_key(screen, f"Trust in the automation  ({i + 1}/12)", [
            item, "1 = not at all    4 = somewhat    7 = extremely", "press a key 1-7"],
            keys, clock, **kw)
        if what == "close":
            return None
        out.append(Answer(f"trust{i + 1:02d}", int(what), clock.now() - shown))
    return out


# --- the study run ----------------------------------------------------------------------
def _trial_name(n: int, tag: str, seed: int | None, index: int) -> str:
    """The log's episode name of trial ``n`` (``tag``: its condition or ``practice``)."""
    return f"t{n:02d}-{tag}-s{seed}"


def run_study(cfg: StudyConfig, participant: str, out_dir: str | Path, *,
              order: int | None = None, fixed_clock: bool = False, sound: bool = True,
              fullscreen: bool = False, before_frame: Any = None) -> dict[str, Any]:
    """Run one participant's session; returns (and writes) the ``study.json`` content."""
    import pygame

    from takeover.atomic import atomic_write_text
    from takeover.envs.render import Window
    from takeover.logio import LogWriter
    from takeover.records import RunMeta

    from .live import (
        FixedClock,
        LiveSupervisor,
        LoopOptions,
        RealClock,
        Screen,
        check_writable,
        make_human,
        run_episode,
        settings_from_dict,
    )

    base = settings_from_dict(cfg.settings)
    index = participant_index(participant) if order is None else int(order)
    plan = trial_plan(cfg, index)
    out = Path(out_dir)
    check_writable(out, "log")
    data: dict[str, Any] = {"format": "takeover-study", "version": 1, "study": cfg.name,
                            "participant": participant, "order_index": index,
                            "order": [t.condition for t in plan if t.condition],
                            "settings": cfg.settings, "consent": None, "trials": []}
    writer = LogWriter(out, RunMeta(run_id=f"study-{cfg.name}-{participant}", seed=index,
                                    config={"study": cfg.name, "participant": participant}))

    def save() -> None:
        atomic_write_text(out / "study.json", json.dumps(data, indent=1))

    clock = FixedClock(60.0) if fixed_clock else RealClock(60.0)
    _PENDING.clear()
    frame = [0]
    hook = {"before_frame": before_frame, "frame": frame}
    window = Window((1000, 460), fullscreen=fullscreen, title=f"takeover study {cfg.name}")
    opts = LoopOptions(fixed_clock=fixed_clock, sound=sound, end_screen=False)
    screen = None
    try:
        import dataclasses

        first = LiveSupervisor(dataclasses.replace(base, scenario=plan[0].scenario),
                               make_human(base))
        first.reset(plan[0].seed)
        screen = Screen(first, window)
        shown = clock.now()
        what = _wait_key(screen, f"Study {cfg.name}: consent", [
            *(cfg.consent or DEFAULT_CONSENT), "",
            "Y: I agree and want to take part      ESC: I do not agree"],
            {pygame.K_y: "yes", pygame.K_ESCAPE: "no"}, clock, **hook)
        data["consent"] = {"given": what == "yes", "rt_s": clock.now() - shown,
                           "at": _time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        save()
        first.close()
        if what != "yes":
            return data
        for n, trial in enumerate(plan):
            settings = dataclasses.replace(base, scenario=trial.scenario)
            live = LiveSupervisor(settings, make_human(settings))
            tag = trial.condition or "practice"
            live.sup.episode_name = functools.partial(_trial_name, n, tag)
            screen = Screen(live, window)
            kind = "practice" if not trial.condition else f"trial {n + 1} of {len(plan)}"
            opts.start_title = f"{kind.capitalize()}: press SPACE to start"
            opts.start_lines = ()
            opts.before_frame = (lambda f, f0=frame[0]: before_frame(f0 + f)) \
                if before_frame else None
            started = _time.strftime("%Y-%m-%dT%H:%M:%S%z")
            ep = run_episode(live, screen, trial.seed, opts, clock=clock)
            frame[0] += ep.frames
            live.close()
            entry: dict[str, Any] = {"index": n, "condition": trial.condition,
                                     "practice": not trial.condition,
                                     "scenario": trial.scenario, "seed": trial.seed,
                                     "started": started, "end": ep.end, "answers": {}}
            if ep.records:
                writer.write_episodes([(ep.records[0].episode, ep.records)])
                s = ep.summary
                assert s is not None  # run_episode summarises every episode it ends
                entry.update(episode=ep.records[0].episode, outcome=s.outcome,
                             takeover_s=s.takeover_s, takeover_wall_s=s.takeover_wall_s,
                             min_ttc=s.min_ttc, human_s=s.human_s, requests=s.requests)
            data["trials"].append(entry)
            save()
            if ep.end in ("quit", "close"):
                break
            if ep.summary is not None:
                from .live import end_lines

                what = _wait_key(screen, f"Drive over: {ep.summary.outcome}",
                                 [*end_lines(ep.summary)[:2], "", "SPACE to continue"],
                                 {pygame.K_SPACE: "ok", pygame.K_RETURN: "ok",
                                  pygame.K_ESCAPE: "close"}, clock, **hook)
                if what == "close":
                    break
            if trial.condition:
                stopped = False
                for q in cfg.questionnaires:
                    answers = (ask_tlx if q == "tlx" else ask_trust)(screen, clock, **hook)
                    if answers is None:
                        stopped = True
                        break
                    entry["answers"][q] = [a.__dict__ for a in answers]
                    save()
                if stopped:
                    break
        if screen is not None:
            _wait_key(screen, "Thank you!", ["The study is complete.", "Press any key."],
                      {k: "x" for k in (pygame.K_SPACE, pygame.K_RETURN, pygame.K_ESCAPE)},
                      clock, **hook) if not fixed_clock or before_frame else None
    finally:
        writer.close()
        save()
        window.close()
        pygame.quit()
    return data


# --- the report -------------------------------------------------------------------------
def fit_lognormal(times: list[float]) -> dict[str, float]:
    """Log-normal MLE of takeover times (s): median ``exp(mu)``, shape ``sigma``, n."""
    import numpy as np

    t = np.asarray([x for x in times if math.isfinite(x) and x > 0], dtype=float)
    if t.size == 0:
        return {"n": 0, "median": math.nan, "sigma": math.nan, "mean": math.nan}
    lg = np.log(t)
    return {"n": int(t.size), "median": float(np.exp(lg.mean())),
            "sigma": float(lg.std(ddof=0)) if t.size > 1 else math.nan,
            "mean": float(t.mean())}


def load_participant(run_dir: str | Path) -> dict[str, Any]:
    p = Path(run_dir) / "study.json"
    if not p.is_file():
        raise ConfigError(f"{run_dir} holds no study.json: pass the folders written by "
                          "`takeover study STUDY.yaml --participant ID`")
    try:
        data = json.loads(p.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{p} is damaged ({err})") from None
    if data.get("format") != "takeover-study":
        raise ConfigError(f"{p} is not a takeover study file")
    return data


def aggregate(participants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per participant and condition (practice trials left out)."""
    import numpy as np

    rows = []
    for d in participants:
        by: dict[str, list[dict[str, Any]]] = {}
        for t in d["trials"]:
            if t.get("condition"):
                by.setdefault(t["condition"], []).append(t)
        for cond, trials in by.items():
            driven = [t for t in trials if "outcome" in t]
            takes = [t["takeover_s"] for t in driven if math.isfinite(t.get("takeover_s", math.nan))]
            tlx = [tlx_score(t["answers"]["tlx"]) for t in trials if "tlx" in t["answers"]]
            trust = [trust_score(t["answers"]["trust"]) for t in trials
                     if "trust" in t["answers"]]
            rows.append({
                "participant": d["participant"], "condition": cond, "trials": len(driven),
                "arrived": sum(t["outcome"] == "arrived" for t in driven),
                "collisions": sum(t["outcome"] == "collision" for t in driven),
                "off_road": sum(t["outcome"] == "off_road" for t in driven),
                "takeovers": len(takes),
                "takeover_median_s": float(np.median(takes)) if takes else math.nan,
                "min_ttc_s": min((t["min_ttc"] for t in driven), default=math.nan),
                "tlx_raw": float(np.mean(tlx)) if tlx else math.nan,
                "trust": float(np.mean(trust)) if trust else math.nan})
    return rows


class SeededHuman:
    """A per-world human drawing from its own ``seed`` instead of the episode's (the engine
    seeds humans with the episode seed): the repeats of one trial seed meet the same
    traffic with different draws of the same human model."""

    def __init__(self, human: Any, seed: int) -> None:
        self.human, self.seed = human, int(seed)

    def reset(self, seed: int | None = None) -> None:
        self.human.reset(self.seed)

    def act(self, obs: Any, info: Any, env: Any, view: Any) -> Any:
        return self.human.act(obs, info, env, view)


def scripted_takeovers(cfg: StudyConfig, skill: str, repeats: int | None = None) -> list[float]:
    """Takeover times (s after the request) of a scripted human in the study's conditions,
    with the study's settings (the same live supervisor a participant drives), ``repeats``
    human seeds (``trial seed * 1000 + k``) per trial seed."""
    import dataclasses

    from .humans import ScriptedHuman
    from .live import LiveSupervisor, settings_from_dict

    base = settings_from_dict(cfg.settings)
    out: list[float] = []
    for c in cfg.conditions:
        live = LiveSupervisor(dataclasses.replace(base, scenario=c.scenario),
                              SeededHuman(ScriptedHuman(skill), 0))
        try:
            for seed in c.seeds:
                for k in range(repeats or cfg.scripted_repeats):
                    live.human = SeededHuman(ScriptedHuman(skill), seed * 1000 + k)
                    live.reset(seed)
                    while not live.done:
                        rec = live.step()
                        if "human_response" in rec.transition:
                            out.append(rec.takeover_time - rec.tor_time)
        finally:
            live.close()
    return out


def report(run_dirs: Sequence[str | Path], study: str | Path | None = None,
           repeats: int | None = None) -> dict[str, Any]:
    """Aggregate participants; fit each person's takeover-time distribution, and (given the
    study file) the scripted humans' in the same conditions."""
    parts = [load_participant(d) for d in run_dirs]
    rows = aggregate(parts)
    fits = {}
    for d in parts:
        times = [t["takeover_s"] for t in d["trials"]
                 if t.get("condition") and math.isfinite(t.get("takeover_s", math.nan))]
        fits[d["participant"]] = fit_lognormal(times)
    scripted = {}
    if study is not None:
        cfg = load_study(study)
        for skill in cfg.scripted:
            scripted[skill] = fit_lognormal(scripted_takeovers(cfg, skill, repeats))
    return {"rows": rows, "participants": fits, "scripted": scripted}
