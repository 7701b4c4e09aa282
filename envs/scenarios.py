"""Episode start states: ordinary traffic plus one hazard, all drawn from the episode's RNG.

Each hazard is placed so that, at the ego's initial speed, it strikes around its onset time
(drawn from ``HighwayConfig.onset``); its severity ``s`` in [0, 1] is drawn uniformly and
sets how hard it strikes:

================  ====================================================================
sudden_brake      a lead car 20-35 m ahead in the ego's lane brakes at 4 + 5 s m/s^2 to a
                  stop at the onset time
cut_in            a car alongside in an adjacent lane cuts in at the onset with a gap of
                  12 - 8 s m, driving 2 + 5 s m/s slower than the ego
stalled_car       a stopped car (or truck, 5 + 7 s m long) in the ego's lane, reached
                  around the onset time
merge             the ego starts in the right lane; a car on an on-ramp merges in front of
                  it with a gap of 12 - 7 s m, 3 + 6 s m/s slower
lane_closure      a work zone of cones closes the ego's lane for 40 + 32 s m
================  ====================================================================
"""

from __future__ import annotations

import numpy as np

from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig

FAR = 1e18


def _place(veh: np.ndarray, i: int, kind: int, x: float, lane: float, v: float, w: float,
           length: float = 5.0, width: float = 2.0, mode: int = L.NORMAL) -> None:
    row = veh[i]
    row[L.X], row[L.Y], row[L.V], row[L.LANE] = x, lane * w, v, lane
    row[L.LEN], row[L.WID], row[L.KIND], row[L.MODE] = length, width, kind, mode
    row[L.V0] = v


def _driver(row: np.ndarray, rng: np.random.Generator, cfg: HighwayConfig) -> None:
    """Per-driver IDM/MOBIL parameters (Treiber & Kesting's ranges for highway drivers)."""
    row[L.V0] = rng.uniform(*cfg.traffic_speed)
    row[L.THW] = rng.uniform(1.0, 1.8)
    row[L.AMAX] = rng.uniform(1.0, 2.0)
    row[L.BCOMF] = rng.uniform(1.5, 2.5)
    row[L.S0] = rng.uniform(2.0, 3.0)
    row[L.POLITE] = rng.uniform(0.0, 0.5)


def reset_world(veh: np.ndarray, wld: np.ndarray, cfg: HighwayConfig,
                rng: np.random.Generator) -> int:
    """Fill one world's arrays (``veh`` ``(M, VEH_COLS)``, ``wld`` ``(WLD_COLS,)``) with a
    new episode and return its hazard kind."""
    veh[:] = 0.0
    wld[:] = 0.0
    w = cfg.lane_width
    n = cfg.lanes
    wld[L.RAMP_X0], wld[L.RAMP_X1] = FAR, -FAR
    wld[L.HZ_T_ACTIVE] = -1.0
    wld[L.HZ_IDX] = -1.0
    wld[L.HZ_X] = wld[L.HZ_XEND] = wld[L.HZ_END] = FAR
    wld[L.HZ_ONSET] = FAR
    if cfg.scenario == "mixed":
        kind = int(rng.integers(1, len(L.HAZARD_NAMES)))
    else:
        kind = L.HAZARD_NAMES.index(cfg.scenario)
    ego_lane = float(n - 1) if kind == L.MERGE else float(rng.integers(n))
    v_ego = rng.uniform(*cfg.ego_speed)
    _place(veh, 0, L.EGO, 0.0, ego_lane, v_ego, w)
    wld[L.TGT_SPEED] = v_ego
    wld[L.TGT_LANE] = ego_lane
    # keep-out zones (lane, x_lo, x_hi) where traffic must not spawn
    keep_out = [(ego_lane, -25.0, 45.0)]
    h = 1 + cfg.vehicles  # first hazard slot
    if kind:
        onset = rng.uniform(*cfg.onset)
        sev = rng.uniform()
        wld[L.HZ_KIND], wld[L.HZ_ONSET], wld[L.HZ_SEV] = kind, onset, sev
        x_hit = v_ego * onset  # where the ego is at the onset if it holds its speed
        if kind == L.SUDDEN_BRAKE:
            gap = rng.uniform(20.0, 35.0)
            _place(veh, h, L.CAR, gap, ego_lane, v_ego, w, mode=L.LANE_BOUND)
            _driver(veh[h], rng, cfg)
            veh[h, L.V0] = v_ego
            veh[h, L.DECEL] = 4.0 + 5.0 * sev
            wld[L.HZ_IDX] = h
            keep_out.append((ego_lane, -25.0, gap + 20.0))
        elif kind in (L.CUT_IN, L.MERGE):
            gap = (12.0 - 8.0 * sev) if kind == L.CUT_IN else (12.0 - 7.0 * sev)
            if kind == L.CUT_IN:
                sides = [lane for lane in (ego_lane - 1, ego_lane + 1) if 0 <= lane < n]
                lane = float(sides[int(rng.integers(len(sides)))])
                wld[L.HZ_DEFICIT] = 2.0 + 5.0 * sev
            else:
                lane = float(n)  # the on-ramp, right of the rightmost lane
                wld[L.HZ_DEFICIT] = 3.0 + 6.0 * sev
                wld[L.HZ_X] = x_hit
                wld[L.RAMP_X0] = -150.0
                wld[L.RAMP_X1] = x_hit + gap + 5.0 + 40.0
            _place(veh, h, L.CAR, 5.0 + gap, lane, v_ego, w, mode=L.SHADOW)
            _driver(veh[h], rng, cfg)
            veh[h, L.OFFSET] = 5.0 + gap
            wld[L.HZ_IDX] = h
            keep_out.append((lane, -20.0, 30.0))
        elif kind == L.STALLED_CAR:
            length = 5.0 + 7.0 * sev
            _place(veh, h, L.STALLED, x_hit, ego_lane, 0.0, w, length=length,
                   width=2.2 if sev > 0.5 else 2.0, mode=L.STATIC)
            wld[L.HZ_X] = x_hit - 0.5 * length
            wld[L.HZ_XEND] = x_hit + 0.5 * length
            keep_out.append((ego_lane, x_hit - 20.0, x_hit + 15.0))
        elif kind == L.LANE_CLOSURE:
            length = 40.0 + 32.0 * sev
            for c, x in enumerate(np.linspace(x_hit, x_hit + length, 10)):
                _place(veh, h + c, L.CONE, float(x), ego_lane, 0.0, w, length=0.6, width=0.6,
                       mode=L.STATIC)
            wld[L.HZ_X], wld[L.HZ_XEND] = x_hit, x_hit + length
            keep_out.append((ego_lane, x_hit - 30.0, x_hit + length + 10.0))
    _spawn_traffic(veh, cfg, rng, keep_out)
    return kind


def _spawn_traffic(veh: np.ndarray, cfg: HighwayConfig, rng: np.random.Generator,
                   keep_out: list[tuple[float, float, float]]) -> None:
    """Scatter ordinary traffic around the ego with at least 15 m between cars in a lane."""
    w = cfg.lane_width
    taken: list[tuple[float, float]] = [
        (veh[i, L.LANE], veh[i, L.X]) for i in range(veh.shape[0]) if veh[i, L.KIND] != L.EMPTY
    ]
    for i in range(1, 1 + cfg.vehicles):
        for _ in range(30):
            lane = float(rng.integers(cfg.lanes))
            x = rng.uniform(-100.0, 200.0)
            if any(lane == ln and lo <= x <= hi for ln, lo, hi in keep_out):
                continue
            if any(lane == ln and abs(x - xt) < 15.0 for ln, xt in taken):
                continue
            _place(veh, i, L.CAR, x, lane, 0.0, w)
            _driver(veh[i], rng, cfg)
            veh[i, L.V] = veh[i, L.V0] * rng.uniform(0.9, 1.0)
            taken.append((lane, x))
            break
