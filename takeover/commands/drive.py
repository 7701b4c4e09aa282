"""``takeover drive``: take over from the agent live, in a pygame window.

The world runs in real time at the env's control rate while the window redraws at 60 fps;
the agent drives, the supervisor's gate may raise a takeover request (a red alert and a
tone), and the person takes over with SPACE/T (or any arrow/WASD key), drives, and hands
back with R. ESC or closing the window ends the episode as truncated (``user_quit``) with
the log flushed.

Simulated time advances with the wall clock but never past the next control step, and a key
event is stamped with the simulated time of the frame it arrived in: so a recording
(``--record``) replays bit for bit (``--replay``, or ``ReplayHuman`` in a test) whatever the
frame rate. ``--fixed-clock`` advances simulated time by exactly 1/fps per frame and does
not wait (headless tests and the benchmark).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

HUD_RED = (255, 40, 40)


@dataclass
class DriveOptions:
    """Everything a drive needs; the CLI options map one to one."""

    scenario: str = "Highway-v1"
    agent: str = "novice"
    gate: str = "threshold"
    estimator: str = "ttc"
    seed: int = 0
    action_type: str = "auto"
    log: Path | None = None
    record: Path | None = None
    replay: Path | None = None
    max_frames: int | None = None
    fps: float = 60.0
    fixed_clock: bool = False
    sound: bool = True
    before_frame: Callable[[int], None] | None = None
    """Called at the start of each frame with its index (tests post pygame events here)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DriveResult:
    records: list = field(default_factory=list)
    reason: str = ""
    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    frame_ms: list[float] = field(default_factory=list)
    stepped: list[bool] = field(default_factory=list)
    """Per frame: the world stepped in it (the agent and supervisor ran)."""
    events: list = field(default_factory=list)


class IDMAgent:
    """A stand-in agent reading the true state (``--agent idm``): drives well, knows no doubt,
    so only oracle estimators (``ttc``) make its gate fire."""

    def __init__(self, env: Any) -> None:
        from takeover.envs.drivers import IDMDriver

        self.env = env.unwrapped
        self.driver = IDMDriver()

    def reset(self) -> None:
        self.driver.reset()

    def act(self, obs: Any):
        from takeover.types import AgentOutput

        return AgentOutput(action=self.driver(self.env))


def _env_id(scenario: str) -> str:
    sid = scenario if "/" in scenario else f"takeover/{scenario}"
    return sid if sid.endswith("-v1") else f"{sid}-v1"


def _action_type(opts: DriveOptions) -> str:
    """``auto``: the agent's own action type (the IDM stand-in drives either)."""
    if opts.action_type != "auto":
        return opts.action_type
    if opts.agent == "idm":
        return "continuous"
    from takeover.agents.checkpoint import checkpoint_action_type

    return checkpoint_action_type(opts.agent)


def make_agent(name: str, env: Any):
    if name == "idm":
        return IDMAgent(env)
    from takeover.agents.checkpoint import load_agent

    return load_agent(name, env=env)


class Hud:
    """The supervisor's HUD, an env overlay: who drives, the gate's score against its
    threshold, speed, TTC, the TOR alert and the key legend."""

    def __init__(self) -> None:
        self.record = None
        self.phase = "agent"
        self.frame = 0

    def __call__(self, surface: Any, r: Any) -> None:
        import pygame

        from takeover.supervisor.keyboard import LEGEND

        self.frame += 1
        rec = self.record
        phase = self.phase
        tor = phase in ("tor", "fallback")
        if tor and (self.frame // 15) % 2 == 0:  # a flashing frame around the view
            pygame.draw.rect(surface, HUD_RED, surface.get_rect(), 8)
        label = {"agent": "AGENT driving", "tor": "TAKE OVER!  (SPACE)",
                 "human": "YOU drive  (R: hand back)", "fallback": "NO RESPONSE: stopping"}
        color = HUD_RED if tor else ((80, 220, 255) if phase == "human" else (255, 255, 255))
        r.text(surface, label.get(phase, phase), (12, 10), color, big=True)
        if rec is not None:
            speed = rec.info.get("speed", math.nan)
            ttc = rec.info.get("ttc", math.nan)
            ttc_s = "--" if ttc >= 99 else f"{ttc:4.1f} s"
            r.text(surface, f"speed {speed * 3.6:5.0f} km/h   TTC {ttc_s}   "
                            f"controller {rec.controller}", (12, 44))
            scores = rec.scores
            score = next(iter(scores.values())) if scores else math.nan
            thr = rec.threshold
            x0, y0, w, h = r.width - 232, 14, 200, 14
            pygame.draw.rect(surface, (40, 40, 40), (x0, y0, w, h))
            top = max(thr * 2.0 if math.isfinite(thr) and thr > 0 else 1.0, 1e-9)
            if math.isfinite(score):
                fill = int(w * min(max(score / top, 0.0), 1.0))
                over = math.isfinite(thr) and score >= thr
                pygame.draw.rect(surface, HUD_RED if over else (80, 200, 120),
                                 (x0, y0, fill, h))
            if math.isfinite(thr):
                xt = x0 + int(w * min(thr / top, 1.0))
                pygame.draw.line(surface, (255, 255, 255), (xt, y0 - 3), (xt, y0 + h + 3), 2)
            r.text(surface, f"uncertainty {score:.2f} / threshold {thr:.2f}", (x0, y0 + h + 4))
        r.text(surface, "   ".join(LEGEND), (r.width - 520, r.height - 20), (230, 230, 230))


def _tone():
    """An 880 Hz beep, or ``None`` when there is no audio device (silently skipped)."""
    try:
        import numpy as np
        import pygame

        if not pygame.mixer.get_init():
            pygame.mixer.init(frequency=22050, size=-16, channels=1)
        freq, n = pygame.mixer.get_init()[0], 4000
        wave = (0.3 * 32767 * np.sin(2 * np.pi * 880 * np.arange(n) / freq)).astype(np.int16)
        channels = pygame.mixer.get_init()[2]
        if channels > 1:
            wave = np.repeat(wave[:, None], channels, axis=1)
        return pygame.sndarray.make_sound(wave)
    except Exception:  # noqa: BLE001 - any audio failure means: no tone
        return None


def run_drive(opts: DriveOptions) -> DriveResult:
    """Run one live (or replayed) drive; returns its records and measurements."""
    import gymnasium as gym
    import pygame

    import takeover.envs  # noqa: F401  (registers the envs)
    from takeover.envs.render import Renderer
    from takeover.records import RunMeta
    from takeover.supervisor.estimators import make_estimators
    from takeover.supervisor.gates import GATES
    from takeover.supervisor.handover import HandoverConfig
    from takeover.supervisor.keyboard import KeyboardHuman, key_event, keymap
    from takeover.supervisor.loop import Supervisor
    from takeover.supervisor.replay import ReplayHuman, load_events, save_events

    if opts.fps <= 0:
        raise ValueError(f"fps={opts.fps} must be positive")
    env = gym.make(_env_id(opts.scenario), action_type=_action_type(opts), **opts.env_kwargs)
    base = env.unwrapped
    human = ReplayHuman(load_events(opts.replay)[0]) if opts.replay else KeyboardHuman()
    sup = Supervisor(env, make_agent(opts.agent, env), make_estimators([opts.estimator]),
                     GATES.make(opts.gate), human, gate_score=opts.estimator,
                     handover=HandoverConfig(human_initiative=True))
    writer = None
    if opts.log is not None:
        from takeover.logio import LogWriter

        run_id = f"drive-{opts.seed}-{int(time.time())}"
        writer = LogWriter(opts.log, RunMeta(run_id=run_id, seed=opts.seed,
                                             config={k: str(v) for k, v in
                                                     vars(opts).items()}))
    renderer = Renderer(base.config, "human", realtime=False)
    hud = Hud()
    tone = _tone() if opts.sound else None
    mapping = keymap()
    result = DriveResult()
    pending = None  # the last record, held back so a quit can mark it truncated

    def emit(rec):
        nonlocal pending
        if pending is not None and writer is not None:
            writer.write(pending)
        if pending is not None:
            result.records.append(pending)
        pending = rec

    obs, info = sup.reset(opts.seed)
    t_next = float(info.get("time", 0.0))
    sim = t_next
    frame_dt = 1.0 / opts.fps
    clock = pygame.time.Clock()
    renderer.draw(base.vehicles, base.world, base.hazard, [hud])  # opens the window
    last_wall = time.perf_counter()
    reason = ""
    try:
        while not reason:
            if opts.before_frame is not None:
                opts.before_frame(result.frames)
            t0 = time.perf_counter()
            for ev in pygame.event.get():
                if ev.type == pygame.QUIT:
                    reason = "user_quit"
                    continue
                ke = key_event(ev, sim, mapping)
                if ke is None:
                    continue
                if ke.key == "quit":
                    reason = "user_quit" if ke.down else reason
                elif not opts.replay:
                    human.push(ke, t0)
            if reason:
                break
            now = time.perf_counter()
            step_wall = frame_dt if opts.fixed_clock else min(now - last_wall, 0.25)
            last_wall = now
            sim = min(sim + step_wall, t_next) if sim < t_next else sim
            stepped = sim >= t_next
            if stepped:
                prev_phase = sup.phase
                rec = sup.step()
                lat = human.mark_stepped()
                result.latencies_ms.extend(1000.0 * x for x in lat)
                rec = dataclasses.replace(rec, info={
                    **rec.info, "input_latency_ms": 1000.0 * max(lat) if lat else math.nan})
                emit(rec)
                hud.record, hud.phase = rec, rec.phase
                if tone is not None and rec.phase == "tor" and prev_phase.value != "tor":
                    tone.play()
                t_next = float(rec.time)
                if sup.done:
                    reason = rec.reason or "done"
            renderer.draw(base.vehicles, base.world, base.hazard, [hud])
            result.frames += 1
            result.frame_ms.append(1000.0 * (time.perf_counter() - t0))
            result.stepped.append(stepped)
            if opts.max_frames is not None and result.frames >= opts.max_frames:
                reason = "max_frames"
            elif not opts.fixed_clock:
                clock.tick(opts.fps)
    finally:
        if pending is not None and reason in ("user_quit", "max_frames") and not sup.done:
            pending = dataclasses.replace(pending, truncated=True, reason="user_quit")
        emit(None)
        if writer is not None:
            if result.records:
                writer.end_episode()
            writer.close()
            if result.latencies_ms:
                _write_latency(opts.log, result.latencies_ms)
        result.reason = reason
        result.events = list(human.events)
        if opts.record is not None:
            save_events(opts.record, result.events, seed=opts.seed, scenario=opts.scenario,
                        action_type=base.config.action_type, agent=opts.agent, gate=opts.gate,
                        estimator=opts.estimator)
        renderer.close()
        env.close()
    return result


def _write_latency(run_dir: Path, lat_ms: list[float]) -> None:
    import numpy as np

    from takeover.atomic import atomic_write_text

    a = np.asarray(lat_ms)
    atomic_write_text(Path(run_dir) / "input_latency.json", json.dumps({
        "unit": "ms", "what": "key event arrival to the end of the env.step that used it",
        "n": int(a.size), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
        "max": float(a.max()), "values": a.tolist()}, indent=1))


def drive(
    scenario: Annotated[str, typer.Option(help="env id or scenario, e.g. CutIn-v1")] = "Highway-v1",
    agent: Annotated[str, typer.Option(help="shipped agent name, checkpoint dir, or 'idm'")] = "novice",
    gate: Annotated[str, typer.Option(help="takeover gate (takeover.supervisor.gates)")] = "threshold",
    estimator: Annotated[str, typer.Option(help="estimator feeding the gate")] = "ttc",
    seed: Annotated[int, typer.Option(help="episode seed")] = 0,
    action_type: Annotated[str, typer.Option(
        help="continuous, discrete, or auto (the agent's own)")] = "auto",
    log: Annotated[Path | None, typer.Option(help="write the episode log to this run dir")] = None,
    record: Annotated[Path | None, typer.Option(help="save the key events (JSON)")] = None,
    replay: Annotated[Path | None, typer.Option(help="replay recorded key events")] = None,
    max_frames: Annotated[int | None, typer.Option(help="stop after N frames")] = None,
    fixed_clock: Annotated[bool, typer.Option(help="1/60 s per frame, no waiting")] = False,
) -> None:
    """Drive live: the agent drives, you take over with SPACE/T and hand back with R."""
    from rich.console import Console

    res = run_drive(DriveOptions(scenario=scenario, agent=agent, gate=gate, estimator=estimator,
                                 seed=seed, action_type=action_type, log=log, record=record,
                                 replay=replay, max_frames=max_frames, fixed_clock=fixed_clock))
    human_steps = sum(r.controller == "human" for r in res.records)
    Console().print(f"episode ended: {res.reason}; {len(res.records)} steps, {human_steps} "
                    f"driven by you, {res.frames} frames")
