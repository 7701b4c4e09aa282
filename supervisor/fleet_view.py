"""The live fleet view: one person among the H humans supervising N worlds, in real time.

``takeover drive --fleet N``: the window shows N minimaps (road, ego, traffic; a world that
requests a human blinks red with its waiting time; each says its state: agent, waiting, MRM,
human (you or a scripted H2, H3 ...), recovery, ended). A number key (1-9, 0 for the
tenth) or a click drives that world full size, with the live drive's controls and HUD
(``takeover.supervisor.live``) and a strip naming what the other worlds do; Tab or Esc
returns to the overview. All N worlds keep stepping in real time whatever the person
looks at: a request nobody answers falls back to the minimal-risk manoeuvre.

Layers:

* :class:`FleetLive` is the seam to the engine: one ``HighwayVectorEnv`` of N worlds, one
  :class:`~takeover.supervisor.engine.Engine`, and as its humans a
  :class:`~takeover.supervisor.fleet.FleetHumans` of H humans whose human 0 is the person
  (pinned: placed by :meth:`FleetLive.seat`, never by the allocation policy) and whose
  other H - 1 are scripted humans sent by the policy. The per-world models are
  :class:`SeatedHumans`: the scripted model everywhere but in the person's world, where
  the person's :class:`~takeover.supervisor.keyboard.KeyHuman` answers.
* :func:`run_session` is the real-time loop (overview, driving, pause, end card);
  :func:`replay_session` re-runs a recording headless.

Exact replay: the person's key events are stamped with the fleet's step (engine steps
since the session began) that consumes them and the fleet's simulated time, and every seat
change with the step before which it happened; the recording (the live drive's format,
``takeover.supervisor.replay``, one "episode" holding the whole session, the seat changes
under ``settings["seats"]``) replays to the same records in every world.
"""

from __future__ import annotations

import dataclasses
import math
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from takeover.config import ConfigError, from_dict, option, to_dict, validate
from takeover.envs import layout as L
from takeover.records import StepRecord
from takeover.types import PHASES, HumanInputs, HumanView, HumanViews, Phase

from .fleet import FALLBACK, HUMAN, TOR, FleetConfig
from .keyboard import LEGEND, KeyEvent, KeyHuman, key_event, keymap
from .live import AMBER, CYAN, GREY, RED, WHITE, LiveSettings, policy_text, toggle_pause

if TYPE_CHECKING:
    from takeover.envs.render import Overlay

KIND = "fleet"
"""``settings["kind"]`` of a fleet recording."""
MAX_WORLDS = 10

DEMO_WARNING = 4.0
"""s of time-to-collision at which the fleet demo's ttc gate asks (:attr:`FleetViewSettings.warning`)."""

DEMO_LIVE: dict[str, Any] = {"env": {"onset": (12.0, 24.0), "vehicles": 12, "duration": 40.0},
                             "timeout": 8.0}
"""The fleet demo's defaults under what ``takeover drive --fleet`` is given: hazards later
(12-24 s, not 5-14 s) and traffic lighter (12 cars, not 20) in longer episodes (40 s), and
8 s before an unanswered request falls to the minimal-risk manoeuvre, so a newcomer has read
the overview before the first request and can still reach a world that asks. Measured with
the novice on the default world: every world of ``--fleet 4 --episodes 1`` had crashed
within 12 s, each 1.1 s after its request."""
"""Worlds the number keys reach (1-9, 0 for the tenth)."""
ENDS = ("done", "quit", "close", "max_frames")


@dataclass(frozen=True)
class FleetViewSettings:
    """What a live fleet session depends on (all of it stored in a recording)."""

    live: LiveSettings = option(None, "what each world runs and how the person drives",
                                factory=lambda: LiveSettings(**DEMO_LIVE))
    worlds: int = option(4, "N, the worlds supervised", range=(1, MAX_WORLDS))
    human: str = option("average", "the scripted humans' model (takeover.supervisor.humans)")
    episodes: int = option(3, "episodes each world plays", range=(1, 1000))
    fleet: FleetConfig = option(None, "the H humans (you are one of them) and their costs",
                                factory=lambda: FleetConfig(num_humans=2))
    warning: float = option(
        DEMO_WARNING, "s of time-to-collision at which the ttc estimator's score reaches 0.5 "
        "(its ref; the threshold gate asks there): one person watching N minimaps needs more "
        "warning than a driver watching one road (TOR lead times of 5-7 s are studied, Gold "
        "et al. 2013); other estimators ignore it", range=(0.5, 30.0))

    def __post_init__(self) -> None:
        validate(self)
        from .humans import HUMANS

        if self.human not in HUMANS.names():
            raise ConfigError(f"unknown human model {self.human!r}; valid: "
                              f"{', '.join(HUMANS.names())}")
        if self.live.input != "keyboard":
            raise ConfigError("the fleet view is driven with the keyboard (number keys pick "
                              "a world); drop --gamepad")


class IDMAgents:
    """The ``idm`` stand-in agent for N worlds: the careful driver in each (per-world
    Python, for a live fleet of at most :data:`MAX_WORLDS`)."""

    def __init__(self, venv: Any) -> None:
        from takeover.envs.drivers import IDMDriver

        from .engine import WorldView

        self.views = [WorldView(venv, i) for i in range(venv.num_envs)]
        self.drivers = [IDMDriver() for _ in self.views]

    def act_arrays(self, obs: np.ndarray):
        from takeover.types import AgentOutputs

        return AgentOutputs(action=np.stack([np.asarray(d(v))  # type: ignore[arg-type]  # a view quacks like the env
                                             for d, v in
                                             zip(self.drivers, self.views)]))


def reset_hands(person: KeyHuman) -> None:
    """Nothing held, wheel centred, pedals released (the person arrives in another world
    with their hands off the controls; the state's clock is kept)."""
    st = person.state
    t = st.time
    st.reset()
    st.time = t


class SeatedHumans:
    """The per-world human models of a live fleet (a batched ``Humans``): the scripted
    ``inner`` in every world, the ``person`` in world :attr:`world` (``-1``: none).

    The person is asked every step (their answer is dropped while they are in no world), so
    their step counter is the fleet's step and a recorded event is consumed by the same step
    in a replay; their view's time is the fleet clock (``step * dt``), which their held keys
    are integrated over.
    """

    def __init__(self, inner: Any, person: KeyHuman, dt: float) -> None:
        self.inner, self.person, self.dt = inner, person, float(dt)
        self.world = -1
        self.step = 0
        self._views: dict[int, Any] = {}

    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        self.inner.reset(worlds, seeds)

    def act(self, obs: np.ndarray, info: Any, world: Any, views: HumanViews) -> HumanInputs:
        from .engine import InfoRow, WorldView

        hin = self.inner.act(obs, info, world, views)
        i = self.world
        k = max(i, 0)
        if k not in self._views:
            self._views[k] = WorldView(world, k)
        view = HumanView(phase=PHASES[int(views.phase[k])] if i >= 0 else Phase.AGENT,
                         tor_active=bool(views.tor_active[k]) and i >= 0,
                         tor_elapsed=float(views.tor_elapsed[k]) if i >= 0 else 0.0,
                         urgency=float(views.urgency[k]) if i >= 0 else 0.0,
                         time=self.step * self.dt)
        got = self.person.act(obs[k], InfoRow(info, k), self._views[k], view)
        self.step += 1
        if i < 0:
            return hin
        action = np.array(hin.action, copy=True)
        has, wants, rel = (np.array(a, dtype=bool, copy=True)
                           for a in (hin.has_action, hin.wants_control, hin.releases))
        if got.action is not None:
            action[i] = np.asarray(got.action, dtype=action.dtype).reshape(action[i].shape)
        has[i], wants[i], rel[i] = got.action is not None, got.wants_control, got.releases
        intent = hin.intent
        if intent is not None or got.intent is not None:
            # world i's label is the person's (none from a keyboard), never the model's
            intent = (np.full((len(has), 2), np.nan, dtype=np.float32) if intent is None
                      else np.array(intent, dtype=np.float32, copy=True))
            intent[i] = (np.nan if got.intent is None or got.action is None
                         else np.asarray(got.intent, dtype=np.float32).reshape(2))
        return HumanInputs(action=action, has_action=has, wants_control=wants, releases=rel,
                           intent=intent)


@dataclass(frozen=True)
class WorldState:
    """What a minimap says of one world."""

    kind: str
    """``agent``, ``waiting``, ``mrm``, ``human`` (you), ``scripted``, ``arriving`` (a
    scripted human switching in), ``recovery``, ``wreck`` (waiting for a recovery) or
    ``ended``."""
    label: str
    waiting: float = math.nan
    """s the world has waited for a human (NaN: not waiting)."""


class FleetLive:
    """The seam between the fleet view and the engine (see the module docstring).

    Args:
        settings: what is driven.
        seed: the first episode's seed; world episodes use ``seed + k``, k = 0 .. N E - 1.
        person: the person's key human (a :class:`KeyHuman` given the recorded events in a
            replay); ``None`` for a fresh live keyboard.
    """

    PERSON = 0
    """The fleet's human index of the person."""

    def __init__(self, settings: FleetViewSettings, seed: int,
                 person: KeyHuman | None = None) -> None:
        import takeover.envs  # noqa: F401  (registers the envs)
        from takeover.envs.vector import make_vector_env

        from .engine import Engine
        from .estimators import make_estimators
        from .fleet import FleetHumans
        from .gates import GATES
        from .handover import HandoverConfig
        from .humans import HUMANS
        from .keyboard import KeyboardHuman
        from .live import env_id, resolve_action_type

        s, ls = settings, settings.live
        self.settings, self.seed, self.n = s, int(seed), s.worlds
        self.env_id = env_id(ls.scenario)
        self.venv = make_vector_env(self.env_id, s.worlds, action_type=resolve_action_type(ls),
                                    **ls.env)
        agent = IDMAgents(self.venv) if ls.agent == "idm" else _load_agent(ls, self.env_id)
        self.dt = float(self.venv.config.dt)
        self.person = person if person is not None else KeyboardHuman(rates=ls.rates)
        self.seated = SeatedHumans(HUMANS.make(s.human, num_worlds=s.worlds), self.person,
                                   self.dt)
        self.fleet = FleetHumans(self.seated, s.worlds, s.fleet, dt=self.dt)
        self.fleet.pin(self.PERSON)
        cfg = HandoverConfig(timeout=ls.timeout, min_human_time=ls.min_human_time,
                             release=ls.release, calm_time=ls.calm_time, withdraw=ls.withdraw,
                             human_initiative=True)
        spec = {ls.estimator: {"ref": s.warning} if ls.estimator == "ttc" else {}}
        est = make_estimators(spec, reference_obs=getattr(agent, "reference_obs", None))
        self.engine = Engine(self.venv, agent, est, GATES.make(ls.gate), self.fleet,
                             gate_score=ls.estimator, handover=cfg, keep_records=True)
        self.score_name = ls.estimator
        self.settings_live = ls
        self.steps = 0
        self.seats: list[tuple[int, int]] = []
        self.episodes: list[Any] = []
        self.outcomes = [""] * s.worlds
        self.engine.start([self.seed + k for k in range(s.worlds * s.episodes)])

    # --- what the person does ------------------------------------------------------------
    @property
    def world(self) -> int:
        """The world the person is in (``-1``: the overview)."""
        return self.seated.world

    def seat(self, world: int) -> None:
        """Put the person in ``world`` (``-1``: back to the overview) before the next step.
        Leaving a world they drive hands it back to the agent (nobody would be at its
        wheel); a scripted human in the new world leaves it to them."""
        if world == self.world:
            return
        if not -1 <= world < self.n:
            raise ValueError(f"world {world} does not exist: 0..{self.n - 1}")
        old = self.world
        if old >= 0 and int(self.engine.phase[old]) == HUMAN:
            self.fleet.release_next(old)
        self.fleet.place(self.PERSON, world)
        self.seated.world = world
        reset_hands(self.person)
        self.seats.append((self.steps, world))

    def step(self) -> list[Any]:
        """One control step of every world; the episodes that ended in it."""
        playing = {cur[1]: i for i, cur in enumerate(self.engine.current) if cur is not None}
        ended = self.engine.step()
        self.steps += 1
        for ep in ended:
            if ep.records and ep.name in playing:
                last = ep.records[-1]
                self.outcomes[playing[ep.name]] = str(last.info.get("outcome", "") or last.reason)
        self.episodes.extend(ended)
        return ended

    @property
    def done(self) -> bool:
        return self.engine.done

    @property
    def time(self) -> float:
        """The fleet clock, s (simulated time since the session began)."""
        return self.steps * self.dt

    # --- what the screen shows -----------------------------------------------------------
    def state(self, i: int) -> WorldState:
        eng, fl = self.engine, self.fleet
        if not eng.active[i]:
            return WorldState("ended", f"ended: {self.outcomes[i] or '-'}")
        clock = fl.clock
        j = int(fl.w_human[i])
        wait = clock - fl.w_wait_start[i] if not math.isnan(fl.w_wait_start[i]) else math.nan
        if fl.w_blocked[i]:
            left = fl.w_reset_done[i] - clock
            if math.isnan(left):
                return WorldState("wreck", "WRECK: needs a human", wait)
            who = "you" if j == self.PERSON else f"H{j + 1}"
            return WorldState("recovery", f"recovery by {who}: {math.ceil(max(left, 0))} s")
        ph = int(eng.phase[i])
        kmh = f"{3.6 * float(self.venv.vehicles[i, 0, L.V]):.0f} km/h"
        if ph == HUMAN:
            return (WorldState("human", f"YOU drive  {kmh}") if j == self.PERSON else
                    WorldState("scripted", f"H{j + 1} drives  {kmh}" if j >= 0
                               else f"human drives  {kmh}"))
        if j >= 0 and ph in (TOR, FALLBACK):
            if j == self.PERSON:
                return WorldState("mrm" if ph == FALLBACK else "waiting",
                                  "YOU: take over (SPACE)", wait)
            if clock < fl.h_ready[j]:
                return WorldState("arriving", f"H{j + 1} arriving in "
                                  f"{fl.h_ready[j] - clock:.1f} s", wait)
            return WorldState("arriving", f"H{j + 1} taking over", wait)
        if ph == FALLBACK:
            return WorldState("mrm", "MRM: automatic stop" + (f"  waited {wait:.1f} s"
                                                               if wait == wait else ""), wait)
        if ph == TOR:
            left = float(eng.time_left()[i])
            w = wait if wait == wait else 0.0
            return WorldState("waiting", f"WAITING {w:.1f} s  (MRM in {max(left, 0):.1f} s)", w)
        return WorldState("agent", f"agent  {kmh}")

    def record(self, i: int) -> StepRecord | None:
        """World ``i``'s last record (``None`` before the first step)."""
        return self.engine.last_record(i) if self.engine.stepped else None

    def countdown(self, i: int) -> tuple[str, float]:
        ph = int(self.engine.phase[i])
        if ph == TOR:
            return "fallback", float(self.engine.time_left()[i])
        left = float(self.engine.handback_left()[i])
        return ("handback", left) if not math.isnan(left) else ("", math.nan)

    def all_records(self) -> list[list[StepRecord]]:
        """Every episode's records: the ended ones in the order they ended, then each
        running one so far (cut off), world by world."""
        out = [list(ep.records) for ep in self.episodes]
        for i in range(self.n):
            if self.engine.active[i]:
                recs = self.engine.running_records(i)
                if recs:
                    recs[-1] = dataclasses.replace(recs[-1], truncated=True, reason="user_quit")
                    out.append(recs)
        return out

    def close(self) -> None:
        self.venv.close()


def _load_agent(ls: LiveSettings, env_id: str) -> Any:
    import gymnasium as gym

    from takeover.agents.checkpoint import load_agent

    from .live import resolve_action_type

    env = gym.make(env_id, action_type=resolve_action_type(ls), **ls.env)
    return load_agent(ls.agent, env=env)


# --- drawing ---------------------------------------------------------------------------
STATE_COLORS = {"agent": WHITE, "waiting": RED, "mrm": AMBER, "human": CYAN,
                "scripted": (150, 200, 255), "arriving": (255, 150, 150), "recovery": AMBER,
                "wreck": RED, "ended": GREY}
HEADER = 30  # px above the grid


def grid(n: int, width: int, height: int, top: int = HEADER) -> list[tuple[int, int, int, int]]:
    """The minimaps' rectangles ``(x, y, w, h)``, row-major: one column for up to 3
    worlds, two up to 10 (a minimap is a strip of road, wide and low)."""
    cols = 1 if n <= 3 else 2
    rows = math.ceil(n / cols)
    cw, ch = width // cols, (height - top) // rows
    return [((k % cols) * cw, top + (k // cols) * ch, cw, ch) for k in range(n)]


def cell_at(n: int, width: int, height: int, pos: tuple[int, int]) -> int:
    """The world whose minimap holds frame pixel ``pos`` (``-1``: none)."""
    for k, (x, y, w, h) in enumerate(grid(n, width, height)):
        if x <= pos[0] < x + w and y <= pos[1] < y + h:
            return k
    return -1


def key_label(i: int) -> str:
    """The number key of world ``i`` (0-based): 1..9, then 0."""
    return str((i + 1) % 10)


class FleetScreen:
    """The window and the frames: the overview grid, a world full size with the HUD."""

    def __init__(self, live: FleetLive, window: Any, width: int = 1000,
                 height: int = 460) -> None:
        import pygame

        from takeover.envs.render import Renderer

        from .live import Hud

        self.live, self.window = live, window
        self.width, self.height = width, height
        cfg = live.venv.config
        self.big = Renderer(cfg, "rgb_array", width=width, height=height, realtime=False)
        x, y, cw, ch = grid(live.n, width, height)[0]
        road = (cfg.lanes + 0.5) * cfg.lane_width + 4.0  # m across, verge to verge
        scale = min(max((ch - 10) / road, 1.5), 7.0)
        self.mini = Renderer(cfg, "rgb_array", width=max(cw - 6, 64), height=max(ch - 6, 64),
                             scale=scale, caption=False, realtime=False)
        self.hud = Hud(_HudSource(live))  # type: ignore[arg-type]  # the HUD reads only what it shows
        self.frame_surface = pygame.Surface((width, height))
        self.frames = 0

    def _world(self, i: int) -> tuple[Any, Any, str]:
        v = self.live.venv
        return v.vehicles[i], v.world[i], str(v._hazard[i])

    def overview(self, card: tuple[str, Sequence[str]] | None = None) -> Any:
        import pygame

        live, surf, r = self.live, self.frame_surface, self.big
        self.frames += 1
        blink = (self.frames // 15) % 2 == 0
        surf.fill((18, 18, 22))
        fl = live.fleet
        waiting = sum(live.state(i).kind in ("waiting", "mrm", "wreck") for i in range(live.n))
        h = fl.config.num_humans
        others = (f"you + {h - 1} scripted human{'s' if h > 2 else ''} "
                  f"({fl.config.allocation})" if h > 1 else "you alone")
        r.text(surf, f"FLEET  t {live.time:5.1f} s   {live.n} worlds, {others}   "
               f"waiting: {waiting}", (10, 7), WHITE)
        keys = "1" if live.n == 1 else ("1-9, 0" if live.n == 10 else f"1-{live.n}")
        hint = f"{keys} or click: drive a world   P pause   ESC quit"
        img = r.font.render(hint, True, GREY)
        surf.blit(img, (self.width - img.get_width() - 10, 7))
        for i, (x, y, w, hgt) in enumerate(grid(live.n, self.width, self.height)):
            st = live.state(i)
            color = STATE_COLORS[st.kind]
            veh, wld, hz = self._world(i)
            pic = self.mini.compose(veh, wld, hz)
            surf.blit(pic, (x + 3, y + 3))
            alert = st.kind in ("waiting", "wreck")
            if alert and blink or st.kind == "mrm":
                pygame.draw.rect(surf, color, (x + 1, y + 1, w - 2, hgt - 2), 4)
            else:
                pygame.draw.rect(surf, (60, 60, 66), (x + 1, y + 1, w - 2, hgt - 2), 1)
            if st.kind == "ended":
                shade = pygame.Surface((w - 6, hgt - 6), pygame.SRCALPHA)
                shade.fill((0, 0, 0, 150))
                surf.blit(shade, (x + 3, y + 3))
            r.text(surf, key_label(i), (x + 8, y + 6), WHITE, big=True, background=(0, 0, 0))
            r.text(surf, st.label, (x + 34, y + 8), color, background=(0, 0, 0))
        if card is not None:
            from takeover.envs.render import panel

            panel(surf, r, card[0], card[1])
        return surf

    def driving(self, card: tuple[str, Sequence[str]] | None = None) -> Any:
        live = self.live
        i = live.world
        st = self.hud.state
        st.record = live.record(i)
        st.phase = PHASES[int(live.engine.phase[i])].value if live.engine.active[i] else "ended"
        st.countdown = live.countdown(i)
        st.now = live.time
        overlays: list[Overlay] = [self.hud, self._strip]
        if card is not None:
            from takeover.envs.render import panel

            overlays.append(lambda s, r: panel(s, r, card[0], card[1]))
        veh, wld, hz = self._world(i)
        return self.big.compose(veh, wld, hz, overlays)

    def _strip(self, surface: Any, r: Any) -> None:
        """The other worlds, one token each, coloured by state: what might need you."""
        live = self.live
        x, y = 12, r.height - 44
        img = r.font.render(f"WORLD {key_label(live.world)}   Tab: overview   others:", True,
                            WHITE, (0, 0, 0))
        surface.blit(img, (x, y))
        x += img.get_width() + 8
        for i in range(live.n):
            if i == live.world:
                continue
            st = live.state(i)
            who = st.label.split()[0]  # "H2" of a scripted human's labels
            word = {"agent": "ok", "waiting": (f"WAIT {st.waiting:.0f}s" if st.waiting == st.waiting
                                             else "WAIT"), "mrm": "MRM",
                    "human": "you", "scripted": who, "arriving": f"{who} coming",
                    "recovery": "reset", "wreck": "WRECK", "ended": "end"}[st.kind]
            img = r.font.render(f"{key_label(i)}:{word}", True, STATE_COLORS[st.kind], (0, 0, 0))
            surface.blit(img, (x, y))
            x += img.get_width() + 8

    def show(self, card: tuple[str, Sequence[str]] | None = None) -> Any:
        surf = self.overview(card) if self.live.world < 0 else self.driving(card)
        if self.window is not None:
            self.window.present(surf)
        return surf

    def close(self) -> None:
        self.big.close()
        self.mini.close()


class _HudSource:
    """What the live HUD asks of its session, for the world the person drives."""

    def __init__(self, live: FleetLive) -> None:
        self.settings = live.settings.live
        self.policy = policy_text(live.settings.live)
        self.score_name = live.score_name
        self.legend = (*LEGEND[:-1], "Tab/ESC overview")


# --- the loop --------------------------------------------------------------------------
@dataclass
class FleetSessionResult:
    """One live fleet session."""

    records: list[list[StepRecord]] = field(default_factory=list)
    """Every episode's records (see :meth:`FleetLive.all_records`)."""
    events: list[KeyEvent] = field(default_factory=list)
    seats: list[tuple[int, int]] = field(default_factory=list)
    end: str = "done"
    steps: int = 0
    frames: int = 0
    stats: Any = None
    """The fleet's :class:`~takeover.supervisor.fleet.FleetStats`."""
    sim_s: float = 0.0
    wall_s: float = 0.0


def _number(ev: Any) -> int:
    """World index of a number key press (1..9, 0 = the tenth), else -1."""
    import pygame

    if ev.type != pygame.KEYDOWN:
        return -1
    for k in range(10):
        if ev.key in (getattr(pygame, f"K_{k}"), getattr(pygame, f"K_KP{k}", -999)):
            return (k - 1) % 10
    return -1


def run_session(live: FleetLive, screen: FleetScreen, opts: Any, *, clock: Any,
                seats: list[tuple[int, int]] | None = None,
                end_step: int | None = None) -> FleetSessionResult:
    """The fleet in real time until every world has played its episodes, the person quits
    (ESC in the overview, Q, the window closed) or ``opts.max_frames`` frames. ``opts`` is
    the live drive's :class:`~takeover.supervisor.live.LoopOptions`. A replay gives the
    recorded ``seats`` (``(step, world)``, applied before that step) and ``end_step``;
    live keys then only pause and quit."""
    import pygame

    from .live import _ui_key, tone

    res = FleetSessionResult()
    replaying = seats is not None
    plan = list(seats or [])
    mapping = keymap()
    person = live.person
    beep = tone() if opts.sound else None
    budget = opts.max_frames
    wall0 = clock.now()
    paused_total, pause_start = 0.0, math.nan
    t_next = live.time
    end = ""
    n_waiting = 0
    while not end:
        if opts.before_frame is not None:
            opts.before_frame(res.frames)
        t0 = clock.now()
        paused = not math.isnan(pause_start)
        sim_now = (pause_start if paused else t0) - wall0 - paused_total
        stamp = min(sim_now, t_next)
        for ev in pygame.event.get():
            if ev.type == pygame.QUIT:
                end = "close"
                break
            ui = _ui_key(ev)
            if ui == "pause":
                pause_start, paused_total = toggle_pause(pause_start, paused_total, t0)
                paused = not math.isnan(pause_start)
                continue
            back = ev.type == pygame.KEYDOWN and ev.key in (pygame.K_TAB, pygame.K_ESCAPE)
            if ev.type == pygame.KEYDOWN and ev.key == pygame.K_q or (
                    back and ev.key == pygame.K_ESCAPE and live.world < 0):
                end = "quit"
                break
            if replaying or paused:
                continue
            pick = _number(ev)
            if ev.type == pygame.MOUSEBUTTONDOWN and getattr(ev, "button", 1) == 1 \
                    and live.world < 0 and screen.window is not None:
                pos = screen.window.to_frame(ev.pos)
                pick = -1 if pos is None else cell_at(live.n, screen.width, screen.height, pos)
            if 0 <= pick < live.n:
                live.seat(pick)
                continue
            if back:
                live.seat(-1)
                continue
            if live.world >= 0:
                ke = key_event(ev, stamp, mapping, live.steps)
                if ke is not None and ke.key != "quit":
                    person.push(ke, t0)
        if end:
            break
        if not paused:
            sim = t0 - wall0 - paused_total
            k = 0
            while sim >= t_next - 1e-6 and k < 5 and not live.done:
                if end_step is not None and live.steps >= end_step:
                    break
                _apply_seats(live, plan)
                live.step()
                k += 1
                t_next = live.time
            if live.done or (end_step is not None and live.steps >= end_step):
                end = "done"
        w = sum(live.state(i).kind in ("waiting", "wreck") for i in range(live.n))
        if beep is not None and w > n_waiting:
            beep.play()
        n_waiting = w
        screen.show(("PAUSED", ["P resume    ESC / Q quit"]) if paused else None)
        res.frames += 1
        if not end and budget is not None and res.frames >= budget:
            end = "max_frames"
        if not end:
            clock.tick()
    res.end, res.steps = end, live.steps
    res.sim_s, res.wall_s = live.time, clock.now() - wall0 - paused_total
    res.records = live.all_records()
    res.events = list(person.events)
    res.seats = list(live.seats)
    res.stats = live.fleet.stats()
    if end == "done" and opts.end_screen and not replaying:
        _end_card(live, screen, opts, clock, res)
    return res


def summary_lines(live: FleetLive, res: FleetSessionResult) -> list[str]:
    """The end card: arrivals, failures, waiting, and what the person did."""
    s = res.stats.summary()
    return [f"{int(s['arrivals'])} of {int(s['episodes'])} episodes arrived, "
            f"{int(round(s['failure_rate'] * s['episodes'])) if s['episodes'] else 0} "
            f"collisions / off-road, MRM in {s['fallback_rate'] * 100 if s['episodes'] else 0:.0f}%",
            f"waits {int(s['waits'])}, mean {s['wait_mean_s']:.1f} s;  "
            f"human time {s['human_seconds']:.0f} s",
            "", "any key: quit"]


def _end_card(live: FleetLive, screen: FleetScreen, opts: Any, clock: Any,
              res: FleetSessionResult) -> None:
    import pygame

    live.seated.world = -1  # the overview, every world as it ended
    lines = summary_lines(live, res)
    while True:
        if opts.before_frame is not None:
            opts.before_frame(res.frames)
        if any(ev.type in (pygame.QUIT, pygame.KEYDOWN) for ev in pygame.event.get()):
            return
        screen.show(("Fleet session over", lines))
        res.frames += 1
        if opts.max_frames is not None and res.frames >= opts.max_frames:
            return
        clock.tick()


class FleetSession:
    """``takeover drive --fleet N``: one live fleet session in a window, its log (every
    world's episodes, one run directory) and its recording.

    Args:
        settings: what is driven (recorded).
        seed: the first episode's seed.
        loop: the live drive's :class:`~takeover.supervisor.live.LoopOptions`
            (``start_screen`` shows the overview paused behind a card until SPACE).
        log, record: a run directory / a recording file, or ``None``.
        recording: replay this recording in the window instead of live input.
    """

    def __init__(self, settings: FleetViewSettings, seed: int = 1, loop: Any = None, *,
                 log: Any = None, record: Any = None, recording: Any = None,
                 fullscreen: bool = False, width: int = 1000, height: int = 460) -> None:
        from .live import LoopOptions, check_writable, env_id

        self.settings, self.seed = settings, int(seed)
        self.loop = loop or LoopOptions()
        self.log, self.record, self.recording = log, record, recording
        self.fullscreen, self.size = fullscreen, (width, height)
        if record is not None:
            check_writable(record, "record")
        if log is not None:
            check_writable(log, "log")
        env_id(settings.live.scenario)

    def run(self) -> FleetSessionResult:
        import pygame

        from takeover.envs.render import Window

        from .live import FixedClock, RealClock

        rec = self.recording
        person = None if rec is None else _replay_person(rec, self.settings)
        live = FleetLive(self.settings, self.seed, person)
        window = Window(self.size, fullscreen=self.fullscreen, title="takeover fleet")
        screen = FleetScreen(live, window, *self.size)
        clock = (FixedClock(self.loop.fps) if self.loop.fixed_clock
                 else RealClock(self.loop.fps))
        try:
            if rec is not None:
                res = _replay_loop(live, screen, self.loop, clock, rec)
            else:
                if self.loop.start_screen and not _start_card(live, screen, self.loop, clock):
                    return FleetSessionResult(end="quit")
                res = run_session(live, screen, self.loop, clock=clock)
            if self.log is not None:
                self._write_log(live, res)
            if self.record is not None and rec is None:
                save_session(self.record, self.settings, live, res)
        finally:
            screen.close()
            window.close()
            live.close()
            pygame.quit()
        return res

    def _write_log(self, live: FleetLive, res: FleetSessionResult) -> None:
        from takeover.logio import LogWriter
        from takeover.records import RunMeta

        run_id = f"fleet-{self.seed}-{int(_time.time())}"
        with LogWriter(self.log, RunMeta(run_id=run_id, seed=self.seed, config={
                "fleet_view": to_dict(self.settings), "env_id": live.env_id,
                "fleet_stats": res.stats.summary()})) as w:
            for recs in res.records:
                for r in recs:
                    w.write(r)
                w.end_episode()


def _start_card(live: FleetLive, screen: FleetScreen, opts: Any, clock: Any) -> bool:
    """The overview frozen behind a card until SPACE (False: the person left)."""
    import pygame

    from .live import _ui_key

    s = live.settings
    lines = [f"{s.worlds} worlds of {live.env_id.split('/')[-1]}, agent {s.live.agent}, "
             f"gate {s.live.gate} on {s.live.estimator}; {s.episodes} episodes each",
             f"you are one of {s.fleet.num_humans} humans; the others are scripted "
             f"({s.human}) and sent by the {s.fleet.allocation!r} policy",
             "1-9 / 0 or a click: drive that world (SPACE take over, R hand back, arrows "
             "drive)", "Tab / ESC: back to the overview.  Worlds keep driving meanwhile:",
             f"a request nobody answers in {s.live.timeout:g} s ends in an automatic stop."]
    frames = 0
    while True:
        if opts.before_frame is not None:
            opts.before_frame(frames)
        for ev in pygame.event.get():
            ui = _ui_key(ev)
            if ev.type == pygame.QUIT or ui == "quit":
                return False
            if ui in ("space", "next"):
                return True
        screen.show(("Press SPACE to start the fleet", lines))
        frames += 1
        if opts.max_frames is not None and frames >= opts.max_frames:
            return False
        clock.tick()


# --- recording and replay ----------------------------------------------------------------
def save_session(path: Any, settings: FleetViewSettings, live: FleetLive,
                 res: FleetSessionResult) -> None:
    """The session as a recording (``takeover.supervisor.replay``'s format): the settings
    with ``kind: fleet`` and the seat changes, one episode holding every key event."""
    from .live import resolve_action_type
    from .replay import EpisodeRecording, Recording, save_recording

    data = to_dict(settings)
    data["live"]["action_type"] = resolve_action_type(settings.live)
    data["kind"] = KIND
    data["seats"] = [[int(k), int(w)] for k, w in res.seats]
    env_cfg = to_dict(live.venv.config)
    end = res.end if res.end in ENDS else "quit"
    save_recording(path, Recording(data, env_cfg, [
        EpisodeRecording(live.seed, list(res.events), end, res.steps)]))


def is_fleet_recording(rec: Any) -> bool:
    return isinstance(rec.settings, dict) and rec.settings.get("kind") == KIND


def settings_of(rec: Any) -> FleetViewSettings:
    """A fleet recording's settings (refusing unknown keys)."""
    data = {k: v for k, v in rec.settings.items() if k not in ("kind", "seats")}
    data.setdefault("warning", 2.0)  # recorded before the setting: the ttc estimator's own
    return from_dict(FleetViewSettings, data)


def _seat_plan(rec: Any) -> list[tuple[int, int]]:
    from .replay import RecordingError

    try:
        plan = [(int(k), int(w)) for k, w in rec.settings.get("seats", [])]
    except (TypeError, ValueError):
        raise RecordingError("the fleet recording's seats are damaged: record again") from None
    return plan


def _replay_person(rec: Any, settings: FleetViewSettings) -> KeyHuman:
    from .replay import ReplayHuman

    return ReplayHuman(list(rec.episodes[0].events) if rec.episodes else [],
                       settings.live.rates)


def _apply_seats(live: FleetLive, plan: list[tuple[int, int]]) -> None:
    while plan and plan[0][0] <= live.steps:
        live.seat(plan.pop(0)[1])


def _replay_loop(live: FleetLive, screen: FleetScreen, opts: Any, clock: Any,
                 rec: Any) -> FleetSessionResult:
    """A recording in the window: seats follow the recording, live keys are ignored but
    pause and quit."""
    end_step = rec.episodes[0].end_step if rec.episodes else 0
    res = run_session(live, screen, opts, clock=clock, seats=_seat_plan(rec),
                      end_step=end_step)
    if res.end == "done" and rec.episodes:
        res.end = rec.episodes[0].end  # as recorded (a replay ends where the person did)
    return res


def replay_session(rec: Any) -> list[list[StepRecord]]:
    """Re-run a fleet recording headless (no window, no waiting): every episode's records,
    to compare with the live session's by :func:`~takeover.supervisor.live.comparable`."""
    settings = settings_of(rec)
    live = FleetLive(settings, rec.episodes[0].seed, _replay_person(rec, settings))
    if rec.env_config and rec.env_config != to_dict(live.venv.config):
        from .replay import RecordingError

        diff = sorted(k for k in set(rec.env_config) | set(to_dict(live.venv.config))
                      if rec.env_config.get(k) != to_dict(live.venv.config).get(k))
        raise RecordingError(f"this fleet recording was made with another env config "
                             f"({', '.join(diff)}): it cannot be replayed exactly")
    plan = _seat_plan(rec)
    end_step = rec.episodes[0].end_step
    try:
        while not live.done and live.steps < end_step:
            _apply_seats(live, plan)
            live.step()
        return live.all_records()
    finally:
        live.close()

