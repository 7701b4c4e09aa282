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
from numba import njit

from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig
from takeover.envs.layout import (
    AMAX,
    BCOMF,
    CAR,
    EMPTY,
    KIND,
    LANE,
    LEN,
    POLITE,
    S0,
    THW,
    V0,
    WID,
    V,
    X,
    Y,
)

FAR = 1e18


def _place(veh: np.ndarray, i: int, kind: int, x: float, lane: float, v: float, w: float,
           length: float = 5.0, width: float = 2.0, mode: int = L.NORMAL) -> None:
    row = veh[i]
    row[L.X], row[L.Y], row[L.V], row[L.LANE] = x, lane * w, v, lane
    row[L.LEN], row[L.WID], row[L.KIND], row[L.MODE] = length, width, kind, mode
    row[L.V0] = v


def _driver(row: np.ndarray, u: np.ndarray, cfg: HighwayConfig) -> None:
    """Per-driver IDM/MOBIL parameters from 6 uniforms ``u`` (Treiber & Kesting's ranges
    for highway drivers)."""
    lo, hi = cfg.traffic_speed
    row[L.V0] = lo + (hi - lo) * u[0]
    row[L.THW] = 1.0 + 0.8 * u[1]
    row[L.AMAX] = 1.0 + 1.0 * u[2]
    row[L.BCOMF] = 1.5 + 1.0 * u[3]
    row[L.S0] = 2.0 + 1.0 * u[4]
    row[L.POLITE] = 0.5 * u[5]


TRIES = 30  # placement attempts per traffic car


def reset_world(veh: np.ndarray, wld: np.ndarray, cfg: HighwayConfig,
                rng: np.random.Generator) -> int:
    """Fill one world's arrays (``veh`` ``(M, VEH_COLS)``, ``wld`` ``(WLD_COLS,)``) with a
    new episode and return its hazard kind.

    Every reset draws the same amount of randomness in a few array calls, whatever the
    scenario, so resets are fast and a world's RNG stream does not depend on its history.
    """
    veh[:] = 0.0
    wld[:] = 0.0
    w = cfg.lane_width
    n = cfg.lanes
    nv = cfg.vehicles
    u = rng.random(12)
    drivers = rng.random((nv + 1, 7))
    cand_lane = rng.integers(n, size=(nv, TRIES)).astype(np.float64)
    cand_x = rng.uniform(-100.0, 200.0, size=(nv, TRIES))
    wld[L.RAMP_X0], wld[L.RAMP_X1] = FAR, -FAR
    wld[L.HZ_T_ACTIVE] = -1.0
    wld[L.HZ_IDX] = -1.0
    wld[L.HZ_X] = wld[L.HZ_XEND] = wld[L.HZ_END] = FAR
    wld[L.HZ_ONSET] = FAR
    if cfg.scenario == "mixed":
        kind = 1 + min(int(u[0] * (len(L.HAZARD_NAMES) - 1)), len(L.HAZARD_NAMES) - 2)
    else:
        kind = L.HAZARD_NAMES.index(cfg.scenario)
    ego_lane = float(n - 1) if kind == L.MERGE else float(min(int(u[1] * n), n - 1))
    v_ego = cfg.ego_speed[0] + (cfg.ego_speed[1] - cfg.ego_speed[0]) * u[2]
    _place(veh, 0, L.EGO, 0.0, ego_lane, v_ego, w)
    wld[L.TGT_SPEED] = v_ego
    wld[L.TGT_LANE] = ego_lane
    # keep-out zones (lane, x_lo, x_hi) where traffic must not spawn
    keep_out = [(ego_lane, -25.0, 45.0)]
    h = 1 + nv  # first hazard slot
    if kind:
        onset = cfg.onset[0] + (cfg.onset[1] - cfg.onset[0]) * u[3]
        sev = u[4]
        wld[L.HZ_KIND], wld[L.HZ_ONSET], wld[L.HZ_SEV] = kind, onset, sev
        x_hit = v_ego * onset  # where the ego is at the onset if it holds its speed
        if kind == L.SUDDEN_BRAKE:
            gap = 20.0 + 15.0 * u[5]
            _place(veh, h, L.CAR, gap, ego_lane, v_ego, w, mode=L.LANE_BOUND)
            _driver(veh[h], drivers[nv], cfg)
            veh[h, L.V0] = v_ego
            veh[h, L.DECEL] = 4.0 + 5.0 * sev
            wld[L.HZ_IDX] = h
            keep_out.append((ego_lane, -25.0, gap + 20.0))
        elif kind in (L.CUT_IN, L.MERGE):
            gap = (12.0 - 8.0 * sev) if kind == L.CUT_IN else (12.0 - 7.0 * sev)
            if kind == L.CUT_IN:
                sides = [lane for lane in (ego_lane - 1, ego_lane + 1) if 0 <= lane < n]
                lane = float(sides[min(int(u[6] * len(sides)), len(sides) - 1)])
                wld[L.HZ_DEFICIT] = 2.0 + 5.0 * sev
            else:
                lane = float(n)  # the on-ramp, right of the rightmost lane
                wld[L.HZ_DEFICIT] = 3.0 + 6.0 * sev
                wld[L.HZ_X] = x_hit
                wld[L.RAMP_X0] = -150.0
                wld[L.RAMP_X1] = x_hit + gap + 5.0 + 40.0
            _place(veh, h, L.CAR, 5.0 + gap, lane, v_ego, w, mode=L.SHADOW)
            _driver(veh[h], drivers[nv], cfg)
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
    spawn_traffic(veh, np.array(keep_out), cand_lane, cand_x, drivers, w,
                  cfg.traffic_speed[0], cfg.traffic_speed[1])
    return kind


@njit(cache=True)
def spawn_traffic(veh, keep_out, cand_lane, cand_x, drivers, w, v_lo, v_hi):
    """Place traffic car ``i`` at its first candidate (lane, x) outside the keep-out zones
    and at least 15 m from every car already in that lane."""
    m = veh.shape[0]
    for i in range(1, 1 + cand_x.shape[0]):
        for t in range(cand_x.shape[1]):
            lane = cand_lane[i - 1, t]
            x = cand_x[i - 1, t]
            ok = True
            for z in range(keep_out.shape[0]):
                if lane == keep_out[z, 0] and keep_out[z, 1] <= x <= keep_out[z, 2]:
                    ok = False
                    break
            if ok:
                for j in range(m):
                    if (veh[j, KIND] != EMPTY and veh[j, LANE] == lane
                            and abs(veh[j, X] - x) < 15.0):
                        ok = False
                        break
            if not ok:
                continue
            d = drivers[i - 1]
            r = veh[i]
            r[X], r[Y], r[LANE], r[LEN], r[WID], r[KIND] = x, lane * w, lane, 5.0, 2.0, CAR
            r[V0] = v_lo + (v_hi - v_lo) * d[0]
            r[THW] = 1.0 + 0.8 * d[1]
            r[AMAX] = 1.0 + 1.0 * d[2]
            r[BCOMF] = 1.5 + 1.0 * d[3]
            r[S0] = 2.0 + 1.0 * d[4]
            r[POLITE] = 0.5 * d[5]
            r[V] = r[V0] * (0.9 + 0.1 * d[6])
            break
