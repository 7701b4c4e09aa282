"""Episode start states: ordinary traffic plus one hazard, all drawn from the episode's RNG.

The hazard is placed relative to the ego by its plugin (``takeover.envs.hazards``); its
onset time is drawn from ``HighwayConfig.onset`` (a window after a warm-up) and its
severity ``s`` in [0, 1] uniformly, both from the hazard's own named stream.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig
from takeover.envs.hazards import HAZARDS, MIXED, Scene, hazard_rng, place_vehicle
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
TRIES = 30  # placement attempts per traffic car


def reset_world(veh: np.ndarray, wld: np.ndarray, cfg: HighwayConfig,
                rng: np.random.Generator) -> int:
    """Fill one world's arrays (``veh`` ``(M, VEH_COLS)``, ``wld`` ``(WLD_COLS,)``) with a
    new episode and return its hazard code (0: none).

    Every reset draws the same amount from ``rng`` in a few array calls, whatever the
    scenario, so resets are fast and a world's RNG stream does not depend on its history.
    """
    veh[:] = 0.0
    wld[:] = 0.0
    w = cfg.lane_width
    n = cfg.lanes
    nv = cfg.vehicles
    u = rng.random(12)
    episode_key = int(rng.integers(2**63))
    drivers = rng.random((nv, 7))
    cand_lane = rng.integers(n, size=(nv, TRIES)).astype(np.float64)
    cand_x = rng.uniform(-100.0, 200.0, size=(nv, TRIES))
    wld[L.HZ_T_ACTIVE] = np.nan
    wld[L.HZ_IDX] = -1.0
    wld[L.HZ_X] = wld[L.HZ_XEND] = wld[L.HZ_END] = FAR
    wld[L.HZ_ONSET] = FAR
    wld[L.HZ_FIRE_MODE] = -1.0
    name = MIXED[min(int(u[0] * len(MIXED)), len(MIXED) - 1)] if cfg.scenario == "mixed" \
        else cfg.scenario
    hazard = HAZARDS.get(name)
    right = hazard is not None and hazard.start_lane == "right"
    ego_lane = float(n - 1) if right else float(min(int(u[1] * n), n - 1))
    v_ego = cfg.ego_speed[0] + (cfg.ego_speed[1] - cfg.ego_speed[0]) * u[2]
    place_vehicle(veh, 0, L.EGO, 0.0, ego_lane, v_ego, w)
    wld[L.TGT_SPEED] = v_ego
    wld[L.TGT_LANE] = ego_lane
    wld[L.MRM_LANE] = ego_lane
    # keep-out zones (lane, x_lo, x_hi) where traffic must not spawn
    keep_out = [(ego_lane, -25.0, 45.0)]
    if hazard is not None:
        hz = hazard_rng(episode_key, name)
        lo, hi = cfg.onset
        onset = lo + (hi - lo) * hz.random()
        scene = Scene(veh, wld, cfg, hz, 1 + nv, ego_lane, v_ego, onset, hz.random())
        keep_out += hazard.setup(scene)
    spawn_traffic(veh, np.array(keep_out), cand_lane, cand_x, drivers, w,
                  cfg.traffic_speed[0], cfg.traffic_speed[1])
    return int(wld[L.HZ_KIND])


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
