"""A scripted human's parameters, the presets and their sources, and the reaction-time model.

Takeover time (all presets)
---------------------------
A fixed floor plus a shifted log-normal variable part, scaled by urgency ``u`` (0..1, from
:class:`~takeover.types.HumanViews`) and complacency ``c`` (0..1)::

    T = min(T_max, floor + ((t0 - floor) + (median - t0) * exp(sigma * z)) * S(c) * U(u))
    S(c) = 1 + complacency_slowdown * c          U(u) = 1 - u * (1 - urgent_factor)

with ``z ~ N(0, 1)`` drawn when the request starts. The human takes control at the first step
with ``tor_elapsed >= T``.

*The floor* (``reaction_floor``, 0.7 s for every human preset) is the perception-reaction time
no driver beats: Green (2000, Transp. Human Factors 2(3)) puts brake reaction at 0.70-0.75 s
for a fully expected signal, ~1.25 s for an unexpected but common one, ~1.5 s for a surprise.
Urgency and complacency scale only what lies above it, so no urgency makes a takeover faster
than the floor (the previous model scaled the whole time and reached 0.6 s).

*Fit of the "average" preset.* Eriksson & Stanton (2017, Human Factors 59(4)) measured
non-critical takeover times of 26 drivers: median 4.56 s, range 1.97-25.75 s. Reading the
range as the sample minimum and maximum of 26 draws, their expected standard-normal scores
are ``-/+ 1.981`` (Blom's plotting position ``(26 - 3/8) / (26 + 1/4)``). With ``m = median -
t0`` and ``k = exp(1.981 sigma)`` the three statistics give ``m (1 - 1/k) = 4.56 - 1.97`` and
``m (k - 1) = 25.75 - 4.56``, so ``k = 8.18``, ``sigma = 1.061``, ``m = 2.95 s`` and ``t0 =
1.61 s``. At ``u = c = 0`` the formula is exactly this fit (the floor only splits ``t0``).

*The tail* is capped at ``takeover_max`` = 30 s by clipping: Eriksson & Stanton's slowest of
26 drivers took 25.75 s; the fit puts 1.6 % of draws above 30 s (the uncapped log-normal
reached 144 s with complacency). Clipping leaves every quantile below the cap (the median, the
fitted range) unchanged; a clipped draw still means "no takeover within 30 s", which is what
an episode (30 s) and any handover timeout can observe.

*Urgency.* Zhang et al. (2019, Transp. Res. F 64, meta-analysis of 129 studies) found takeovers
faster under urgency; their pooled mean over mostly urgent, time-budgeted requests is 2.72 s.
``urgent_factor = 0.332`` puts the average preset's mean at full urgency on 2.72 s
(``0.7 + (0.91 + 2.95 exp(1.061^2 / 2)) * 0.332``). They also found mean and SD strongly
correlated across studies, which a fixed ``sigma`` reproduces.

*Complacency.* ``c = 1 - exp(-t_auto / complacency_tau)``, ``t_auto`` the time the automation
has driven without a takeover (plus ``initial_automation``). Vigilance falls over tens of
minutes of monitoring (Mackworth 1948; Greenlee, DeLucia & Newton 2018 for automated driving;
Körber et al. 2015: passive fatigue within 42 min). The time constant (10 min) and effect
sizes are assumptions: 30 min into an uneventful drive a human is ~1.5x slower above the floor
and misses several times more requests. A takeover resets ``t_auto``.

Reaction to danger (brake reaction)
-----------------------------------
The same shape with its own median ``danger_reaction`` and spread ``reaction_sigma``::

    R = floor + (danger_reaction - floor) * exp(reaction_sigma * z) * S(c)

It delays a self-initiated takeover (TTC below ``danger_ttc``, no request pending), and, while
the human drives, the first braking after a new need to brake (the IDM asks for more than
2 m/s^2): until ``R`` has passed the foot stays where it was. The medians are Green's (2000)
categories: expert 1.0 s (between expected and unexpected), average 1.25 s (unexpected),
novice 1.5 s (surprise).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from takeover.registry import closest

REACTION_FLOOR = 0.7
"""s; Green (2000): no brake reaction is faster than about 0.70-0.75 s."""

_PROBABILITIES = ("lapse_prob", "complacency_lapse", "wrong_action_prob", "urgent_factor",
                  "noise_rho", "brake_use")


@dataclass(frozen=True)
class HumanParams:
    """One human's parameters; :data:`SKILLS` documents the presets' sources.

    Attributes (times in s, speeds m/s, accelerations m/s^2, distances m):
        reaction_floor: fixed part of every reaction; urgency never shortens it.
        takeover_median: median non-urgent takeover time (0 = instantaneous).
        takeover_shift: the log-normal's shift ``t0`` (>= ``reaction_floor``).
        takeover_sigma: log-normal shape of the takeover time.
        takeover_max: cap of the takeover time (clipped).
        urgent_factor: multiplier of the part above the floor at urgency 1 (linear).
        lapse_prob: probability of not answering a request at all (no complacency).
        complacency_tau: uneventful automated driving for attention to decay by 1/e.
        complacency_slowdown: relative lengthening above the floor at full complacency.
        complacency_lapse: lapse probability added at full complacency.
        initial_automation: uneventful automated driving before the episode starts.
        danger_ttc: a time-to-collision below this prompts a self-initiated takeover.
        danger_reaction: median brake / danger reaction time.
        reaction_sigma: log-normal shape of the part of it above the floor.
        steer_noise, accel_noise: std of the AR(1) Gaussian noise on normalised continuous
            actions (lane-keeping and speed precision).
        noise_rho: step-to-step correlation of that noise (human motor noise is smooth).
        wrong_action_prob: probability per step of a random other meta-action (discrete).
        calm_ttc: the situation is calm when TTC exceeds this and no hazard is active.
        calm_time: continuous calm before the human hands control back.
        min_control: the human keeps control at least this long once taken.
        desired_speed, headway, a_max, b_comf, s0: the IDM driving style.
        brake_use: share of the car's full braking the human uses at most (0..1).
        lookahead: m; a standing object this far ahead in its lane prompts a lane change
            (how far ahead the human scans; the careful ``IDMDriver`` sees 300 m).
        anticipation: how far ahead the human predicts a car drifting into the lane.
        gap_ahead: m of free road the human needs ahead in the target lane to change lanes.
        gap_behind: m of bumper gap the human needs to the target lane's follower.
        follower_brake: the most braking (m/s^2) the human's lane change may force on the
            target lane's follower (MOBIL's ``b_safe``; Kesting et al. 2007 use 4).
        evade_brake: m/s^2; when the own lane asks for braking harder than this, the human
            also looks for an evasive lane change (into a gap it accepts); 0 = it only
            brakes: while its lane asks for more than ``b_comf`` it changes no lane at all
            (it waits behind a standing obstacle until it has stopped).
    """

    reaction_floor: float = REACTION_FLOOR
    takeover_median: float = 4.56
    takeover_shift: float = 1.61
    takeover_sigma: float = 1.061
    takeover_max: float = 30.0
    urgent_factor: float = 0.332
    lapse_prob: float = 0.03
    complacency_tau: float = 600.0
    complacency_slowdown: float = 0.5
    complacency_lapse: float = 0.10
    initial_automation: float = 0.0
    danger_ttc: float = 3.0
    danger_reaction: float = 1.25
    reaction_sigma: float = 0.3
    steer_noise: float = 0.05
    accel_noise: float = 0.06
    noise_rho: float = 0.7
    wrong_action_prob: float = 0.01
    calm_ttc: float = 8.0
    calm_time: float = 3.0
    min_control: float = 3.0
    desired_speed: float = 25.0
    headway: float = 1.5
    a_max: float = 2.0
    b_comf: float = 3.0
    s0: float = 4.0
    brake_use: float = 0.8
    lookahead: float = 100.0
    anticipation: float = 0.8
    gap_ahead: float = 6.0
    gap_behind: float = 2.0
    follower_brake: float = 4.0
    evade_brake: float = 4.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"human parameter {f.name}={value!r} must be a finite "
                                 f"number >= 0")
        for name in _PROBABILITIES:
            if getattr(self, name) > 1:
                raise ValueError(f"human parameter {name}={getattr(self, name)} must be <= 1")
        if self.takeover_median > 0:
            if not self.reaction_floor <= self.takeover_shift < self.takeover_median:
                raise ValueError(
                    f"need reaction_floor <= takeover_shift < takeover_median, got "
                    f"{self.reaction_floor}, {self.takeover_shift}, {self.takeover_median}")
            if self.takeover_max <= self.takeover_median:
                raise ValueError(f"takeover_max={self.takeover_max} must exceed "
                                 f"takeover_median={self.takeover_median}")
        if self.danger_reaction > 0 and self.danger_reaction < self.reaction_floor:
            raise ValueError(f"danger_reaction={self.danger_reaction} is below "
                             f"reaction_floor={self.reaction_floor}")
        if self.complacency_tau == 0:
            raise ValueError("complacency_tau must be > 0 s (use a huge value to disable)")
        if self.desired_speed == 0 or self.a_max == 0 or self.b_comf == 0:
            raise ValueError("desired_speed, a_max and b_comf must be > 0")

    # --- the model, in closed form (the batched kernel computes the same) --------------
    def complacency(self, automation_time: float) -> float:
        return 1.0 - math.exp(-automation_time / self.complacency_tau)

    def slowdown(self, complacency: float) -> float:
        return 1.0 + self.complacency_slowdown * complacency

    def urgency_factor(self, urgency: float) -> float:
        return 1.0 - min(max(urgency, 0.0), 1.0) * (1.0 - self.urgent_factor)

    def takeover_time(self, z: float, urgency: float = 0.0, complacency: float = 0.0) -> float:
        """The takeover time at standard-normal score ``z`` (see the module docstring)."""
        if self.takeover_median == 0:
            return 0.0
        f = self.reaction_floor
        above = ((self.takeover_shift - f)
                 + (self.takeover_median - self.takeover_shift) * math.exp(self.takeover_sigma * z))
        t = f + above * self.slowdown(complacency) * self.urgency_factor(urgency)
        return min(t, self.takeover_max)

    def takeover_quantile(self, q: float, urgency: float = 0.0, complacency: float = 0.0) -> float:
        """The ``q`` quantile of the takeover time (monotone in ``z``, so exact)."""
        return self.takeover_time(NormalDist().inv_cdf(q), urgency, complacency)

    def reaction_time(self, z: float, complacency: float = 0.0) -> float:
        """The danger / brake reaction time at standard-normal score ``z``."""
        if self.danger_reaction == 0:
            return 0.0
        f = self.reaction_floor
        return f + (self.danger_reaction - f) * math.exp(self.reaction_sigma * z) * \
            self.slowdown(complacency)

    def reaction_quantile(self, q: float, complacency: float = 0.0) -> float:
        return self.reaction_time(NormalDist().inv_cdf(q), complacency)

    def lapse_probability(self, complacency: float = 0.0) -> float:
        return min(1.0, self.lapse_prob + self.complacency_lapse * complacency)


_EXPERT_DRIVING = dict(desired_speed=27.0, headway=1.0, a_max=3.0, b_comf=3.0, s0=2.5,
                       brake_use=1.0, lookahead=150.0, anticipation=1.2, gap_ahead=5.0,
                       gap_behind=1.5, follower_brake=5.0, evade_brake=3.0)

SKILLS: dict[str, HumanParams] = {
    # Experienced: Zhang et al. (2019): prior takeover experience shortens takeover time;
    # median 3.0 s, shift 1.2 s, sigma 0.8 (assumed; 5-95 %: 1.9-7.4 s). Rare lapses, early
    # danger perception, brake reaction 1.0 s (between Green's expected and unexpected).
    # Drives efficiently and safely: 1.0 s headway (the low end of Treiber et al. 2000's
    # 1-2 s; the novice's 0.9 s is matched with under-braking and late perception), brisk
    # acceleration (3 m/s^2), full use of the brakes, scans 150 m ahead (experienced drivers
    # look further ahead: Mourant & Rockwell 1972), predicts a drifting car 1.2 s ahead
    # (longer horizons over-react: measured on dev seeds), judges gaps precisely: takes a
    # gap of 5 m ahead / 1.5 m behind if the follower need not brake harder than 5 m/s^2
    # (MOBIL's b_safe is 4, Kesting et al. 2007), and steers around an obstacle when its
    # lane asks for more than 3 m/s^2 of braking. Headway, acceleration, gaps and the
    # evasion threshold were tuned on development seeds 0..59 per hazard (v1 world) from
    # the previous 1.8 s / 2.5 m/s^2 / 8 m / 3 m / 4 m/s^2 / never, under which the expert
    # waited behind every hazard and timed out on the v1 route; the noise values are
    # assumed.
    "expert": HumanParams(
        takeover_median=3.0, takeover_shift=1.2, takeover_sigma=0.8, lapse_prob=0.01,
        complacency_lapse=0.05, danger_ttc=4.0, danger_reaction=1.0, steer_noise=0.02,
        accel_noise=0.03, wrong_action_prob=0.0, calm_time=2.0, **_EXPERT_DRIVING),
    # The Eriksson & Stanton (2017) fit (module docstring); Green's 'unexpected' 1.25 s;
    # driving between the two (1.5 s headway, 80 % of full braking, 100 m scan, steers
    # around an obstacle beyond 4 m/s^2 of braking need; assumed).
    "average": HumanParams(),
    # Inexperienced: slower, more variable takeovers (median 6.0 s, shift 2.0 s, sigma 1.0,
    # assumed; 5-95 %: 2.9-22.6 s, inside E&S's range), more lapses, late danger perception,
    # Green's 'surprise' 1.5 s. Drives riskily: short headway (young drivers follow closer:
    # Evans & Wasielewski 1983), under-brakes in emergencies (the finding behind brake
    # assist: many drivers do not brake fully; 0.6 assumed), scans only 50 m ahead (Mourant &
    # Rockwell 1972), sees a drifting car late (0.3 s), accepts gaps that force the follower
    # to brake at 6 m/s^2, only brakes in an emergency (never steers around: drivers mostly
    # brake rather than swerve, Lechner & Malaterre 1991; that novices swerve less is
    # assumed), noisy control and 3 % wrong meta-actions (values assumed).
    "novice": HumanParams(
        takeover_median=6.0, takeover_shift=2.0, takeover_sigma=1.0, lapse_prob=0.06,
        complacency_lapse=0.20, danger_ttc=2.0, danger_reaction=1.5, steer_noise=0.10,
        accel_noise=0.12, wrong_action_prob=0.03, calm_time=5.0, desired_speed=27.0,
        headway=0.9, a_max=2.5, b_comf=4.0, s0=2.5, brake_use=0.6, lookahead=50.0,
        anticipation=0.3, gap_ahead=5.0, gap_behind=1.0, follower_brake=6.0, evade_brake=0.0),
    # Upper bound: instantaneous, noiseless, never lapses or tires; drives like the expert.
    "perfect": HumanParams(
        reaction_floor=0.0, takeover_median=0.0, takeover_shift=0.0, takeover_sigma=0.0,
        lapse_prob=0.0, complacency_slowdown=0.0, complacency_lapse=0.0, danger_ttc=4.0,
        danger_reaction=0.0, steer_noise=0.0, accel_noise=0.0, wrong_action_prob=0.0,
        calm_time=2.0, **_EXPERT_DRIVING),
}

LITERATURE = {
    "eriksson_stanton_2017": "non-critical takeover time of 26 drivers: median 4.56 s, "
                             "range 1.97-25.75 s (Human Factors 59(4))",
    "zhang_2019": "meta-analysis of 129 studies: mean takeover time 2.72 s, mostly urgent "
                  "(Transp. Res. F 64)",
    "green_2000": "brake reaction ~0.70-0.75 s expected, ~1.25 s unexpected, ~1.5 s surprise "
                  "(Transp. Human Factors 2(3))",
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


def as_vector(p: HumanParams):
    """The parameters as a float64 vector in field order (what the numba kernel reads)."""
    import numpy as np

    return np.array([float(getattr(p, f.name)) for f in dataclasses.fields(p)])


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(HumanParams))
"""Field names in vector order: ``as_vector(p)[FIELDS.index(name)]``."""
