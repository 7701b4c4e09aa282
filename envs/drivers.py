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

from takeover.envs import layout as L
from takeover.envs.config import CAREFUL_SPEED
from takeover.envs.controllers import idm_accel, lane_keep_steer
from takeover.envs.highway import HighwayEnv

__all__ = ["ConstantSpeedDriver", "IDMDriver", "StandstillDriver", "corridor_follower_gap",
           "corridor_leader", "idm_accel", "lane_keep_steer"]


def corridor_leader(veh: np.ndarray, y: float, lateral_margin: float = 0.5) -> tuple[float, float]:
    """Bumper gap (m) and speed (m/s) of the nearest object ahead of the ego overlapping
    the corridor at lateral position ``y``; gap is ``inf`` when the corridor is clear."""
    ego = veh[0]
    others = veh[1:]
    present = others[:, L.KIND] != L.EMPTY
    dx = others[:, L.X] - ego[L.X]
    overlap = np.abs(others[:, L.Y] - y) < 0.5 * (others[:, L.WID] + ego[L.WID]) + lateral_margin
    mask = present & overlap & (dx > 0.0)
    if not mask.any():
        return math.inf, 0.0
    j = int(np.argmin(np.where(mask, dx, np.inf)))
    gap = dx[j] - 0.5 * (others[j, L.LEN] + ego[L.LEN])
    return float(gap), float(others[j, L.V] * math.cos(others[j, L.PSI]))


def corridor_follower_gap(veh: np.ndarray, y: float) -> tuple[float, float]:
    """Gap (m) and speed (m/s) of the nearest vehicle behind the ego in the corridor at ``y``."""
    ego = veh[0]
    others = veh[1:]
    present = others[:, L.KIND] != L.EMPTY
    dx = ego[L.X] - others[:, L.X]
    overlap = np.abs(others[:, L.Y] - y) < 0.5 * (others[:, L.WID] + ego[L.WID]) + 0.5
    mask = present & overlap & (dx >= 0.0)
    if not mask.any():
        return math.inf, 0.0
    j = int(np.argmin(np.where(mask, dx, np.inf)))
    return float(dx[j] - 0.5 * (others[j, L.LEN] + ego[L.LEN])), float(others[j, L.V])


WHEELBASE = 2.5  # m, the ego's (HighwayConfig.params)


@dataclass
class IDMDriver:
    """A cautious driver: IDM car following in its corridor, and a lane change around a
    slow or stopped obstacle when the target lane has room (a MOBIL-style safety check).

    The defaults are a careful human: 1.8 s headway, firm braking allowed up to the car's
    limit, and a lane change when the leader is much slower than desired.
    """

    desired_speed: float = CAREFUL_SPEED
    headway: float = 1.8
    a_max: float = 2.0
    b_comf: float = 3.0
    s0: float = 5.0
    change_lanes: bool = True
    safe_gap_behind: float = 8.0
    closing_time: float = 2.0
    overtake_below: float = 0.8
    target_lane: float | None = None

    def reset(self) -> None:
        self.target_lane = None

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
        gap, v_lead = corridor_leader(veh, float(ego[L.Y]))
        creep = math.inf  # steering around a standing obstacle: creep up to it, do not wait
        if self.target_lane != lane_now:  # mid-change: also respect the target lane
            g2, v2 = corridor_leader(veh, self.target_lane * w)
            if v_lead < 2.0 and gap > 2.0:
                creep = idm_accel(v, self.desired_speed, gap, v_lead, headway=0.5,
                                  a_max=self.a_max, b_comf=self.b_comf, s0=1.0)
                gap, v_lead = g2, v2
            elif g2 < gap:
                gap, v_lead = g2, v2
        # stop well back from a standing obstacle: steering around it needs room
        s0 = self.s0 + (7.0 if v_lead < 2.0 else 0.0)
        kw = dict(headway=self.headway, a_max=self.a_max, b_comf=self.b_comf, s0=s0)
        acc = min(idm_accel(v, self.desired_speed, gap, v_lead, **kw), creep)
        if (self.change_lanes and self.target_lane == lane_now and gap < 80.0
                and v_lead < self.overtake_below * self.desired_speed):
            best = acc + 0.5
            for lane in (lane_now - 1.0, lane_now + 1.0):
                if not 0 <= lane < cfg.lanes:
                    continue
                g_ahead, v_ahead = corridor_leader(veh, lane * w)
                g_back, v_back = corridor_follower_gap(veh, lane * w)
                if (g_back < self.safe_gap_behind + max(0.0, v_back - v) * self.closing_time
                        or g_ahead < 10.0 + max(0.0, v - v_ahead) * 1.0):
                    continue
                a_new = idm_accel(v, self.desired_speed, g_ahead, v_ahead, **kw)
                if a_new > best:
                    best, self.target_lane = a_new, lane
        steer = lane_keep_steer(float(ego[L.Y] - self.target_lane * w), float(ego[L.PSI]), v,
                                WHEELBASE)
        return steer, min(max(acc, -cfg.brake_max), cfg.accel_max)

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
