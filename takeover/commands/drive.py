"""``takeover drive``: take over from the agent live, in a pygame window (a thin shell over
``takeover.supervisor.live``, where the session, its timing and its replay are documented).

A press of SPACE starts the episode; the agent drives; when the gate asks (red frame, tone,
countdown to the automatic stop) take over with SPACE (or any arrow / WASD key), drive, hand
back with R. P pauses; at the end the outcome stays on screen (R restart, N next, ESC quit).

``--fleet N`` supervises N worlds at once (``takeover.supervisor.fleet_view``): you are one
of ``--humans`` H humans (the others scripted, sent by ``--allocation``); pick a world with
its number key or a click, drive it, Tab / ESC back to the overview.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.markup import escape


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)  # paths whole
    raise typer.Exit(2)


@contextlib.contextmanager
def person_errors():
    """Bad input and any failure reach the person as one line (exit 2), never a traceback
    (``TAKEOVER_DEBUG=1`` re-raises); Ctrl-C exits 130."""
    from takeover.config import ConfigError

    try:
        yield
    except ConfigError as err:  # RecordingError is a ValueError subclass too: see below
        _fail(str(err))
    except FileNotFoundError as err:
        _fail(f"{err.filename or err}: not found")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as err:  # noqa: BLE001 - no traceback reaches the person
        from takeover.folders import DISK_FULL

        if os.environ.get("TAKEOVER_DEBUG") or getattr(err, "errno", None) in DISK_FULL:
            raise  # a full disk: the one line every command prints (takeover.cli)
        from takeover.supervisor.replay import RecordingError

        if isinstance(err, (RecordingError, ImportError)):
            _fail(str(err))
        _fail(f"{type(err).__name__}: {err} (set TAKEOVER_DEBUG=1 for the traceback)")


def drive(
    scenario: Annotated[str | None, typer.Option(
        help="env id or scenario, e.g. CutIn-v2 [default: Highway-v2]")] = None,
    agent: Annotated[str | None, typer.Option(
        help="shipped agent name, checkpoint dir, or 'idm' [default: novice]")] = None,
    gate: Annotated[str | None, typer.Option(
        help="takeover gate (takeover.supervisor.gates) [default: threshold]")] = None,
    estimator: Annotated[str | None, typer.Option(
        help="estimator feeding the gate [default: ttc]")] = None,
    seed: Annotated[int | None, typer.Option(help="first episode's seed [default: 1]")] = None,
    action_type: Annotated[str | None, typer.Option(
        help="continuous, discrete, or auto (the agent's own) [default: auto]")] = None,
    release: Annotated[str | None, typer.Option(
        help="who hands control back: human (R only), calm, gate [default: human]")] = None,
    withdraw: Annotated[bool | None, typer.Option(
        "--withdraw/--no-withdraw",
        help="withdraw a request when the gate stops asking [default: withdraw]")] = None,
    timeout: Annotated[float | None, typer.Option(
        help="s a request waits before the automatic stop [default: 5]")] = None,
    gamepad: Annotated[bool, typer.Option(help="drive with a gamepad or wheel")] = False,
    log: Annotated[Path | None, typer.Option(help="write the episode log to this run dir")] = None,
    record: Annotated[Path | None, typer.Option(help="save the recording (JSON)")] = None,
    replay: Annotated[Path | None, typer.Option(help="replay a recording in the window")] = None,
    fullscreen: Annotated[bool, typer.Option(help="open full screen")] = False,
    sound: Annotated[bool, typer.Option(help="a tone with each takeover request")] = True,
    max_frames: Annotated[int | None, typer.Option(help="stop after N frames")] = None,
    fixed_clock: Annotated[bool, typer.Option(
        help="1/60 s per frame, no waiting, no start/end screen (headless runs)")] = False,
    fleet: Annotated[int | None, typer.Option(
        help="supervise N worlds at once (1-10): number keys / click pick one")] = None,
    humans: Annotated[int | None, typer.Option(
        help="with --fleet: humans in all, you included (the rest scripted) [default: 2]")] = None,
    allocation: Annotated[str | None, typer.Option(
        help="with --fleet: who sends the scripted humans (takeover.supervisor.allocation) "
             "[default: constraint]")] = None,
    episodes: Annotated[int | None, typer.Option(
        help="with --fleet: episodes each world plays [default: 3]")] = None,
) -> None:
    """Drive live: the agent drives, you take over with SPACE and hand back with R."""
    from rich.console import Console

    from takeover.config import ConfigError
    from takeover.supervisor.live import LiveSession, LiveSettings, LoopOptions, merge_settings
    from takeover.supervisor.replay import load_recording

    given: dict[str, Any] = dict(scenario=scenario, agent=agent, gate=gate, estimator=estimator,
                                 action_type=action_type, release=release, withdraw=withdraw,
                                 timeout=timeout,
                                 input="gamepad" if gamepad else None)
    with person_errors():
        recording = None
        if replay is not None:
            recording = load_recording(replay)
        from takeover.supervisor import fleet_view

        if fleet is not None or (recording is not None and fleet_view.is_fleet_recording(
                recording)) or any(v is not None for v in (humans, allocation, episodes)):
            _drive_fleet(given, recording, seed=seed, worlds=fleet, humans=humans,
                         allocation=allocation, episodes=episodes, log=log, record=record,
                         replay=replay, fullscreen=fullscreen, sound=sound,
                         max_frames=max_frames, fixed_clock=fixed_clock)
            return
        if replay is not None:
            assert recording is not None  # loaded above: replay is not None
            settings = merge_settings(recording, given)
            if seed is not None and recording.episodes and seed != recording.episodes[0].seed:
                raise ConfigError(f"{replay} was recorded with seed "
                                  f"{recording.episodes[0].seed}, not {seed}: drop --seed")
        else:
            settings = LiveSettings(**{k: v for k, v in given.items() if v is not None})
        session = LiveSession(settings, 1 if seed is None else seed, LoopOptions(
            fixed_clock=fixed_clock, sound=sound, max_frames=max_frames,
            start_screen=not fixed_clock, end_screen=not fixed_clock), log=log,
            record=record, recording=recording, fullscreen=fullscreen)
        res = session.run()
    con = Console()
    for ep in res.episodes:
        s = ep.summary
        assert s is not None  # set before an episode is kept (live.run_episode's on_end)
        con.print(f"seed {ep.seed}: {s.outcome}; {len(ep.records)} steps, {s.human_s:.1f} s "
                  f"driven by you")
    if record is not None and res.episodes:
        con.print(escape(f"recording saved to {record} (replay with --replay {record})"), soft_wrap=True)


def _drive_fleet(given: dict[str, Any], recording: Any, *, seed: int | None, worlds: int | None,
                 humans: int | None, allocation: str | None, episodes: int | None,
                 log: Path | None, record: Path | None, replay: Path | None, fullscreen: bool,
                 sound: bool, max_frames: int | None, fixed_clock: bool) -> None:
    """``--fleet N``: the live fleet view (or the replay of a fleet recording)."""
    from rich.console import Console

    from takeover.config import ConfigError
    from takeover.experiments.fleet import cell_summary
    from takeover.supervisor.fleet import FleetConfig
    from takeover.supervisor.fleet_view import (
        DEMO_LIVE,
        FleetSession,
        FleetViewSettings,
        is_fleet_recording,
        settings_of,
    )
    from takeover.supervisor.live import LiveSettings, LoopOptions

    fleet_given = dict(worlds=worlds, humans=humans, allocation=allocation, episodes=episodes)
    from takeover.supervisor.fleet_view import MAX_WORLDS

    if worlds is not None and not 1 <= worlds <= MAX_WORLDS:
        raise ConfigError(f"--fleet {worlds}: the number keys reach {MAX_WORLDS} worlds "
                          f"(1-9, 0); give --fleet 1..{MAX_WORLDS}")
    if worlds is None and recording is None:
        named = ", ".join(f"--{k}" for k, v in fleet_given.items() if v is not None)
        raise ConfigError(f"{named} belong to the fleet view: add --fleet N (worlds)")
    if recording is not None:
        if not is_fleet_recording(recording):
            raise ConfigError(f"{replay} records a single-world drive: drop --fleet")
        settings = settings_of(recording)
        now = {**{k: v for k, v in given.items() if v is not None},
               **{k: v for k, v in fleet_given.items() if v is not None}}
        was = {**{k: getattr(settings.live, k) for k in given},
               "worlds": settings.worlds, "humans": settings.fleet.num_humans,
               "allocation": settings.fleet.allocation, "episodes": settings.episodes}
        for k, v in now.items():
            if k in was and v != was[k] and k != "scenario":
                raise ConfigError(f"the recording was made with {k}={was[k]!r}, not {v!r}: "
                                  f"a replay cannot change it; drop --{k.replace('_', '-')}")
        first = recording.episodes[0].seed if recording.episodes else 1
        if seed is not None and seed != first:
            raise ConfigError(f"{replay} was recorded with seed {first}, not {seed}: drop --seed")
        seed = first
    else:
        live = LiveSettings(**{**DEMO_LIVE, **{k: v for k, v in given.items() if v is not None}})
        fc = FleetConfig(num_humans=2 if humans is None else humans,
                         **cast("dict[str, Any]",
                                {} if allocation is None else {"allocation": allocation}))
        assert worlds is not None  # worlds and recording both None raised above
        settings = FleetViewSettings(live=live, worlds=worlds, fleet=fc,
                                     **cast("dict[str, Any]",
                                            {} if episodes is None else {"episodes": episodes}))
    res = FleetSession(settings, 1 if seed is None else seed, LoopOptions(
        fixed_clock=fixed_clock, sound=sound, max_frames=max_frames,
        start_screen=not fixed_clock and recording is None, end_screen=not fixed_clock),
        log=log, record=record, recording=recording, fullscreen=fullscreen).run()
    con = Console()
    s = cell_summary(res.stats) if res.stats is not None else None
    if s is not None:
        mine = sum(r.controller == "human" for recs in res.records for r in recs)
        con.print(f"fleet of {int(s['N'])}: {int(s['arrivals'])} of {int(s['episodes'])} "
                  f"episodes arrived; {int(s['waits'])} waits (mean {s['wait_mean_s']:.1f} s); "
                  f"ROHE {s['rohe']:.3g}; {mine} human-driven steps; ended: {res.end}")
    if record is not None and recording is None and res.stats is not None:
        con.print(escape(f"recording saved to {record} (replay with --replay {record})"),
                  soft_wrap=True)
