"""``takeover review RUN``: judge the gate's takeover requests, blind, in a pygame window.

Each item (a request's first step, or a sampled non-request step, mixed in blind) is
re-simulated exactly from its episode's seed and logged actions, its last ``--lead`` seconds
played, then held. Keys: ``N`` needed, ``X`` not needed, ``U`` unsure; ``0``-``4`` first
marks the action the agent should have taken (idle, faster, slower, lane left, lane right;
Discrete envs), ``Backspace`` clears it; ``Esc`` stops (answers are already saved; the next
session resumes). ``--keys "3n,x,u"`` posts those keys instead of reading the keyboard (CI,
``SDL_VIDEODRIVER=dummy``). Labels go to ``RUN/review/labels-<reviewer>.jsonl``; the
agreement report to ``RUN/review/summary.json``.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer

KEY_LABELS = {"n": "needed", "x": "not_needed", "u": "unsure"}


def _seed_resolver(meta: Any):
    """The review module's resolver, plus the experiment runner's episode names:
    ``<condition>-<scenario>-<seed>`` (today's), ``...-s<run>-e<episode>`` (older runs)."""
    from takeover.supervisor.review import ReplayError, episode_seed_of

    def seed_of(episode: str) -> int:
        try:
            return episode_seed_of(meta, episode)
        except ReplayError:
            m = re.fullmatch(rf".+-{re.escape(_scenario(meta, episode))}-(\d+)", episode)
            if m:
                return int(m.group(1))
            m = re.search(r"-s(\d+)-e(\d+)$", episode)
            cfg = meta.config if meta is not None else {}
            if not m or "seed" not in cfg:
                raise
            from takeover.experiments.episodes import PURPOSES, episode_seed

            purpose = next((p for p in PURPOSES if f"-{p}-" in f"-{meta.run_id}-"), "eval")
            return episode_seed(int(cfg["seed"]), purpose, _scenario(meta, episode),
                                int(m.group(1)), int(m.group(2)))

    return seed_of


def _scenario(meta: Any, episode: str) -> str:
    from takeover.experiments.episodes import SCENARIO_IDS

    for s in sorted(SCENARIO_IDS, key=len, reverse=True):
        if f"-{s}-" in episode:
            return s
    env = (meta.config if meta is not None else {}).get("env", {})
    return (env.get("scenarios") or ["mixed"])[0]


def make_env(meta: Any, episode: str):
    """The logged world: ``config["env_id"]`` / ``["env_kwargs"]`` (engine logs), else the
    experiment config's ``env`` section and the scenario in the episode's name."""
    import gymnasium as gym

    import takeover.envs  # noqa: F401  (registers the ids)

    cfg = meta.config if meta is not None else {}
    if "env_id" in cfg:
        return gym.make(cfg["env_id"], **dict(cfg.get("env_kwargs") or {}))
    from takeover.experiments.episodes import SCENARIO_IDS

    env = cfg.get("env", {})
    kw = {k: env[k] for k in ("action_type", "duration", "vehicles") if k in env}
    return gym.make(SCENARIO_IDS[_scenario(meta, episode)], **kw)


def prepare(run: Path, *, agent_name: str | None, samples: float, horizon: float,
            seed: int, agent: Any = None) -> tuple[Any, list]:
    """The log and its review plan (made once, counterfactually labelled by ``agent`` or
    the agent named ``agent_name`` / in the log's config, then reused)."""
    from takeover.logio import read_log
    from takeover.supervisor.review import (
        PLAN_FILE,
        REVIEW_DIR,
        Replayer,
        load_plan,
        plan_review,
        save_plan,
    )

    log = read_log(run)
    if not log.episodes:
        raise typer.BadParameter(f"{run} holds no complete episode to review")
    if (run / REVIEW_DIR / PLAN_FILE).exists():
        return log, load_plan(run)
    cfg = log.meta.config if log.meta is not None else {}
    score = cfg.get("gate_score") or (cfg.get("supervisor") or {}).get("gate_score")
    items = plan_review(log.episodes, samples_per_trigger=samples, score=score, seed=seed)
    name = agent_name or cfg.get("agent_name") or (cfg.get("agent") or {}).get("name")
    seed_of = _seed_resolver(log.meta)
    labelled = []
    for ep in sorted({it.episode for it in items}):
        env = make_env(log.meta, ep)
        if agent is None and name:
            from takeover.agents import load_agent

            agent = load_agent(name, env=env)
        rep = Replayer(env, seed_of)
        mine = [it for it in items if it.episode == ep]
        states = rep.snapshots(log.episodes[ep], [it.step for it in mine])
        cf = rep.label(agent, log.episodes[ep], states, horizon) if agent is not None else {}
        labelled += [(it, cf.get(it.step)) for it in mine]
        env.close()
    from dataclasses import replace

    cf_by = {it.id: need for it, need in labelled}
    items = [replace(it, needed=cf_by.get(it.id)) for it in items]
    save_plan(run, items, {"horizon": horizon, "agent": name, "score": score, "seed": seed})
    return log, items


def parse_keys(spec: str) -> list[str]:
    """``"3n,x,u"`` -> ``["3", "n", "x", "u"]`` (commas separate items, for reading)."""
    out = []
    for tok in spec.replace(" ", "").split(","):
        for ch in tok:
            if ch not in "0123456789nxuq" and ch != "b":
                raise typer.BadParameter(f"--keys: {ch!r} is not a review key (n x u, 0-4, "
                                         f"b = backspace, q = escape)")
            out.append(ch)
    return out


def session(run: Path, reviewer: str, *, agent_name: str | None = None,
            samples: float = 1.0, horizon: float = 2.0, lead: float = 2.0,
            keys: list[str] | None = None, fps: float = 20.0, seed: int = 0,
            agent: Any = None) -> dict:
    """Review every item ``reviewer`` has not answered yet; returns the summary."""
    import numpy as np
    import pygame

    from takeover.envs import layout as L
    from takeover.envs.render import Renderer
    from takeover.supervisor.review import LabelStore, Replayer, ReviewLabel, summarize

    log, items = prepare(run, agent_name=agent_name, samples=samples, horizon=horizon,
                         seed=seed, agent=agent)
    store = LabelStore(run, reviewer)
    done = store.read()
    todo = [it for it in items if it.id not in done]
    seed_of = _seed_resolver(log.meta)
    pygame.init()
    posted = list(keys or [])
    key_of = {pygame.K_n: "n", pygame.K_x: "x", pygame.K_u: "u", pygame.K_ESCAPE: "q",
              pygame.K_BACKSPACE: "b", **{getattr(pygame, f"K_{d}"): str(d) for d in range(10)}}
    code_of = {v: k for k, v in key_of.items()}
    envs: dict[str, Any] = {}
    renderer = None
    clock = pygame.time.Clock()
    quit_ = False
    try:
        for n_item, it in enumerate(todo):
            recs = log.episodes[it.episode]
            cfg = log.meta.config if log.meta is not None else {}
            ekey = cfg.get("env_id") or _scenario(log.meta, it.episode)
            if ekey not in envs:
                envs[ekey] = make_env(log.meta, it.episode)
            env = envs[ekey]
            base = env.unwrapped
            if renderer is None:
                renderer = Renderer(base.config, "human", realtime=False)
            rep = Replayer(env, seed_of)
            k0 = max(0, it.step - int(round(lead / base.config.dt)))
            states = rep.snapshots(recs, [k0, it.step])
            discrete = rep.discrete
            # the lead-in: the logged actions from k0 to the item's step
            rep.show(states[k0])
            for step in range(k0, it.step):
                renderer.draw(base.vehicles, base.world, base.hazard)
                if not posted:
                    clock.tick(fps)
                a = recs[step].action
                base.step(int(a[0]) if discrete else np.asarray(a, np.float32))
            rep.show(states[it.step])
            agent_a = recs[it.step].agent_action
            said = (L.META_ACTIONS[int(agent_a[0])] if discrete else
                    ", ".join(f"{v:+.2f}" for v in agent_a))
            mark: list[float] | None = None
            shown = time.time()
            answer = None
            while answer is None and not quit_:
                marked = "-" if mark is None else (
                    L.META_ACTIONS[int(mark[0])] if discrete else str(mark))
                lines = (f"item {n_item + 1}/{len(todo)}  agent: {said}  marked: {marked}",
                         "N needed  X not needed  U unsure  0-4 action  BKSP clear  ESC quit")

                def hud(surface, r, lines=lines):
                    for row, txt in enumerate(lines):
                        r.text(surface, txt, (10, 10 + 20 * row), background=(0, 0, 0))

                renderer.draw(base.vehicles, base.world, base.hazard, [hud])
                if posted:
                    pygame.event.post(pygame.event.Event(pygame.KEYDOWN,
                                                         key=code_of[posted.pop(0)]))
                elif keys is not None:  # posted keys ran out: stop, as a reviewer would
                    quit_ = True
                    break
                else:
                    clock.tick(fps)
                for ev in pygame.event.get():
                    if ev.type == pygame.QUIT:
                        quit_ = True
                    if ev.type != pygame.KEYDOWN or ev.key not in key_of:
                        continue
                    k = key_of[ev.key]
                    if k == "q":
                        quit_ = True
                    elif k == "b":
                        mark = None
                    elif k.isdigit():
                        if discrete and int(k) < len(L.META_ACTIONS):
                            mark = [float(k)]
                    else:
                        answer = KEY_LABELS[k]
                        break
            if answer is None:
                break
            store.append(ReviewLabel(it.id, reviewer, answer, mark,
                                     seconds=time.time() - shown, wall=time.time()))
    finally:
        for env in envs.values():
            env.close()
        if renderer is not None:
            renderer.close()
    summary = summarize(run, items)
    from takeover.atomic import atomic_write_text

    atomic_write_text(run / "review" / "summary.json",
                      json.dumps(summary, indent=2, default=_json_float))
    return summary


def _json_float(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else float(x)


def review(
    run: Annotated[Path, typer.Argument(help="A log directory (meta.json + episodes/).")],
    reviewer: Annotated[str, typer.Option("--reviewer", "-r", help="Your reviewer id.")]
    = "reviewer",
    agent: Annotated[str | None, typer.Option(
        help="Agent for the counterfactual labels (default: the log's).")] = None,
    samples: Annotated[float, typer.Option(
        help="Non-request steps mixed in per trigger.")] = 1.0,
    horizon: Annotated[float, typer.Option(help="Counterfactual look-ahead, s.")] = 2.0,
    lead: Annotated[float, typer.Option(help="s played before each item.")] = 2.0,
    keys: Annotated[str | None, typer.Option(
        help="Post these keys instead of reading the keyboard, e.g. '3n,x,u'.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the sample and the blind order.")] = 0,
) -> None:
    """Review the gate's takeover requests (blind, mixed with non-requests): needed or not,
    and the action the agent should have taken; reports agreement (Cohen's kappa)."""
    if not (run / "meta.json").exists():
        raise typer.BadParameter(f"{run} is not a log directory (no meta.json); pass e.g. "
                                 f"runs/<run>/logs/supervised")
    summary = session(run, reviewer, agent_name=agent, samples=samples, horizon=horizon,
                      lead=lead, keys=None if keys is None else parse_keys(keys), seed=seed)
    for r, s in summary["reviewers"].items():
        vs = s["vs_counterfactual"]
        typer.echo(f"{r}: {s['labelled']} labelled, kappa vs counterfactual "
                   f"{vs['kappa']:.3f} (n={vs['n']}), confusion {vs['confusion']}, "
                   f"fitted threshold {s['fitted_threshold']['threshold']:.4g}")
    for pair, a in summary["pairs"].items():
        typer.echo(f"{pair}: kappa {a['kappa']:.3f} (n={a['n']})")
