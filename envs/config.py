"""The driving world's settings: every field documented, typed and range-checked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from takeover.config import option, validate
from takeover.envs import layout as L
from takeover.envs.hazards import HAZARDS
from takeover.envs.lane_view import LANE_ROWS

SCENARIOS = ("mixed", "none", *HAZARDS)
"""``mixed`` draws one hazard per episode (``hazards.MIXED``); ``none`` is plain traffic."""

CAREFUL_SPEED = 25.0
"""m/s: the reference careful driver's desired speed (``drivers.IDMDriver``)."""
CAREFUL_TRAVEL_SPEED = 20.8
"""m/s: the careful ``IDMDriver``'s measured mean speed in plain free-flowing traffic (the
default 20 cars, ``takeover/Plain-v2``): 625 m in 30 s on development seeds 0..99 (5-95%:
571-679 m). Slower than its desired 25 m/s because traffic wishes 21-29 m/s and it does not
weave. ``tests/test_envs.py`` re-measures it."""
ROUTE_FRACTION = 0.7
"""The default route takes the careful driver in free flow this fraction of the time limit
(issue 10): ``ROUTE_FRACTION * CAREFUL_TRAVEL_SPEED * duration``, 436.8 m for 30 s, leaving
it 9 s of the limit for a hazard."""


@dataclass(frozen=True)
class HighwayConfig:
    scenario: str = option("mixed", "hazard of each episode", choices=SCENARIOS)
    action_type: str = option("continuous", "action space", choices=("continuous", "discrete"))
    lanes: int = option(3, "number of lanes", range=(2, 6))
    vehicles: int = option(20, "traffic vehicles besides the ego", range=(0, 60))
    control_hz: float = option(10.0, "agent decisions per simulated second", range=(1.0, 50.0))
    substeps: int = option(2, "physics sub-steps per control step", range=(1, 20))
    duration: float = option(30.0, "episode time limit, s", range=(1.0, 3600.0))
    route_length: float | None = option(
        None, "m of highway to drive; reaching it ends the episode 'arrived' (None: the "
        "distance the careful driver covers in plain traffic in 70% of duration, 436.8 m "
        "for 30 s)")
    observe: int = option(8, "nearest vehicles in the observation (K)", range=(1, 32))
    observe_lanes: bool = option(False, "add three lane rows (leader and follower of the "
                                 "ego's lane and the lanes beside it, envs.lane_view) after "
                                 "the K nearest")
    lane_width: float = option(4.0, "m", range=(2.5, 6.0))
    ego_speed: tuple[float, float] = option((22.0, 28.0), "initial ego speed range, m/s",
                                            range=(0.0, 40.0))
    traffic_speed: tuple[float, float] = option((21.0, 29.0), "desired speeds of traffic, m/s",
                                                range=(1.0, 40.0))
    onset: tuple[float, float] = option((5.0, 14.0), "hazard onset time range, s",
                                        range=(0.0, 3600.0))
    hazard_window: float = option(5.0, "how long a moving hazard lasts (active) before its car drives on as "
                                  "ordinary traffic, s",
                                  range=(0.5, 60.0))
    sense_range: float = option(80.0, "distance at which a static hazard becomes active, m",
                                range=(10.0, 500.0))
    steer_max: float = option(0.07, "steering angle at action +-1, rad", range=(0.01, 0.6))
    accel_max: float = option(4.0, "acceleration at action +1, m/s^2", range=(0.5, 10.0))
    brake_max: float = option(8.0, "deceleration at action -1, m/s^2", range=(0.5, 12.0))
    speed_max: float = option(40.0, "ego speed cap, m/s", range=(5.0, 70.0))
    reward_speed_range: tuple[float, float] = option((20.0, 30.0),
                                                     "speed mapped to 0..1 reward, m/s",
                                                     range=(0.0, 70.0))
    reward_speed: float = option(1.0, "weight of the speed reward", range=(0.0, None))
    reward_headway: float = option(0.5, "penalty at zero time headway", range=(0.0, None))
    reward_jerk: float = option(0.1, "penalty for jerk above jerk_threshold", range=(0.0, None))
    jerk_threshold: float = option(10.0, "m/s^3", range=(0.1, None))
    reward_collision: float = option(-50.0, "added on collision", range=(None, 0.0))
    reward_offroad: float = option(-50.0, "added on leaving the road", range=(None, 0.0))
    reward_progress: float = option(20.0, "paid pro rata per metre, in total for the route",
                                    range=(0.0, None))
    reward_arrival: float = option(20.0, "added on arriving", range=(0.0, None))
    reward_stopped: float = option(-50.0, "added when the episode ends 'stopped' (standing in "
                                   "a live lane on a free road)", range=(None, 0.0))
    reward_timeout: float = option(0.0, "added when the time limit ends an episode that has "
                                   "not arrived ('timeout'); 0 in the v2 rewards, which "
                                   "the shipped agents were trained on. Fine-tuning on "
                                   "hazards needs it: with 0, waiting behind an obstacle "
                                   "until the limit pays more than trying to pass it",
                                   range=(None, 0.0))
    reward_shoulder: float = option(1.0, "penalty per step on the hard shoulder outside a "
                                    "minimal-risk manoeuvre", range=(0.0, None))
    stop_grace: float = option(3.0, "s of standstill on a free road before 'stopped'",
                               range=(0.1, 60.0))

    def __post_init__(self) -> None:
        validate(self)
        for name in ("ego_speed", "traffic_speed", "onset", "reward_speed_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}=({lo}, {hi}): the first value must be <= the second")
        if self.route_length is not None and not 10.0 <= self.route_length <= 1e5:
            raise ValueError(f"route_length={self.route_length} is out of range: allowed "
                             "[10, 100000] m, or None for the default")
        if self.route > self.speed_max * self.duration:
            raise ValueError(
                f"route_length={self.route} m cannot be driven in duration="
                f"{self.duration} s at speed_max={self.speed_max} m/s; shorten the route or "
                "lengthen the episode")
        if self.reward_speed_range[0] == self.reward_speed_range[1]:
            raise ValueError("reward_speed_range must span a non-empty interval, e.g. (20, 30)")

    @property
    def route(self) -> float:
        """The route's length, m (``route_length``, or its default for ``duration``)."""
        if self.route_length is not None:
            return float(self.route_length)
        return round(ROUTE_FRACTION * CAREFUL_TRAVEL_SPEED * self.duration, 1)

    @property
    def dt(self) -> float:
        return 1.0 / self.control_hz

    @property
    def max_steps(self) -> int:
        return int(round(self.duration * self.control_hz))

    @property
    def obs_rows(self) -> int:
        """Observation rows: the ego, the K nearest and (``observe_lanes``) three lanes."""
        return 1 + self.observe + (LANE_ROWS if self.observe_lanes else 0)

    @property
    def slots(self) -> int:
        """Vehicle slots per world: ego, traffic, and room for a hazard's objects."""
        return 1 + self.vehicles + HAZARD_SLOTS

    def params(self) -> np.ndarray:
        p = np.zeros(L.PARAM_COLS)
        p[L.DT] = self.dt
        p[L.NSUB] = self.substeps
        p[L.LANE_W] = self.lane_width
        p[L.N_LANES] = self.lanes
        p[L.STEER_MAX] = self.steer_max
        p[L.ACC_MAX] = self.accel_max
        p[L.BRAKE_MAX] = self.brake_max
        p[L.V_MAX] = self.speed_max
        p[L.K_OBS] = self.observe
        p[L.LANE_OBS] = float(self.observe_lanes)
        p[L.WHEELBASE] = 2.5
        p[L.V_LO], p[L.V_HI] = self.reward_speed_range
        p[L.R_SPEED] = self.reward_speed
        p[L.R_HEADWAY] = self.reward_headway
        p[L.R_JERK] = self.reward_jerk
        p[L.JERK_THR] = self.jerk_threshold
        p[L.R_COLLISION] = self.reward_collision
        p[L.R_OFFROAD] = self.reward_offroad
        p[L.SENSE] = self.sense_range
        p[L.HZ_WINDOW] = self.hazard_window
        p[L.DISCRETE] = 1.0 if self.action_type == "discrete" else 0.0
        p[L.X_SCALE] = 100.0
        p[L.V_SCALE] = 20.0
        p[L.B_SAFE] = 4.0
        p[L.LC_THRESHOLD] = 0.2
        p[L.RECYCLE_BEHIND] = 120.0
        p[L.RECYCLE_AHEAD] = 180.0
        p[L.ROUTE_LEN] = self.route
        p[L.R_PROGRESS] = self.reward_progress
        p[L.R_ARRIVAL] = self.reward_arrival
        p[L.R_STOPPED] = self.reward_stopped
        p[L.R_SHOULDER] = self.reward_shoulder
        p[L.STOP_GRACE] = self.stop_grace
        p[L.STOP_SPEED] = 0.5  # m/s: below this the ego counts as standing still
        p[L.STOP_CLEAR] = 30.0  # m: the road ahead is free if nothing is closer in the lane
        return p


HAZARD_SLOTS = 10
"""Extra slots per world for a hazard's objects (the work zone's five cones use the most;
ten, so the world's arrays kept their shape when the work zone went from ten cones to five)."""
