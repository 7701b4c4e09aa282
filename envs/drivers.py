"""Reference drivers that read the world's true state: baselines for tests and the core of
the scripted human models (``takeover.supervisor.humans``). The car following and lane
keeping are ``takeover.envs.controllers`` (the kernel's own IDM and lane keeper).

A driver is called with the unwrapped env and returns an action in the env's own action
space, so it drives either action type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from takeover.envs import controllers
from takeover.envs import layout as L
from takeover.envs.config import CAREFUL_SPEED
from takeover.envs.controllers import SIGNAL_LEAN, idm_accel, lane_keep_steer
from takeover.envs.highway import HighwayEnv

__all__ = ["ConstantSpeedDriver", "IDMDriver", "StandstillDriver", "corridor_follower_gap",
           "corridor_leader", "idm_accel", "lane_keep_steer"]


def corridor_leader(veh: np.ndarray, y: float, lateral_margin: float = 0.5,
                    anticipation: float = 0.0) -> tuple[float, float]:
    """Bumper gap (m) and speed (m/s) of the nearest object ahead of the ego overlapping
    the corridor at lateral position ``y``, now or ``anticipation`` s from now at its
    lateral speed (a car cutting in counts as soon as it drifts toward the corridor); gap
    is ``inf`` when the corridor is clear (``controllers.corridor_leader``)."""
    gap, v = controllers.corridor_leader(veh, y, lateral_margin, anticipation)
    return float(gap), float(v)


def corridor_follower_gap(veh: np.ndarray, y: float) -> tuple[float, float]:
    """Gap (m) and speed (m/s) of the nearest vehicle behind the ego in the corridor at ``y``
    (``controllers.corridor_follower``)."""
    gap, j = controllers.corridor_follower(veh, y, 0.5)
    return float(gap), (float(veh[j, L.V]) if j >= 0 else 0.0)


def standing_ahead(veh: np.ndarray, y: float, lookahead: float) -> bool:
    """Whether a standing object (under 2 m/s: a stalled car, a cone, a stopped queue's
    head) lies within ``lookahead`` m ahead of the ego in the lane centred at ``y``."""
    others = veh[1:]
    dx = others[:, L.X] - veh[0, L.X]
    in_lane = np.abs(others[:, L.Y] - y) < 0.5 * (others[:, L.WID] + veh[0, L.WID])
    return bool(np.any((others[:, L.KIND] != L.EMPTY) & in_lane & (dx > 0.0)
                       & (dx < lookahead) & (others[:, L.V] < 2.0)))


WHEELBASE = 2.5  # m, the ego's (HighwayConfig.params)


@dataclass
class IDMDriver:
    """A careful, competent driver: IDM car following in its corridor, and lane changes
    around a slow or stopped obstacle into a safe gap.

    The defaults are a careful human, tuned on development seeds (0..9_999): 1.5 s headway
    (highway-env's ``IDMVehicle.TIME_WANTED``), 2.5 m/s^2 pulling away (between Treiber's
    1-2 and highway-env's 3), firm braking allowed up to the car's limit, and

    * anticipation: a car drifting toward its corridor counts as its leader ``anticipation``
      s (1) before it arrives (a cut-in or merge is braked for as it starts, not as it lands);
    * a lane change when the leader is much slower than desired (``overtake_below``) or a
      standing object (a stalled car, cones) blocks its lane within ``lookahead`` m (300: on a
      straight highway hazard lights and work-zone signs show that far): it moves over early,
      at traffic speed, if the target lane's gap is safe: ``safe_gap_behind`` m (8) +
      ``closing_time`` s (1.5) x the follower's closing speed behind, ``safe_gap_ahead`` m
      (5) + 1 s x its closing speed ahead, and a follower that can match its speed
      braking at most ``follower_brake`` (3 m/s^2; a standing follower, one waving it in,
      needs only 2 m); out of a blocked lane it merges as a zip merge does, into
      ``blocked_gap_behind`` m (2) + ``blocked_closing_time`` s (0.5) x the closing speed,
      still only where the follower can match its speed braking at most ``follower_brake``
      (the follower has been asked to let it in; waiting for a free-flow gap stranded it at
      the cones: on development seeds 0..199 LaneClosure arrivals 0.775 -> 0.905, StalledCar
      0.79 -> 0.925, at most 1 collision in 200); with no such gap yet it drops back (at most ``seek_brake``, 1 m/s^2,
      so that a yielding follower can keep behind it) toward the neighbour lane's car
      instead of staying alongside it, and, blocked, signals: it leans ``lean`` m (0.6)
      toward the open lane with the most room behind, which asks that lane's traffic to
      let it in (the kernel's cooperative yielding, ``dynamics._yield_request``);
    * toward a standing obstacle it keeps speed until stopping at ``b_comf`` is needed (the
      IDM would crawl from 150 m back and lose the chance to merge at speed), and stops
      ``s0 + standoff`` m (12) short of it, room to steer around it;
    * a lane change it has begun is abandoned, back to its own lane, while the target
      lane's follower closes to half the safe gap.

    Measured rates (held-out seeds): README "Acceptance".
    """

    desired_speed: float = CAREFUL_SPEED
    headway: float = 1.5
    a_max: float = 2.5
    b_comf: float = 3.0
    s0: float = 5.0
    change_lanes: bool = True
    safe_gap_behind: float = 8.0
    closing_time: float = 1.5
    overtake_below: float = 0.8
    anticipation: float = 1.0
    safe_gap_ahead: float = 5.0
    lookahead: float = 300.0
    standoff: float = 7.0
    follower_brake: float = 3.0
    blocked_gap_behind: float = 2.0
    blocked_closing_time: float = 0.5
    lean: float = SIGNAL_LEAN
    seek_brake: float = 1.0
    target_lane: float | None = None
    signal_lane: float | None = None

    def reset(self) -> None:
        self.target_lane = None
        self.signal_lane = None

    def controls(self, env: HighwayEnv) -> tuple[float, float]:
        """Desired steering angle (rad) and acceleration (m/s^2)."""
        veh = env.vehicles
        cfg = env.config
        ego = veh[0]
        w = cfg.lane_width
        lane_now = float(min(max(round(ego[L.Y] / w), 0), cfg.lanes - 1))
        if self.target_lane is None or abs(ego[L.Y] - self.target_lane * w) < 0.3:
            self.target_lane = lane_now if self.target_lane is None else self.target_lane
        v = float(ego[L.V])
        gap, v_lead = corridor_leader(veh, float(ego[L.Y]), anticipation=self.anticipation)
        creep = math.inf  # steering around a standing obstacle: creep up to it, do not wait
        if self.target_lane != lane_now:  # mid-change, still mostly in the old lane:
            # steer back if the target lane's follower now closes in (the gap has shut)
            g_back, v_back = corridor_follower_gap(veh, self.target_lane * w)
            if v_back >= 0.5 and g_back < (self.safe_gap_behind
                                           + max(0.0, v_back - v) * self.closing_time * 0.5):
                self.target_lane = lane_now
        if self.target_lane != lane_now:  # mid-change: also respect the target lane
            g2, v2 = corridor_leader(veh, self.target_lane * w)
            if v_lead < 2.0 and gap > 2.0:
                creep = idm_accel(v, self.desired_speed, gap, v_lead, headway=0.5,
                                  a_max=self.a_max, b_comf=self.b_comf, s0=1.0)
                gap, v_lead = g2, v2
            elif g2 < gap:
                gap, v_lead = g2, v2
        # stop well back from a standing obstacle: steering around it needs room
        s0 = self.s0 + (self.standoff if v_lead < 2.0 else 0.0)
        kw = dict(headway=self.headway, a_max=self.a_max, b_comf=self.b_comf, s0=s0)
        if v_lead < 2.0 and gap < math.inf:
            # a standing obstacle: keep speed (and the chance to merge at traffic speed)
            # until a stop at b_comf is needed, then brake as much as stopping needs, as a
            # driver does; the IDM would start braking 150 m back at 22 m/s
            room = gap - s0
            need = v * v / (2.0 * room) if room > 0.0 else math.inf
            free = idm_accel(v, self.desired_speed, math.inf, 0.0, **kw)
            acc = -need if need >= self.b_comf else free
            if room <= 0.0:
                acc = -self.b_comf if v > 0.0 else 0.0
        else:
            acc = idm_accel(v, self.desired_speed, gap, v_lead, **kw)
        acc = min(acc, creep)
        blocked = standing_ahead(veh, lane_now * w, self.lookahead)
        if (self.change_lanes and self.target_lane == lane_now
                and (blocked or (gap < 80.0 and v_lead < self.overtake_below * self.desired_speed))):
            # a lane blocked further ahead: move over early, at speed, unless it means braking
            best = -self.b_comf if blocked else acc + 0.5
            seek = -math.inf  # blocked, and no gap yet: fall in behind a neighbour lane's car
            room = -math.inf  # blocked: signal toward the open lane with most room behind
            signal = None
            for lane in (lane_now - 1.0, lane_now + 1.0):
                if not 0 <= lane < cfg.lanes or standing_ahead(veh, lane * w, self.lookahead):
                    continue
                g_ahead, v_ahead = corridor_leader(veh, lane * w)
                g_back, v_back = corridor_follower_gap(veh, lane * w)
                if lane == self.signal_lane or (g_back > room and self.signal_lane is None):
                    room, signal = g_back, lane
                if not self._room_behind(g_back, v_back, v, blocked):
                    continue
                a_new = idm_accel(v, self.desired_speed, g_ahead, v_ahead, **kw)
                if (g_ahead < self.safe_gap_ahead + max(0.0, v - v_ahead) * 1.0
                        or (blocked and a_new <= best)):
                    seek = max(seek, a_new)  # blocked: drop back to that gap
                    continue
                if a_new > best:
                    best, self.target_lane = a_new, lane
            if blocked and self.target_lane == lane_now and seek > -math.inf:
                acc = min(acc, max(seek, -self.seek_brake))
            self.signal_lane = signal if blocked and self.target_lane == lane_now else None
        else:
            self.signal_lane = None
        y_aim = self.target_lane * w
        if self.signal_lane is not None:  # signal: lean toward the lane, inside one's own
            y_aim += math.copysign(self.lean, self.signal_lane - lane_now)
        steer = lane_keep_steer(float(ego[L.Y] - y_aim), float(ego[L.PSI]), v, WHEELBASE)
        return steer, min(max(acc, -cfg.brake_max), cfg.accel_max)

    def _room_behind(self, g_back: float, v_back: float, v: float,
                     blocked: bool = False) -> bool:
        """Whether the target lane's follower (bumper gap ``g_back`` m, ``v_back`` m/s)
        leaves room to change in ahead of it at ``v`` m/s: ``safe_gap_behind`` + the
        closing speed x ``closing_time`` (out of a ``blocked`` lane, the forced merge of a
        zip merge: ``blocked_gap_behind`` + ``blocked_closing_time``), and it can match the
        ego's speed braking at most ``follower_brake`` (a slow ego merging into fast traffic
        needs the follower slow or far); a standing follower (one waving the ego in) needs
        only 2 m."""
        if v_back < 0.5:
            return g_back > 2.0
        closing = max(0.0, v_back - v)
        gap, t = ((self.blocked_gap_behind, self.blocked_closing_time) if blocked
                  else (self.safe_gap_behind, self.closing_time))
        room = g_back - gap
        return room >= closing * t and closing * closing <= 2.0 * self.follower_brake * room

    def __call__(self, env: HighwayEnv):
        steer, acc = self.controls(env)
        cfg = env.config
        if cfg.action_type == "discrete":
            return self.meta_action(env, acc)
        a = np.array([steer / cfg.steer_max,
                      acc / (cfg.accel_max if acc > 0 else cfg.brake_max)], dtype=np.float32)
        return np.clip(a, -1.0, 1.0)

    def meta_action(self, env: HighwayEnv, acc: float) -> int:
        """The meta-action that best realises the desired lane and acceleration."""
        lane_now = env.vehicles[0, L.Y] / env.config.lane_width
        tgt_lane = env.world[L.TGT_LANE]
        if self.target_lane is not None and self.target_lane != tgt_lane:
            return L.LANE_LEFT if self.target_lane < lane_now else L.LANE_RIGHT
        tgt_speed = env.world[L.TGT_SPEED]
        want = env.vehicles[0, L.V] + acc * 1.0  # speed this acceleration reaches in 1 s
        if want < tgt_speed - 2.5:
            return L.SLOWER
        if want > tgt_speed + 2.5:
            return L.FASTER
        return L.IDLE


@dataclass
class ConstantSpeedDriver:
    """Holds its lane and speed whatever happens: the policy every hazard should defeat."""

    def reset(self) -> None:
        pass

    def __call__(self, env: HighwayEnv):
        if env.config.action_type == "discrete":
            return L.IDLE
        ego = env.vehicles[0]
        w = env.config.lane_width
        steer = lane_keep_steer(float(ego[L.Y] - round(ego[L.Y] / w) * w), float(ego[L.PSI]),
                                float(ego[L.V]), WHEELBASE)
        return np.array([np.clip(steer / env.config.steer_max, -1, 1), 0.0], dtype=np.float32)


@dataclass
class StandstillDriver:
    """Brakes to a standstill in its lane and stays there: the policy the reward must never
    pay (it ends ``stopped``, and returns less than any driver that arrives)."""

    def reset(self) -> None:
        pass

    def __call__(self, env: HighwayEnv):
        if env.config.action_type == "discrete":
            return L.SLOWER if env.world[L.TGT_SPEED] > 0.0 else L.IDLE
        return np.array([0.0, -1.0], dtype=np.float32)
