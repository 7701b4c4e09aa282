"""Scripted humans: seeded, headless stand-ins for a person supervising the automation.

A scripted human answers takeover requests (TORs) after a *takeover time* drawn from a
log-normal distribution fitted to the driving-automation literature, sometimes misses a
request altogether (an attention lapse), grows complacent while the automation drives
without trouble, takes over on its own when it perceives danger (the human-gated /
HG-DAgger mode), drives with a state-reading IDM driver plus action noise, and hands control
back once the situation has been calm for a while.

Every random draw comes from the human's own ``numpy.random.Generator`` (seeded by
``reset(seed)``), in a fixed order, so the same seed gives the same actions.

Takeover time model (all presets)
---------------------------------
A shifted (three-parameter) log-normal, scaled by urgency ``u`` (0..1, from
:class:`~takeover.types.HumanView`) and complacency ``c`` (0..1, below)::

    T = (t0 + (median - t0) * exp(sigma * z)) * (1 + slowdown * c) * (1 - u * (1 - urgent_factor))

with ``z ~ N(0, 1)`` drawn when the request starts. The human takes control at the first step
with ``tor_elapsed >= T``. The shift ``t0`` is the time no driver beats (noticing the alert,
hands to the wheel, feet to the pedals).

*Fit of the "average" preset.* Eriksson & Stanton (2017, Human Factors 59(4)) measured
non-critical takeover times of 26 drivers: median 4.56 s, range 1.97-25.75 s. Reading the
range as the sample minimum and maximum of 26 draws, their expected standard-normal scores
are ``-/+ 1.981`` (Blom's plotting position ``(26 - 3/8) / (26 + 1/4)``). With ``m = median -
t0`` and ``k = exp(1.981 sigma)`` the three statistics give ``m (1 - 1/k) = 4.56 - 1.97`` and
``m (k - 1) = 25.75 - 4.56``, so ``k = 21.19 / 2.59 = 8.18``, ``sigma = ln k / 1.981 = 1.061``,
``m = 2.95 s`` and ``t0 = 1.61 s`` (``mu = ln m = 1.082``). A plain two-parameter log-normal
cannot match the median and both ends: the data are more skewed in log space than it allows.
A fixed ``sigma`` also makes the spread grow with the mean, which is what Zhang et al. (2019,
Transp. Res. F 64, meta-analysis of 129 studies) found across studies (mean and SD of
takeover time highly correlated).

*Urgency.* Zhang et al. (2019) found takeovers faster under more urgent situations, with
auditory alerts and with prior takeover experience; their pooled mean takeover time over
mostly urgent, time-budgeted TORs is 2.72 s. The average preset's non-urgent mean is
``t0 + m exp(sigma^2 / 2) = 6.79 s``; ``urgent_factor = 0.4`` scales it to 2.72 s at full
urgency.

*Complacency.* ``c = 1 - exp(-t_auto / complacency_tau)``, where ``t_auto`` is the time the
automation has driven without a takeover (plus ``initial_automation``, the uneventful
automated driving before the episode). Vigilance decrements over tens of minutes of
monitoring are classic (Mackworth 1948) and were shown for automated driving: hazard
detection fell and response times rose over a 40-min automated drive (Greenlee, DeLucia &
Newton 2018, Human Factors 60(4)); Körber et al. (2015) found passive fatigue within
42 min. The time constant (10 min) and the effect sizes (``complacency_slowdown``,
``complacency_lapse``) are our assumptions, chosen so that a driver 30 min into an
uneventful drive is about 1.5x slower and misses several times more requests. A takeover
resets ``t_auto`` to 0.

*Self-initiated takeovers.* When no request is pending and the time-to-collision drops
below ``danger_ttc``, the human reacts after a log-normal perception-reaction time of median
``danger_reaction`` s (sigma 0.3): Green (2000, Transp. Human Factors 2(3)) reports brake
reaction times of about 0.7 s for expected, 1.25 s for unexpected and 1.5 s for surprise
events. Complacency lengthens it by the same factor as the takeover time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from takeover.envs import layout as L
from takeover.envs.drivers import IDMDriver, idm_accel
from takeover.registry import Registry, closest
from takeover.types import NO_INPUT, HumanInput, HumanView, Phase


@dataclass
class AnticipatingDriver(IDMDriver):
    """IDM driving that also brakes for a car *about to* enter the ego's corridor.

    A person sees a car drifting toward their lane before it gets there; the plain
    ``IDMDriver`` reacts only once the car overlaps its corridor, which is too late for a
    short-gap cut-in or merge. Cars ahead whose lateral position in ``horizon`` s (at their
    current lateral speed) overlaps the ego's corridor count as leaders.
    """

    horizon: float = 1.5

    def controls(self, env: Any) -> tuple[float, float]:
        steer, acc = super().controls(env)
        veh = env.vehicles
        ego, others = veh[0], veh[1:]
        dx = others[:, L.X] - ego[L.X]
        half = 0.5 * (others[:, L.WID] + ego[L.WID]) + 0.3
        y_pred = others[:, L.Y] + others[:, L.VY] * self.horizon
        entering = ((others[:, L.KIND] != L.EMPTY) & (dx > 0.0)
                    & (np.abs(others[:, L.Y] - ego[L.Y]) >= half)
                    & (np.abs(y_pred - ego[L.Y]) < half))
        v = float(ego[L.V])
        for j in np.nonzero(entering)[0]:
            gap = float(dx[j] - 0.5 * (others[j, L.LEN] + ego[L.LEN]))
            acc = min(acc, idm_accel(v, self.desired_speed, gap, float(others[j, L.V]),
                                     headway=self.headway, a_max=self.a_max,
                                     b_comf=self.b_comf, s0=self.s0))
        cfg = env.config
        return steer, min(max(acc, -cfg.brake_max), cfg.accel_max)


@dataclass(frozen=True)
class HumanParams:
    """One human's parameters; the presets in :data:`SKILLS` document their sources.

    Attributes:
        takeover_median: s, median non-urgent takeover time (0 = instantaneous).
        takeover_shift: s, the log-normal's shift ``t0`` (no takeover is faster).
        takeover_sigma: log-normal shape of the takeover time.
        urgent_factor: takeover-time multiplier at urgency 1 (linear in urgency).
        lapse_prob: probability of not answering a request at all (no complacency).
        complacency_tau: s of uneventful automated driving for attention to decay by 1/e.
        complacency_slowdown: relative lengthening of reaction times at full complacency.
        complacency_lapse: lapse probability added at full complacency.
        initial_automation: s of uneventful automated driving before the episode starts.
        danger_ttc: s; a time-to-collision below this prompts a self-initiated takeover.
        danger_reaction: s, median perception-reaction time to perceived danger.
        steer_noise, accel_noise: std of the (AR(1), correlation ``noise_rho``) Gaussian
            noise added to normalised continuous actions.
        noise_rho: step-to-step correlation of the action noise (human motor noise is smooth).
        wrong_action_prob: probability of a random other meta-action (discrete actions).
        calm_ttc: s; the situation is calm when TTC exceeds this and no hazard is active.
        calm_time: s of continuous calm before the human hands control back.
        min_control: s the human keeps control at least, once taken.
        desired_speed, headway, a_max, b_comf, s0: the IDM driving style (m/s, s, m/s^2,
            m/s^2, m); Treiber, Hennecke & Helbing (2000) give 1-2 s headways and 1-3 m/s^2.
    """

    takeover_median: float = 4.56
    takeover_shift: float = 1.61
    takeover_sigma: float = 1.061
    urgent_factor: float = 0.4
    lapse_prob: float = 0.03
    complacency_tau: float = 600.0
    complacency_slowdown: float = 0.5
    complacency_lapse: float = 0.10
    initial_automation: float = 0.0
    danger_ttc: float = 3.0
    danger_reaction: float = 1.25
    steer_noise: float = 0.05
    accel_noise: float = 0.06
    noise_rho: float = 0.7
    wrong_action_prob: float = 0.02
    calm_ttc: float = 8.0
    calm_time: float = 3.0
    min_control: float = 3.0
    desired_speed: float = 25.0
    headway: float = 1.8
    a_max: float = 2.0
    b_comf: float = 3.0
    s0: float = 5.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"human parameter {f.name}={value!r} must be finite and >= 0")
        for name in ("lapse_prob", "complacency_lapse", "wrong_action_prob", "urgent_factor",
                     "noise_rho"):
            if getattr(self, name) > 1:
                raise ValueError(f"human parameter {name}={getattr(self, name)} must be <= 1")
        if self.takeover_median > 0 and self.takeover_shift >= self.takeover_median:
            raise ValueError(f"takeover_shift={self.takeover_shift} must be below "
                             f"takeover_median={self.takeover_median}")
        if self.complacency_tau == 0:
            raise ValueError("complacency_tau must be > 0 s (use a huge value to disable)")

    def takeover_quantile(self, q: float, urgency: float = 0.0, complacency: float = 0.0) -> float:
        """The ``q`` quantile of the takeover time under the given urgency and complacency."""
        from statistics import NormalDist

        return self.takeover_time(NormalDist().inv_cdf(q), urgency, complacency)

    def takeover_time(self, z: float, urgency: float = 0.0, complacency: float = 0.0) -> float:
        """The takeover time at standard-normal score ``z`` (see the module docstring)."""
        if self.takeover_median == 0:
            return 0.0
        t0 = self.takeover_shift
        base = t0 + (self.takeover_median - t0) * math.exp(self.takeover_sigma * z)
        return base * self.slowdown(complacency) * self.urgency_factor(urgency)

    def slowdown(self, complacency: float) -> float:
        return 1.0 + self.complacency_slowdown * complacency

    def urgency_factor(self, urgency: float) -> float:
        u = min(max(urgency, 0.0), 1.0)
        return 1.0 - u * (1.0 - self.urgent_factor)

    def complacency(self, automation_time: float) -> float:
        return 1.0 - math.exp(-automation_time / self.complacency_tau)


SKILLS: dict[str, HumanParams] = {
    # Experienced: Zhang et al. (2019) -- prior takeover experience shortens takeover time;
    # median 3.0 s, shift 1.2 s and a narrower spread (assumed; 5-95 %: 1.7-7.9 s), rarer
    # lapses, earlier danger perception, reaction to danger near Green's (2000) 'expected
    # event' 0.7-1.0 s, smooth control.
    "expert": HumanParams(
        takeover_median=3.0, takeover_shift=1.2, takeover_sigma=0.8, lapse_prob=0.01, complacency_lapse=0.05,
        danger_ttc=4.0, danger_reaction=0.9, steer_noise=0.02, accel_noise=0.03,
        wrong_action_prob=0.0, calm_time=2.0, desired_speed=27.0, headway=1.5, a_max=2.5,
        b_comf=4.0, s0=4.0),
    # Eriksson & Stanton (2017) fit (see the module docstring); Green's 'unexpected' 1.25 s.
    "average": HumanParams(),
    # Inexperienced: slower and more variable takeovers (median 6.0 s, shift 2.0 s, sigma 1.0,
    # assumed; 5-95 %: 2.8-22.7 s, inside E&S's range), more lapses, late danger perception
    # (Green's 'surprise' 1.6 s), noisy control, short headway (novices follow closer).
    "novice": HumanParams(
        takeover_median=6.0, takeover_shift=2.0, takeover_sigma=1.0, lapse_prob=0.06, complacency_lapse=0.20,
        danger_ttc=2.0, danger_reaction=1.6, steer_noise=0.10, accel_noise=0.12,
        wrong_action_prob=0.05, calm_time=5.0, desired_speed=25.0, headway=1.2, a_max=2.0,
        b_comf=2.5, s0=3.0),
    # Upper bound: instantaneous, noiseless, never lapses or tires; drives like the expert.
    "perfect": HumanParams(
        takeover_median=0.0, takeover_shift=0.0, takeover_sigma=0.0, lapse_prob=0.0,
        complacency_slowdown=0.0, complacency_lapse=0.0, danger_ttc=4.0, danger_reaction=0.0,
        steer_noise=0.0, accel_noise=0.0, wrong_action_prob=0.0, calm_time=2.0,
        desired_speed=27.0, headway=1.5, a_max=2.5, b_comf=4.0, s0=4.0),
}


def make_params(skill: str, **overrides: Any) -> HumanParams:
    """A preset with some fields replaced; unknown skills or fields name the closest one."""
    if skill not in SKILLS:
        raise ValueError(f"unknown skill {skill!r}.{closest(skill, list(SKILLS))} "
                         f"Valid skills: {', '.join(SKILLS)}")
    names = [f.name for f in dataclasses.fields(HumanParams)]
    for key in overrides:
        if key not in names:
            raise ValueError(f"unknown human parameter {key!r}.{closest(key, names)} "
                             f"Valid parameters: {', '.join(names)}")
    return dataclasses.replace(SKILLS[skill], **overrides)


class ScriptedHuman:
    """A simulated supervisor with a skill preset (``expert``, ``average``, ``novice``).

    Args:
        skill: the preset in :data:`SKILLS`.
        seed: seeds the human's generator now (``reset(seed)`` re-seeds it).
        **overrides: any :class:`HumanParams` field, e.g. ``lapse_prob=0``.

    Per step (``act``):

    * control held (phase ``HUMAN``): drive; hand back after ``calm_time`` s of calm once
      ``min_control`` s have passed;
    * a request pending (``tor_active`` or phase ``TOR``/``FALLBACK``): on its first step,
      decide whether this request is missed (lapse) and draw ``z``; take control once
      ``tor_elapsed`` reaches the takeover time; a lapsed human stays unresponsive (also to
      danger) until the request ends;
    * the automation driving: accumulate complacency; if TTC < ``danger_ttc``, take over
      after a perception-reaction time (cancelled if the danger passes first).
    """

    def __init__(self, skill: str = "average", seed: int | None = None,
                 **overrides: Any) -> None:
        self.skill = skill
        self.params = make_params(skill, **overrides)
        p = self.params
        self.driver = AnticipatingDriver(desired_speed=p.desired_speed, headway=p.headway,
                                         a_max=p.a_max, b_comf=p.b_comf, s0=p.s0)
        self.rng = np.random.default_rng(seed)
        self._clear()

    def _clear(self) -> None:
        self.automation_time = self.params.initial_automation
        self._last_time: float | None = None
        self._tor_z: float | None = None  # z of the pending request, None when none
        self._tor_start = 0.0
        self._lapsed = False
        self._danger_at: float | None = None  # time the human will act on perceived danger
        self._danger_since = 0.0
        self._in_control = False
        self._control_since = 0.0
        self._calm_since: float | None = None
        self._noise = np.zeros(2)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: re-seed (when ``seed`` is given) and clear all state."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.driver.reset()
        self._clear()

    # --- the model's pieces, public so they can be tested and plotted ------------------
    @property
    def complacency(self) -> float:
        return self.params.complacency(self.automation_time)

    def sample_takeover_time(self, urgency: float = 0.0) -> float:
        """One takeover time under the current complacency (draws one normal)."""
        return self._takeover_time(float(self.rng.standard_normal()), urgency)

    def _takeover_time(self, z: float, urgency: float) -> float:
        return self.params.takeover_time(z, urgency, self.complacency)

    def lapse_probability(self) -> float:
        p = self.params
        return min(1.0, p.lapse_prob + p.complacency_lapse * self.complacency)

    # --- the Human protocol ----------------------------------------------------------
    def act(self, obs: np.ndarray, info: dict[str, Any], env: Any, view: HumanView) -> HumanInput:
        env = getattr(env, "unwrapped", env)
        p = self.params
        t = float(view.time)
        dt = 0.0 if self._last_time is None else max(0.0, t - self._last_time)
        self._last_time = t
        ttc = float(info.get("ttc", L.TTC_MAX))
        if view.phase == Phase.HUMAN:
            if not self._in_control:
                self._take_control(t)
            return self._drive(env, info, t, ttc)
        self._in_control = False
        requested = view.tor_active or view.phase in (Phase.TOR, Phase.FALLBACK)
        if requested:
            if self._tor_z is None:  # a new request: lapse or not, and how fast
                self._tor_start = t - float(view.tor_elapsed)
                self._lapsed = bool(self.rng.random() < self.lapse_probability())
                self._tor_z = float(self.rng.standard_normal())
            if self._lapsed:
                return NO_INPUT
            elapsed = view.tor_elapsed if view.tor_active else t - self._tor_start
            if elapsed >= self._takeover_time(self._tor_z, view.urgency):
                self._take_control(t)
                return self._drive(env, info, t, ttc)
            return NO_INPUT
        self._tor_z = None
        self._lapsed = False
        self.automation_time += dt
        # human-gated mode: take over on perceived danger
        if ttc < p.danger_ttc:
            if self._danger_at is None:
                delay = 0.0 if p.danger_reaction == 0 else (
                    p.danger_reaction * math.exp(0.3 * float(self.rng.standard_normal())))
                self._danger_at = t + delay * p.slowdown(self.complacency)
            if t >= self._danger_at:
                self._take_control(t)
                return self._drive(env, info, t, ttc)
        elif ttc > 1.5 * p.danger_ttc:
            self._danger_at = None
        return NO_INPUT

    def _take_control(self, t: float) -> None:
        self._in_control = True
        self._control_since = t
        self._calm_since = None
        self._danger_at = None
        self._tor_z = None
        self.automation_time = 0.0  # a takeover restores attention
        self.driver.reset()
        self._noise[:] = 0.0

    def _drive(self, env: Any, info: dict[str, Any], t: float, ttc: float) -> HumanInput:
        p = self.params
        calm = ttc > p.calm_ttc and not info.get("hazard_active", False)
        if not calm:
            self._calm_since = None
        elif self._calm_since is None:
            self._calm_since = t
        releases = (self._calm_since is not None and t - self._calm_since >= p.calm_time
                    and t - self._control_since >= p.min_control)
        return HumanInput(action=self._action(env), wants_control=not releases,
                          releases=releases)

    def _action(self, env: Any) -> Any:
        p = self.params
        action = self.driver(env)
        if env.config.action_type == "discrete":
            if p.wrong_action_prob > 0 and self.rng.random() < p.wrong_action_prob:
                other = int(self.rng.integers(len(L.META_ACTIONS) - 1))
                return other + (other >= int(action))
            return int(action)
        if p.steer_noise > 0 or p.accel_noise > 0:
            eps = self.rng.standard_normal(2) * (p.steer_noise, p.accel_noise)
            self._noise = p.noise_rho * self._noise + math.sqrt(1 - p.noise_rho ** 2) * eps
            action = np.clip(action + self._noise, -1.0, 1.0).astype(np.float32)
        return action


class PerfectHuman(ScriptedHuman):
    """The upper bound: answers every request at once, never lapses, drives without noise
    like the expert (its parameters are ``SKILLS["perfect"]``)."""

    def __init__(self, seed: int | None = None, **overrides: Any) -> None:
        super().__init__("perfect", seed=seed, **overrides)


class AbsentHuman:
    """Never answers and never takes over: exercises the fallback (minimal-risk) path."""

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: np.ndarray, info: dict[str, Any], env: Any, view: HumanView) -> HumanInput:
        return NO_INPUT


HUMANS: Registry = Registry("human model")
HUMANS.register("perfect", PerfectHuman)
HUMANS.register("expert", functools.partial(ScriptedHuman, "expert"))
HUMANS.register("average", functools.partial(ScriptedHuman, "average"))
HUMANS.register("novice", functools.partial(ScriptedHuman, "novice"))
HUMANS.register("absent", AbsentHuman)
