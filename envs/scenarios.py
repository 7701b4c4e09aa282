"""Episode start states: ordinary traffic plus one hazard, drawn inside the compiled kernel.

An episode is a pure function of the world's RNG row (``streams``: its key, from the seed,
and the episode's number), so a reset (and the vector env's autoreset) costs no Python per
world and a snapshot restores it exactly. The episode's own stream draws the hazard of a
mixed world, the ego's lane and speed, then the traffic car by car (7 driver draws, then
(lane, x) candidates until one fits); the hazard draws its onset time (in
``HighwayConfig.onset``), its severity ``s`` in [0, 1] and whatever its ``place`` needs
from its own named stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from takeover.envs import layout as L
from takeover.envs.config import HighwayConfig
from takeover.envs.hazards import (
    HAZARDS,
    MAX_KEEP_OUT,
    MIXED,
    place_hazard,
    registry_stamp,
    stream_tag,
)
from takeover.envs.hazards.base import (
    R_EGO_HI,
    R_EGO_LO,
    R_LANE_W,
    R_LANES,
    R_MAX_STEPS,
    R_MIXED,
    R_N_MIXED,
    R_ONSET_HI,
    R_ONSET_LO,
    R_PER_CODE,
    R_SCENARIO,
    R_TRAF_HI,
    R_TRAF_LO,
    R_VEHICLES,
    T_FIRE_MODE,
    T_RIGHT,
    T_TAG,
    T_TRIGGER,
    place_vehicle,
)
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
from takeover.envs.streams import EPISODE, KEY, start, uniform

FAR = 1e18
TRIES = 30  # placement attempts per traffic car
MIXED_SCENARIO = -1.0  # rp[R_SCENARIO] of the mixed world (else the hazard's code, 0: none)


def reset_params(cfg: HighwayConfig) -> np.ndarray:
    """The reset's parameters as one float64 row (columns ``hazards.base.R_*``), built from
    ``cfg`` and the registry when an env is made."""
    codes = [h.code for h in HAZARDS.values()]
    table = R_MIXED + len(MIXED)
    rp = np.zeros(table + R_PER_CODE * (max(codes) + 1))
    rp[R_LANES], rp[R_LANE_W], rp[R_VEHICLES] = cfg.lanes, cfg.lane_width, cfg.vehicles
    rp[R_EGO_LO], rp[R_EGO_HI] = cfg.ego_speed
    rp[R_TRAF_LO], rp[R_TRAF_HI] = cfg.traffic_speed
    rp[R_ONSET_LO], rp[R_ONSET_HI] = cfg.onset
    rp[R_MAX_STEPS] = cfg.max_steps
    hazard = HAZARDS.get(cfg.scenario)
    rp[R_SCENARIO] = (MIXED_SCENARIO if cfg.scenario == "mixed"
                      else 0.0 if hazard is None else hazard.code)
    rp[R_N_MIXED] = len(MIXED)
    rp[R_MIXED:table] = [HAZARDS[name].code for name in MIXED]
    for h in HAZARDS.values():
        row = rp[table + R_PER_CODE * h.code:]
        row[T_TAG], row[T_TRIGGER], row[T_FIRE_MODE] = stream_tag(h.name), h.trigger, h.fire_mode
        row[T_RIGHT] = 1.0 if h.start_lane == "right" else 0.0
    return rp


@njit(cache=True)
def reset_world(veh, wld, rng, rp, st, keep):
    """Fill one world's arrays (``veh`` ``(M, VEH_COLS)``, ``wld`` ``(WLD_COLS,)``) with
    episode ``rng[EPISODE]`` of key ``rng[KEY]``, advance ``rng[EPISODE]`` and return the
    hazard code (0: none). ``st`` (1 uint64) and ``keep`` (``(1 + MAX_KEEP_OUT, 3)``) are
    scratch."""
    veh[:] = 0.0
    wld[:] = 0.0
    key, episode = rng[KEY], rng[EPISODE]
    rng[EPISODE] = episode + np.uint64(1)
    w = rp[R_LANE_W]
    n = rp[R_LANES]
    start(st, key, episode, 0)
    u_hazard, u_lane, u_speed = uniform(st), uniform(st), uniform(st)
    code = int(rp[R_SCENARIO])
    if code < 0:
        nm = int(rp[R_N_MIXED])
        code = int(rp[R_MIXED + min(int(u_hazard * nm), nm - 1)])
    table = R_MIXED + int(rp[R_N_MIXED]) + R_PER_CODE * code
    wld[L.HZ_T_ACTIVE] = np.nan
    wld[L.HZ_IDX] = -1.0
    wld[L.HZ_X] = wld[L.HZ_XEND] = wld[L.HZ_END] = FAR
    wld[L.HZ_ONSET] = FAR
    wld[L.HZ_FIRE_MODE] = -1.0
    right = code > 0 and rp[table + T_RIGHT] > 0.5
    ego_lane = n - 1.0 if right else float(min(int(u_lane * n), int(n) - 1))
    v_ego = rp[R_EGO_LO] + (rp[R_EGO_HI] - rp[R_EGO_LO]) * u_speed
    place_vehicle(veh, 0, L.EGO, 0.0, ego_lane, v_ego, w, 5.0, 2.0, L.NORMAL)
    wld[L.TGT_SPEED] = v_ego
    wld[L.TGT_LANE] = ego_lane
    wld[L.MRM_LANE] = ego_lane
    # keep-out zones (lane, x_lo, x_hi) where traffic must not spawn
    keep[0, 0], keep[0, 1], keep[0, 2] = ego_lane, -25.0, 45.0
    zones = 1
    nv = int(rp[R_VEHICLES])
    if code > 0:
        hz = st.copy()
        start(hz, key, episode, np.uint64(int(rp[table + T_TAG])))
        lo, hi = rp[R_ONSET_LO], rp[R_ONSET_HI]
        onset = lo + (hi - lo) * uniform(hz)
        severity = uniform(hz)
        wld[L.HZ_KIND] = code
        wld[L.HZ_ONSET] = onset
        wld[L.HZ_SEV] = severity
        wld[L.HZ_TRIGGER] = rp[table + T_TRIGGER]
        wld[L.HZ_FIRE_MODE] = rp[table + T_FIRE_MODE]
        zones += place_hazard(code, veh, wld, rp, hz, 1 + nv, ego_lane, v_ego, onset,
                              severity, keep[1:])
    spawn_traffic(veh, keep[:zones], st, nv, w, rp[R_TRAF_LO], rp[R_TRAF_HI], n)
    return code


@njit(cache=True)
def spawn_traffic(veh, keep_out, st, nv, w, v_lo, v_hi, lanes):
    """Place traffic car ``i`` (1..nv) at its first candidate (lane, x in -100..200 m)
    outside the keep-out zones and at least 15 m from every car already in that lane; a car
    without a fit in ``TRIES`` candidates stays out of the episode."""
    m = veh.shape[0]
    for i in range(1, 1 + nv):
        d0, d1, d2, d3 = uniform(st), uniform(st), uniform(st), uniform(st)
        d4, d5, d6 = uniform(st), uniform(st), uniform(st)
        for _ in range(TRIES):
            lane = float(min(int(uniform(st) * lanes), int(lanes) - 1))
            x = -100.0 + 300.0 * uniform(st)
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
            r = veh[i]
            r[X], r[Y], r[LANE], r[LEN], r[WID], r[KIND] = x, lane * w, lane, 5.0, 2.0, CAR
            r[V0] = v_lo + (v_hi - v_lo) * d0
            r[THW] = 1.0 + 0.8 * d1
            r[AMAX] = 1.0 + 1.0 * d2
            r[BCOMF] = 1.5 + 1.0 * d3
            r[S0] = 2.0 + 1.0 * d4
            r[POLITE] = 0.5 * d5
            r[V] = r[V0] * (0.9 + 0.1 * d6)
            break


@njit(cache=True)
def reset_scratch():
    """``reset_world``'s scratch: its stream and keep-out rows (one per batch)."""
    return np.zeros(1, dtype=np.uint64), np.zeros((1 + MAX_KEEP_OUT, 3))


# --- numba's disk cache and the hazard registry -------------------------------------------
HAZARDS_STAMP = registry_stamp()


@njit(cache=True)
def _compiled_stamp():
    """``HAZARDS_STAMP`` as it was when this module's cached code was compiled."""
    return HAZARDS_STAMP


def drop_stale_cache() -> bool:
    """Numba keys a cached function on its own file only, so after a hazard is added or
    edited the cached reset (and the kernel step that inlines it) would still call the old
    registry's hazards: a new hazard would place nothing. When the stamp compiled into
    this module's cache differs from the registry's, delete the cache indexes of this
    folder and of the hazards (numba recompiles on first use) and say so; True if it did."""
    if _compiled_stamp() == HAZARDS_STAMP:
        return False
    dirs = {getattr(getattr(f, "_cache", None), "_cache_path", None)
            for f in (_compiled_stamp, *(h.place for h in HAZARDS.values()))}
    for d in sorted(str(d) for d in dirs if d):
        for index in Path(d).glob("*.nbi"):
            index.unlink(missing_ok=True)
    import warnings

    warnings.warn("the hazard registry changed since numba cached the world's kernel: "
                  "recompiling it (once, about a minute)", stacklevel=2)
    return True


drop_stale_cache()
