"""The live session: a person takes over from the agent in a pygame window, in real time.

Layers, each replaceable on its own:

* :class:`LiveSupervisor` is the **one seam** to the supervision engine: it builds the env,
  agent, estimator and gate, steps them (:meth:`~LiveSupervisor.step`) and answers what the
  screen shows (phase, countdown, score name). It runs the engine's one-env
  ``Supervisor`` (N = 1), whose handover owns the hand-back policies (``release``) and
  request withdrawal (``withdraw``).
* :func:`run_episode` is the real-time loop of one episode: start screen, driving at the
  env's control rate while the window redraws at ``fps``, pause, end screen.
* :class:`LiveSession` (``takeover drive``) chains episodes (restart, next), writes the log
  and the recording; :func:`replay` re-runs a recording headless.

Timing (why the replay is exact and the clock honest):

* Simulated time is the session clock minus paused time, **not** clipped frame by frame, so
  the sim tracks the wall clock (within a frame at any moment; see
  ``experiments/benchmarks/drive.py``). A late frame runs the steps it owes.
* An input event is stamped with the control step that will consume it (the next one) and
  the simulated time it arrived (clipped to that step's time); a replay hands each event to
  the same step, so the replayed log equals the live one in every field but the wall-clock
  ones (:data:`WALL_FIELDS`).
* While the person holds control the agent never acts (their standing command holds, see
  ``keyboard``), and the supervisor never takes control back unless the hand-back policy
  (``release``) says so; the HUD shows the policy and every countdown.
"""

from __future__ import annotations

import dataclasses
import math
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from takeover.config import ConfigError, option, to_dict, validate
from takeover.records import StepRecord
from takeover.types import Human, Phase

from .gamepad import PadConfig, PadState, open_joysticks, pad_events
from .handover import HandoverConfig
from .keyboard import LEGEND, KeyboardHuman, KeyEvent, KeyHuman, KeyRates, key_event, keymap

if TYPE_CHECKING:
    from takeover.envs.highway import HighwayEnv

RELEASES = ("human", "calm", "gate")
"""Hand-back policies: ``human`` (only the person's R / button), ``calm`` (also after
``calm_time`` s in which the gate would release), ``gate`` (also whenever the gate releases,
after ``min_human_time``)."""
INPUTS = ("keyboard", "gamepad")
WALL_FIELDS = ("wall_s", "input_latency_ms", "takeover_wall_s")
"""Wall-clock ``info`` keys of a live record (with ``StepRecord.wall_time``): the only
fields a replay does not reproduce."""
USER_ENDS = ("quit", "close", "restart", "next", "max_frames")

RED, CYAN, WHITE, GREY, AMBER = (255, 40, 40), (80, 220, 255), (255, 255, 255), (200, 200, 200), \
    (255, 190, 40)


def _names(module: str, registry: str) -> list[str]:
    import importlib

    return list(getattr(importlib.import_module(f"takeover.supervisor.{module}"), registry).names())


@dataclass(frozen=True)
class LiveSettings:
    """What a live drive depends on (all of it stored in a recording)."""

    scenario: str = option("Highway-v2", "env id or scenario, e.g. CutIn-v2 or cut_in")
    agent: str = option("novice", "shipped agent name, checkpoint dir, or 'idm'")
    gate: str = option("threshold", "takeover gate (takeover.supervisor.gates)",
                       choices=lambda: _names("gates", "GATES"))
    estimator: str = option("ttc", "estimator feeding the gate",
                            choices=lambda: _names("estimators", "ESTIMATORS"))
    action_type: str = option("auto", "continuous, discrete, or auto (the agent's own)",
                              choices=("auto", "continuous", "discrete"))
    input: str = option("keyboard", "keyboard or gamepad (wheel)", choices=INPUTS)
    release: str = option("human", "who hands control back: human (R only), calm, gate",
                          choices=RELEASES)
    withdraw: bool = option(True, "withdraw a pending request when the gate stops asking")
    timeout: float = option(5.0, "s a request waits before the minimal-risk manoeuvre",
                            range=(0.5, 60.0))
    min_human_time: float = option(1.0, "s the person drives before an automatic hand-back",
                                   range=(0.0, None))
    calm_time: float = option(3.0, "s the gate must allow release before a 'calm' hand-back",
                              range=(0.0, None))
    rates: KeyRates = option(None, "keyboard control rates", factory=KeyRates)
    pad: PadConfig = option(None, "gamepad / wheel axes and button", factory=PadConfig)
    env: dict = option(None, "extra env config (HighwayConfig keys)", factory=dict)

    def __post_init__(self) -> None:
        validate(self)


def settings_from_dict(data: dict[str, Any]) -> LiveSettings:
    """Settings from plain data (a recording), refusing unknown keys."""
    from takeover.config import from_dict

    return from_dict(LiveSettings, data)


def env_id(scenario: str) -> str:
    """The registered id of ``scenario`` (``CutIn``, ``CutIn-v2``, ``takeover/CutIn-v2`` or
    the scenario name ``cut_in``); an unknown one lists the valid ones."""
    from takeover.envs import ENV_IDS

    s = scenario.strip()
    by_scenario = {v: k for k, v in ENV_IDS.items()}
    for cand in (s, f"takeover/{s}"):
        if cand in ENV_IDS:
            return cand
        base = cand.rsplit("-v", 1)[0]
        for k in ENV_IDS:
            if k.rsplit("-v", 1)[0] == base:
                return k
    if s in by_scenario:
        return by_scenario[s]
    from takeover.registry import closest

    names = [k.split("/", 1)[1] for k in ENV_IDS]
    raise ConfigError(f"unknown scenario {scenario!r}.{closest(s, names)} Valid scenarios: "
                      f"{', '.join(names)}")


def resolve_action_type(s: LiveSettings) -> str:
    """``auto``: the agent's own action type (the IDM stand-in drives either: continuous)."""
    if s.action_type != "auto":
        return s.action_type
    if s.agent == "idm":
        return "continuous"
    from takeover.agents.checkpoint import checkpoint_action_type

    return checkpoint_action_type(s.agent)


def policy_text(s: LiveSettings) -> str:
    """The hand-back policy of ``s`` in words (the HUD, the start screen, the fleet view)."""
    hand = "R" if s.input == "keyboard" else "the button"
    return {"human": f"you keep control until you press {hand}",
            "calm": f"{hand}, or automatically after {s.calm_time:g} s of calm",
            "gate": f"{hand}, or as soon as the gate releases"}[s.release]


class IDMAgent:
    """A stand-in agent reading the true state (``agent="idm"``): drives well, knows no
    doubt, so only oracle estimators (``ttc``) make its gate fire."""

    def __init__(self, env: Any) -> None:
        from takeover.envs.drivers import IDMDriver

        self.env = env.unwrapped
        self.driver = IDMDriver()

    def reset(self) -> None:
        self.driver.reset()

    def act(self, obs: Any):
        from takeover.types import AgentOutput

        return AgentOutput(action=self.driver(self.env))


def make_agent(name: str, env: Any):
    """``idm`` (the stand-in) or a shipped agent / checkpoint directory."""
    if name == "idm":
        return IDMAgent(env)
    from takeover.agents.checkpoint import load_agent

    return load_agent(name, env=env)


class Seat:
    """The driver's seat: the engine's one human, delegating to whoever sits in it (the live
    keyboard, or each recorded episode's replay), so a session swaps the person without
    rebuilding the engine."""

    def __init__(self, human: Human) -> None:
        self.human = human

    def reset(self, seed: int | None = None) -> None:
        self.human.reset(seed)

    def act(self, obs: Any, info: Any, env: Any, view: Any) -> Any:
        return self.human.act(obs, info, env, view)


class LiveSupervisor:
    """The seam between the live session and the supervision engine (N = 1).

    Everything the session needs: :meth:`reset`, :meth:`step` (one control step, its
    record), and what the screen shows: :attr:`phase`, :meth:`countdown`, :attr:`score_name`,
    :attr:`policy`; :attr:`world` is the unwrapped env to draw; assigning :attr:`human`
    seats another person (a replay) for the next episode.
    """

    def __init__(self, settings: LiveSettings, human: Human) -> None:
        import gymnasium as gym

        import takeover.envs  # noqa: F401  (registers the envs)
        from takeover.supervisor.engine import Supervisor
        from takeover.supervisor.estimators import make_estimators
        from takeover.supervisor.gates import GATES

        s = settings
        self.settings = s
        self.env_id = env_id(s.scenario)
        self.env = gym.make(self.env_id, action_type=resolve_action_type(s), **s.env)
        self.world = cast("HighwayEnv", self.env.unwrapped)
        self.seat = Seat(human)
        self.score_name = s.estimator
        cfg = HandoverConfig(timeout=s.timeout, min_human_time=s.min_human_time,
                             release=s.release, calm_time=s.calm_time, withdraw=s.withdraw,
                             human_initiative=True)
        self.sup = Supervisor(self.env, make_agent(s.agent, self.env),
                              make_estimators([s.estimator]), GATES.make(s.gate), self.seat,
                              gate_score=s.estimator, handover=cfg)
        self.handover = self.sup.handover
        self.dt = self.sup.dt

    @property
    def human(self) -> Any:
        """Who sits in the seat (the session pushes key events into a :class:`KeyHuman`)."""
        return self.seat.human

    @human.setter
    def human(self, human: Human) -> None:
        self.seat.human = human

    def reset(self, seed: int) -> None:
        self.sup.reset(seed)

    def step(self) -> StepRecord:
        return self.sup.step()

    @property
    def done(self) -> bool:
        return self.sup.done

    @property
    def phase(self) -> str:
        return self.sup.phase.value

    @property
    def step_index(self) -> int:
        """Index of the next control step in the episode."""
        return int(self.sup.engine.step_index[0])

    @property
    def time(self) -> float:
        """Simulated time of the current observation, s (the next step's start)."""
        return float(self.sup.engine._time()[0])

    def countdown(self) -> tuple[str, float]:
        """``("fallback", s)`` left before the minimal-risk manoeuvre while a request waits,
        ``("handback", s)`` left before a calm hand-back, else ``("", nan)``."""
        if self.sup.phase is Phase.TOR:
            return "fallback", self.sup.time_left
        left = self.sup.handback_left
        return ("handback", left) if not math.isnan(left) else ("", math.nan)

    @property
    def policy(self) -> str:
        """The hand-back policy in words (shown on the HUD and the start screen)."""
        return policy_text(self.settings)

    def close(self) -> None:
        self.env.close()


# --- clocks -------------------------------------------------------------------------------
class RealClock:
    """Wall time (``perf_counter``); ``tick`` waits for the next frame."""

    def __init__(self, fps: float) -> None:
        import pygame

        self.fps = fps
        self._clock = pygame.time.Clock()

    def now(self) -> float:
        return _time.perf_counter()

    def tick(self) -> None:
        self._clock.tick(self.fps)


class FixedClock:
    """Exactly ``1/fps`` s per frame, no waiting (headless tests, the compute benchmark)."""

    def __init__(self, fps: float) -> None:
        self.fps, self.frames = fps, 0

    def now(self) -> float:
        return self.frames / self.fps

    def tick(self) -> None:
        self.frames += 1


# --- drawing --------------------------------------------------------------------------------
@dataclass
class HudState:
    """What the HUD shows, updated by the loop after every step."""

    record: StepRecord | None = None
    phase: str = "agent"
    countdown: tuple[str, float] = ("", math.nan)
    message: str = ""
    message_until: float = -1.0
    now: float = 0.0
    frame: int = 0


class Hud:
    """The supervisor's HUD, an env overlay: who drives and the hand-back policy, the
    request with its countdown to the fallback, the gate's score (labelled by its
    estimator) against its threshold, speed, TTC and the key legend."""

    def __init__(self, live: LiveSupervisor) -> None:
        self.live = live
        self.state = HudState()

    def __call__(self, surface: Any, r: Any) -> None:
        import pygame

        st, live = self.state, self.live
        st.frame += 1
        rec, phase = st.record, st.phase
        tor = phase in ("tor", "fallback")
        if tor and (st.frame // 15) % 2 == 0:
            pygame.draw.rect(surface, RED, surface.get_rect(), 8)
        kind, left = st.countdown
        hand = "R" if live.settings.input == "keyboard" else "button"
        label = {"ended": "", "agent": "AGENT driving", "human": f"YOU drive  ({hand}: hand back)",
                 "tor": f"TAKE OVER!  (SPACE{'/button' if hand == 'button' else ''})",
                 "fallback": "NO RESPONSE: automatic stop  (take over any time)"}
        color = RED if tor else (CYAN if phase == "human" else WHITE)
        r.text(surface, label.get(phase, phase), (12, 10), color, big=True)
        y = 40
        if kind == "fallback":
            r.text(surface, f"automatic stop in {left:4.1f} s", (12, y), RED, big=True)
            w = int(260 * min(left / max(live.settings.timeout, 1e-9), 1.0))
            pygame.draw.rect(surface, RED, (12, y + 28, w, 6))
            y += 40
        elif kind == "handback":
            r.text(surface, f"hand-back to the agent in {left:4.1f} s (calm)", (12, y), AMBER)
            y += 20
        if phase == "human":
            r.text(surface, f"hand-back: {live.policy}", (12, y), GREY)
            y += 20
        if st.message and st.now < st.message_until:
            r.text(surface, st.message, (12, y), AMBER)
        if rec is not None:
            speed = rec.info.get("speed", math.nan)
            ttc = rec.info.get("ttc", math.nan)
            ttc_s = "--" if not ttc < 99 else f"{ttc:4.1f} s"
            r.text(surface, f"speed {speed * 3.6:4.0f} km/h   TTC {ttc_s}",
                   (r.width - 260, 48))
            score = rec.scores.get(live.score_name, math.nan)
            thr = rec.threshold
            x0, y0, w, h = r.width - 260, 14, 200, 12
            pygame.draw.rect(surface, (40, 40, 40), (x0, y0, w, h))
            top = max(thr * 2.0 if math.isfinite(thr) and thr > 0 else 1.0, 1e-9)
            if math.isfinite(score):
                fill = int(w * min(max(score / top, 0.0), 1.0))
                over = math.isfinite(thr) and score >= thr
                pygame.draw.rect(surface, RED if over else (80, 200, 120), (x0, y0, fill, h))
            if math.isfinite(thr):
                xt = x0 + int(w * min(thr / top, 1.0))
                pygame.draw.line(surface, WHITE, (xt, y0 - 3), (xt, y0 + h + 3), 2)
            thr_s = f" / threshold {thr:.2f}" if math.isfinite(thr) else ""
            r.text(surface, f"{live.score_name} score {score:.2f}{thr_s}", (x0, y0 + h + 4))
        legend = "   ".join(getattr(live, "legend", LEGEND)) if live.settings.input == "keyboard" else \
            "button: take over / hand back   stick: drive   P pause   ESC quit"
        img = r.font.render(legend, True, (230, 230, 230))
        surface.blit(img, (r.width - img.get_width() - 10, r.height - 20))


def outcome(rec: StepRecord | None, end: str) -> str:
    """The episode's outcome: ``info["outcome"]`` when the world reports it, else derived
    from the env's reason; ``quit`` / ``restart`` ... when the person ended it."""
    if rec is None:
        return end
    got = rec.info.get("outcome")
    if got:
        return str(got)
    if end in USER_ENDS:
        return "ended by you" if end != "max_frames" else "frame limit"
    reason = rec.info.get("reason") or rec.reason
    return {"collision": "collision", "offroad": "off_road", "time_limit": "timeout"}.get(
        reason, reason or end)


@dataclass(frozen=True)
class EpisodeSummary:
    """What the end screen shows (and a study logs).

    Attributes:
        outcome: see :func:`outcome`.
        takeover_s: simulated s from the first request to the person's takeover, NaN if none.
        takeover_wall_s: the same in wall-clock s (key press arrival), NaN if none.
        min_ttc: s, the smallest TTC of the episode (99 = nothing ever closing).
        human_s / total_s: simulated s driven by the person / in total.
        requests: takeover requests issued; withdrawn: of them withdrawn (risk cleared);
        initiated: unasked takeovers.
    """

    outcome: str
    takeover_s: float
    takeover_wall_s: float
    min_ttc: float
    human_s: float
    total_s: float
    requests: int
    withdrawn: int
    initiated: int


def summarize(records: Sequence[StepRecord], end: str, dt: float) -> EpisodeSummary:
    take = next((r for r in records if "human_response" in r.transition), None)
    ttcs = [float(r.info.get("ttc", math.nan)) for r in records]
    ttcs = [t for t in ttcs if math.isfinite(t)]
    return EpisodeSummary(
        outcome=outcome(records[-1] if records else None, end),
        takeover_s=float(take.info.get("takeover_s", math.nan)) if take else math.nan,
        takeover_wall_s=float(take.info.get("takeover_wall_s", math.nan)) if take else math.nan,
        min_ttc=min(ttcs) if ttcs else math.nan,
        human_s=dt * sum(r.controller == "human" for r in records),
        total_s=dt * len(records),
        requests=sum("gate_request" in r.transition for r in records),
        withdrawn=sum("tor_withdrawn" in r.transition for r in records),
        initiated=sum("human_initiated" in r.transition for r in records))


def end_lines(s: EpisodeSummary) -> list[str]:
    if math.isfinite(s.takeover_s):
        wall = f" ({s.takeover_wall_s:.2f} s by the wall clock)" \
            if math.isfinite(s.takeover_wall_s) else ""
        take = f"your takeover time: {s.takeover_s:.1f} s after the request{wall}"
    elif s.requests:
        take = (f"{s.requests} takeover request{'s' if s.requests > 1 else ''}, "
                f"{'withdrawn before you answered' if s.withdrawn == s.requests else 'not answered'}")
    else:
        take = "no takeover request"
    if s.initiated:
        take += f"; you took over unasked {s.initiated} time{'s' if s.initiated > 1 else ''}"
    ttc = "--" if not s.min_ttc < 99 else f"{s.min_ttc:.1f} s"
    return [take, f"min TTC {ttc}    you drove {s.human_s:.1f} s of {s.total_s:.1f} s",
            "", "R restart    N / SPACE next episode    ESC quit"]


# --- the loop -------------------------------------------------------------------------------
@dataclass
class EpisodeResult:
    """One episode of a live session."""

    seed: int
    records: list[StepRecord] = field(default_factory=list)
    events: list[KeyEvent] = field(default_factory=list)
    end: str = "done"
    """How it ended (``takeover.supervisor.replay.ENDS``)."""
    then: str = "quit"
    """What the person chose next: ``restart``, ``next``, ``quit`` or ``close``."""
    summary: EpisodeSummary | None = None
    frames: int = 0
    frame_ms: list[float] = field(default_factory=list)
    stepped: list[bool] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    sim_s: float = 0.0
    wall_s: float = 0.0
    """Simulated and wall-clock seconds driven (pauses excluded): the pacing check."""


@dataclass
class LoopOptions:
    """How the loop runs (none of it changes what is simulated)."""

    fps: float = 60.0
    fixed_clock: bool = False
    sound: bool = True
    start_screen: bool = True
    end_screen: bool = True
    max_frames: int | None = None
    before_frame: Callable[[int], None] | None = None
    """Called at the start of each frame with its index (tests post pygame events here)."""
    start_title: str = "Press SPACE to start"
    start_lines: Sequence[str] = ()


def tone():
    """An 880 Hz beep, or ``None`` when there is no audio device (silently skipped)."""
    try:
        import numpy as np
        import pygame

        if not pygame.mixer.get_init():
            pygame.mixer.init(frequency=22050, size=-16, channels=1)
        freq, _, channels = cast("tuple[int, int, int]", pygame.mixer.get_init())
        n = freq // 5
        wave = (0.3 * 32767 * np.sin(2 * np.pi * 880 * np.arange(n) / freq)).astype(np.int16)
        if channels > 1:
            wave = np.repeat(wave[:, None], channels, axis=1)
        return pygame.sndarray.make_sound(wave)
    except Exception:  # noqa: BLE001 - any audio failure means: no tone
        return None


UI_KEYS = {"K_p": "pause", "K_n": "next", "K_RETURN": "next", "K_KP_ENTER": "next"}


def toggle_pause(pause_start: float, paused_total: float, now: float) -> tuple[float, float]:
    """Pause (``pause_start`` NaN -> ``now``) or resume (add the pause to ``paused_total``):
    the wall clock a paused session does not count as simulated time. Returns both."""
    if math.isnan(pause_start):
        return now, paused_total
    return math.nan, paused_total + now - pause_start


def _ui_key(ev: Any) -> str:
    import pygame

    if ev.type != pygame.KEYDOWN:
        return ""
    for name, what in UI_KEYS.items():
        if ev.key == getattr(pygame, name):
            return what
    return {pygame.K_ESCAPE: "quit", pygame.K_SPACE: "space", pygame.K_r: "r",
            pygame.K_q: "quit"}.get(ev.key, "")


def _menu_choice(pad: Any, keys: dict[str, str], pad_choice: str) -> str:
    """What this frame's events choose on a start or end screen: ``"close"`` if the window
    was closed (it beats everything), else the first event's choice (``keys`` maps a UI key
    of :func:`_ui_key` to a choice; any gamepad button chooses ``pad_choice``), else ``""``."""
    import pygame

    what = ""
    for ev in pygame.event.get():
        if ev.type == pygame.QUIT:
            what = "close"
        elif pad is not None and ev.type == pygame.JOYBUTTONDOWN:
            what = what or pad_choice
        else:
            what = what or keys.get(_ui_key(ev), "")
    return what


class Screen:
    """The window plus the frame composer: the world with the HUD, and text screens."""

    def __init__(self, live: LiveSupervisor, window: Any, width: int = 1000,
                 height: int = 460) -> None:
        from takeover.envs.render import Renderer

        self.live = live
        self.window = window
        self.renderer = Renderer(live.world.config, "rgb_array", width=width, height=height,
                                 realtime=False)
        self.hud = Hud(live)

    def frame(self, overlays: Sequence[Any] = (), hud: bool = True) -> Any:
        w = self.live.world
        return self.renderer.compose(w.vehicles, w.world, w.hazard,
                                     [self.hud, *overlays] if hud else list(overlays))

    def show(self, title: str = "", lines: Sequence[str] = (), title_color=WHITE, *,
             hud: bool = True) -> None:
        """The world (with the HUD unless ``hud=False``: consent, questionnaires) and a card
        of text when ``title`` or ``lines`` are given."""
        from takeover.envs.render import panel

        def card(surface, r):
            cfg = r.config  # below the road (and the ramp), so the ego stays visible
            top = r.to_screen(0.0, (cfg.lanes - 0.5) * cfg.lane_width + 1.0)[1]
            fits = top + 60 + 24 * len(lines) < r.height
            panel(surface, r, title, lines, title_color=title_color,
                  top=top if fits else None)

        surf = self.frame([card] if title or lines else [], hud=hud)
        if self.window is not None:
            self.window.present(surf)


def run_episode(live: LiveSupervisor, screen: Screen, seed: int, opts: LoopOptions, *,
                clock: Any, replay_end: tuple[str, int] | None = None,
                frame_budget: list[int] | None = None, frame0: int = 0,
                on_end: Callable[[EpisodeResult], None] | None = None) -> EpisodeResult:
    """One episode in real time: start screen, drive, end screen.

    ``replay_end=(end, step)`` replays a recording (the human already holds its events):
    live keys are ignored except pause / ESC / window close, and the episode ends as it
    was recorded. ``frame_budget`` (a one-element list) counts frames left across episodes
    (``max_frames``); ``frame0`` is the session's frame count so far (for ``before_frame``);
    ``on_end(result)`` runs as soon as the episode is over, before the end screen (the
    session makes the episode durable there, so a kill on the end screen loses nothing).
    """
    import pygame

    human = live.human
    live.reset(seed)
    res = EpisodeResult(seed=seed)
    hud = screen.hud
    hud.state = HudState()
    mapping = keymap()
    pad = PadState(live.settings.pad) if live.settings.input == "gamepad" else None
    if pad is not None:
        pygame.joystick.init()
        _joys = open_joysticks()  # noqa: F841  (kept open while the episode runs)
    beep = tone() if opts.sound else None
    replaying = replay_end is not None

    def out_of_frames() -> bool:
        if frame_budget is None:
            return False
        frame_budget[0] -= 1
        return frame_budget[0] <= 0

    def frame_hook() -> None:
        if opts.before_frame is not None:
            opts.before_frame(frame0 + res.frames)

    # --- start screen: the episode does not start unseen
    if opts.start_screen and not replaying:
        lines = [*opts.start_lines, f"scenario {live.env_id.split('/')[-1]}  seed {seed}   "
                 f"gate {live.settings.gate} on {live.score_name}",
                 f"hand-back: {live.policy}", "   ".join(LEGEND)]
        while True:
            frame_hook()
            what = _menu_choice(pad, {"space": "start", "next": "start", "quit": "quit"},
                                "start")
            screen.show(opts.start_title, lines)
            res.frames += 1
            if what in ("close", "quit"):
                res.end, res.then = what, what
                return res
            if what == "start":
                break
            if out_of_frames():
                res.end, res.then = "max_frames", "quit"
                return res
            clock.tick()

    t_next = live.time
    wall0 = clock.now()
    paused_total, pause_start = 0.0, math.nan
    last_phase = live.phase
    tor_wall = math.nan
    pending: StepRecord | None = None
    end = ""
    then = ""
    while not end:
        frame_hook()
        t0 = clock.now()
        perf0 = _time.perf_counter()
        paused = not math.isnan(pause_start)
        sim_now = (pause_start if paused else t0) - wall0 - paused_total
        stamp = min(sim_now, t_next)  # consumed by the next step, which starts at t_next
        for ev in pygame.event.get():
            if ev.type == pygame.QUIT:
                end = then = "close"
                break
            ui = _ui_key(ev)
            if ui == "quit":
                end = "quit"
                break
            if ui == "pause":
                pause_start, paused_total = toggle_pause(pause_start, paused_total, t0)
                paused = not math.isnan(pause_start)
                continue
            if paused and ui in ("r", "next"):
                end = then = "restart" if ui == "r" else "next"
                break
            if replaying:
                continue
            kes: list[KeyEvent] = []
            if pad is not None:
                kes = pad_events(ev, pad, stamp, live.step_index)
            ke = key_event(ev, stamp, mapping, live.step_index)
            if ke is not None and ke.key != "quit":
                kes.append(ke)
            for k in kes:
                human.push(k, t0)
        if end:
            break
        stepped = False
        if not paused:
            sim = t0 - wall0 - paused_total
            n = 0
            while sim >= t_next - 1e-6 and n < 5 and not end:
                if replay_end is not None and replay_end[0] != "done" \
                        and live.step_index >= replay_end[1]:
                    end = replay_end[0]
                    break
                rec = live.step()
                n += 1
                stepped = True
                lat = human.mark_stepped(clock.now())
                res.latencies_ms.extend(1000.0 * x for x in lat)
                extra: dict[str, Any] = {
                    "wall_s": clock.now() - wall0 - paused_total,
                    "input_latency_ms": 1000.0 * max(lat) if lat else math.nan}
                if "gate_request" in rec.transition:
                    tor_wall = math.nan  # set when the request is first drawn
                if "human_response" in rec.transition:
                    at = rec.step
                    walls = [w for s, _, w in human.press_walls if s == at]
                    extra["takeover_s"] = rec.takeover_time - rec.tor_time
                    extra["takeover_wall_s"] = (min(walls) - tor_wall) if walls else math.nan
                rec = dataclasses.replace(rec, info={**rec.info, **extra})
                if pending is not None:
                    res.records.append(pending)
                pending = rec
                t_next = float(rec.time)
                if beep is not None and live.phase == "tor" and last_phase != "tor":
                    beep.play()
                if live.phase != last_phase:
                    msg = {"tor_withdrawn": "request withdrawn: the risk has cleared",
                           "calm_release": "calm again: the agent drives",
                           "gate_release": "the gate handed control back to the agent",
                           "human_release": "you handed control back",
                           "tor_timeout": "no response: automatic stop"}
                    for reason, text in msg.items():
                        if reason in rec.transition:
                            hud.state.message, hud.state.message_until = text, t0 + 2.5
                last_phase = live.phase
                if live.done:
                    end = "done"
        st = hud.state
        st.record = pending if pending is not None else st.record
        st.phase, st.countdown, st.now = live.phase, live.countdown(), t0
        if paused:
            screen.show("PAUSED", ["P resume    R restart    N next episode    ESC quit"])
        else:
            screen.show()
        if live.phase == "tor" and math.isnan(tor_wall):
            tor_wall = clock.now()
        res.frames += 1
        res.frame_ms.append(1000.0 * (_time.perf_counter() - perf0))
        res.stepped.append(stepped)
        if not end and out_of_frames():
            end, then = "max_frames", "quit"
        if not end:
            clock.tick()
    res.wall_s = clock.now() - wall0 - paused_total - (
        0.0 if math.isnan(pause_start) else clock.now() - pause_start)
    res.sim_s = live.time
    if pending is not None:
        if end in USER_ENDS and not live.done:
            pending = dataclasses.replace(pending, truncated=True, reason="user_quit")
        res.records.append(pending)
    res.end = end
    res.events = list(human.events)
    res.summary = summarize(res.records, end, live.dt)
    if on_end is not None and res.records:
        on_end(res)
    if then:
        res.then = then
        return res
    # --- end screen: the outcome stays visible until the person chooses
    if not opts.end_screen or replaying or (frame_budget is not None and frame_budget[0] <= 0):
        res.then = "next" if replaying else ("quit" if end in ("quit", "max_frames") else "next")
        return res
    hud.state.phase, hud.state.countdown, hud.state.message = "ended", ("", math.nan), ""
    title = outcome(res.records[-1] if res.records else None, end)
    bad = title in ("collision", "off_road", "stopped", "stopped_in_lane", "timeout")
    lines = end_lines(res.summary)
    while True:
        frame_hook()
        what = _menu_choice(pad, {"quit": "quit", "next": "next", "space": "next",
                                  "r": "restart"}, "next")
        screen.show(f"Episode over: {title}", lines, title_color=RED if bad else CYAN)
        res.frames += 1
        if what:
            res.then = what
            return res
        if out_of_frames():
            res.then = "quit"
            return res
        clock.tick()


# --- the session ----------------------------------------------------------------------------
@dataclass
class SessionResult:
    episodes: list[EpisodeResult] = field(default_factory=list)

    @property
    def records(self) -> list[StepRecord]:
        return [r for ep in self.episodes for r in ep.records]


def make_human(settings: LiveSettings, events: list[KeyEvent] | None = None) -> KeyHuman:
    if events is not None:
        from .replay import ReplayHuman

        return ReplayHuman(events, settings.rates)
    return KeyboardHuman(rates=settings.rates)


def check_writable(path: Any, what: str) -> None:
    """Refuse a path we cannot write before the drive starts (naming it), instead of losing
    the drive at the end: the directory is created and a probe file written and removed."""
    import os
    import tempfile
    from pathlib import Path

    p = Path(path)
    if what == "record" and p.is_dir():
        raise ConfigError(f"--record {p} is a directory; give a file name like drive.json")
    if what == "log" and p.exists() and (not p.is_dir() or (p / "meta.json").exists()):
        raise ConfigError(f"--log {p} already exists and holds "
                          f"{'a run' if p.is_dir() else 'a file'}; pick a new directory")
    folder = p.parent if what == "record" else p
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".takeover-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"--{what} {p}: cannot write there ({err.strerror or err}); pick a "
                          "writable path") from None


class LiveSession:
    """``takeover drive``: episodes one after another in one window (restart = same seed,
    next = seed + 1), one log, one recording.

    Args:
        settings: what is driven (recorded).
        seed: the first episode's seed.
        loop: how the loop runs.
        log: a run directory for the episodes (``takeover.logio``), or ``None``.
        record: a file for the recording (``takeover.supervisor.replay``), or ``None``.
        recording: replay this recording in the window instead of live input.
        fullscreen, width, height: the window (always resizable when not full screen).
        headless_window: draw no window at all (the replay check).
    """

    def __init__(self, settings: LiveSettings, seed: int = 0, loop: LoopOptions | None = None,
                 *, log: Any = None, record: Any = None, recording: Any = None,
                 fullscreen: bool = False, width: int = 1000, height: int = 460,
                 max_episodes: int | None = None) -> None:
        self.settings, self.seed = settings, int(seed)
        self.loop = loop or LoopOptions()
        self.log, self.record, self.recording = log, record, recording
        self.fullscreen, self.size = fullscreen, (width, height)
        self.max_episodes = max_episodes
        if record is not None:
            check_writable(record, "record")
        if log is not None:
            check_writable(log, "log")
        env_id(settings.scenario)  # an unknown scenario fails here, before any window

    def run(self) -> SessionResult:
        import pygame

        from takeover.envs.render import Window

        events: list[KeyEvent] | None = None if self.recording is None else []
        human = make_human(self.settings, events)
        live = LiveSupervisor(self.settings, human)
        if self.recording is not None and self.recording.env_config:
            _check_env_config(live, self.recording.env_config)
        writer = self._writer(live)
        window = Window(self.size, fullscreen=self.fullscreen)
        screen = Screen(live, window, *self.size)
        clock = FixedClock(self.loop.fps) if self.loop.fixed_clock else RealClock(self.loop.fps)
        budget = [self.loop.max_frames] if self.loop.max_frames is not None else None
        out = SessionResult()
        seed, frames = self.seed, 0
        plan = list(self.recording.episodes) if self.recording is not None else None
        try:
            while True:
                replay_end = None
                if plan is not None:
                    if not plan:
                        break
                    ep_rec = plan.pop(0)
                    seed = ep_rec.seed
                    live.human = human = make_human(self.settings, ep_rec.events)
                    replay_end = (ep_rec.end, ep_rec.end_step)
                def keep(ep: EpisodeResult) -> None:
                    out.episodes.append(ep)
                    if writer is not None and ep.records:
                        writer.write_episodes([(ep.records[0].episode, ep.records)])
                    if self.record is not None:
                        self._save(live, out)

                ep = run_episode(live, screen, seed, self.loop, clock=clock,
                                 replay_end=replay_end, frame_budget=budget, frame0=frames,
                                 on_end=keep)
                frames += ep.frames
                if not ep.records:
                    break  # left from the start screen: nothing was driven
                if ep.then in ("quit", "close") or (
                        self.max_episodes is not None and len(out.episodes) >= self.max_episodes):
                    break
                seed = seed if ep.then == "restart" else seed + 1
        finally:
            if writer is not None:
                writer.close()
                lat = [x for ep in out.episodes for x in ep.latencies_ms]
                if lat:
                    _write_latency(self.log, lat)
            screen.renderer.close()
            window.close()
            live.close()
            pygame.quit()
        return out

    def _writer(self, live: LiveSupervisor):
        if self.log is None:
            return None
        from takeover.logio import LogWriter
        from takeover.records import RunMeta

        run_id = f"drive-{self.seed}-{int(_time.time())}"
        return LogWriter(self.log, RunMeta(run_id=run_id, seed=self.seed, config={
            "live": to_dict(self.settings), "env_id": live.env_id}))

    def _save(self, live: LiveSupervisor, out: SessionResult) -> None:
        save_session(self.record, self.settings, live, out.episodes)


def env_config(live: LiveSupervisor) -> dict[str, Any]:
    return {k: v for k, v in to_dict(live.world.config).items()}


def _check_env_config(live: LiveSupervisor, recorded: dict[str, Any]) -> None:
    now = env_config(live)
    diff = [k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k)]
    if diff:
        k = sorted(diff)[0]
        raise ConfigError(f"this recording was made with env config {k}={recorded.get(k)!r}, "
                          f"this takeover builds {k}={now.get(k)!r}: it cannot be replayed "
                          f"exactly (differing keys: {', '.join(sorted(diff))})")


def save_session(path: Any, settings: LiveSettings, live: LiveSupervisor,
                 episodes: Sequence[EpisodeResult]) -> None:
    from .replay import EpisodeRecording, Recording, save_recording

    data = to_dict(settings)
    data["action_type"] = resolve_action_type(settings)
    save_recording(path, Recording(data, env_config(live), [
        EpisodeRecording(ep.seed, ep.events, ep.end, len(ep.records)) for ep in episodes]))


def _write_latency(run_dir: Any, lat_ms: list[float]) -> None:
    import json
    from pathlib import Path

    import numpy as np

    from takeover.atomic import atomic_write_text

    a = np.asarray(lat_ms)
    atomic_write_text(Path(run_dir) / "input_latency.json", json.dumps({
        "unit": "ms", "what": "key event arrival to the end of the env.step that used it",
        "n": int(a.size), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
        "max": float(a.max()), "values": a.tolist()}, indent=1))


def merge_settings(recording: Any, given: dict[str, Any]) -> LiveSettings:
    """The recording's settings, refusing any explicitly ``given`` option that differs (a
    replay cannot honour another scenario, agent, gate ...)."""
    rec = dict(recording.settings)
    for k, v in given.items():
        if v is None or k not in rec:
            continue
        if k == "scenario":
            same = env_id(str(v)) == env_id(str(rec[k]))
        else:
            same = v == rec[k]
        if not same:
            raise ConfigError(f"the recording was made with {k}={rec[k]!r}, not {v!r}: a "
                              f"replay cannot change it; drop --{k.replace('_', '-')}")
    return settings_from_dict(rec)


def replay(recording: Any) -> list[list[StepRecord]]:
    """Re-run a recording headless (no window, no waiting): per episode its records, to
    compare with the live log by :func:`comparable`."""
    settings = settings_from_dict(recording.settings)
    from .replay import ReplayHuman

    live = LiveSupervisor(settings, ReplayHuman([], settings.rates))
    if recording.env_config:
        _check_env_config(live, recording.env_config)
    out = []
    try:
        for ep in recording.episodes:
            human = ReplayHuman(ep.events, settings.rates)
            live.human = human
            live.reset(ep.seed)
            recs = []
            while not live.done and (ep.end == "done" or live.step_index < ep.end_step):
                rec = live.step()
                if "human_response" in rec.transition:
                    rec = dataclasses.replace(rec, info={
                        **rec.info, "takeover_s": rec.takeover_time - rec.tor_time})
                recs.append(rec)
            if recs and ep.end in USER_ENDS and not live.done:
                recs[-1] = dataclasses.replace(recs[-1], truncated=True, reason="user_quit")
            out.append(recs)
    finally:
        live.close()
    return out


def comparable(rec: StepRecord) -> StepRecord:
    """``rec`` without its wall-clock fields (:data:`WALL_FIELDS`, ``wall_time``)."""
    info = {k: v for k, v in rec.info.items() if k not in WALL_FIELDS}
    return dataclasses.replace(rec, wall_time=0.0, info=info)
