"""N scripted humans, one per world, held as arrays and advanced by one numba call per step.

Per world and step (``ScriptedHumans.act``):

* control held (phase ``HUMAN``): drive (``driving.controls``), giving the action and the
  intent it realises (``HumanInputs.intent``); hand back after ``calm_time`` s of calm once
  ``min_control`` s have passed;
* a request pending (``tor_active`` or phase ``TOR``/``FALLBACK``): on its first step decide
  whether it is missed (a lapse) and draw ``z``; take control once the request's elapsed
  time reaches the takeover time (``params`` module); a lapsed human stays unresponsive
  (also to danger) until the request ends;
* the automation driving: accumulate complacency; if TTC < ``danger_ttc``, take over after
  a danger reaction time (cancelled if the danger passes first).

Random draws come from a counter-based generator (SplitMix64's mixer applied to key +
counter, as in Java's ``SplittableRandom``): each world holds three keys derived from its
episode seed only (one stream each for requests, reactions and motor noise) and a counter per
stream, so a world's draws are the same whatever the batch size or the other worlds do, and a
change to, say, the action noise leaves the takeover times of the same seed unchanged (common
random numbers for sensitivity sweeps).
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
from numba import njit

from takeover.envs import layout as L
from takeover.types import PHASES, HumanInputs, HumanViews, Phase

from .driving import controls, meta_action
from .params import FIELDS, HumanParams, as_vector, make_params

# --- the generator -----------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_NEXT_EPISODE = np.uint64(0xD1B54A32D192ED03)
REQUEST, REACTION, MOTOR = 0, 1, 2  # the streams
N_STREAMS = 3


@njit(cache=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _uniform(key, ctr, n, s):
    """A uniform in (0, 1) from world ``n``'s stream ``s``."""
    c = ctr[n, s] + np.uint64(1)
    ctr[n, s] = c
    x = _mix(key[n, s] + c * _GOLDEN)
    return (float(x >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _normal(key, ctr, n, s):
    """A standard normal (Box-Muller on two uniforms)."""
    u1 = _uniform(key, ctr, n, s)
    u2 = _uniform(key, ctr, n, s)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True)
def _seed_keys(key, ctr, worlds, seeds, has_seed):
    for k in range(worlds.shape[0]):
        n = worlds[k]
        for s in range(N_STREAMS):
            if has_seed[k]:
                key[n, s] = _mix(_mix(np.uint64(seeds[k]) + _GOLDEN * np.uint64(s + 1)) ^ _M2)
            else:  # a new episode without a seed: continue deterministically from the last
                key[n, s] = _mix(key[n, s] ^ _NEXT_EPISODE)
            ctr[n, s] = np.uint64(0)


# --- parameter indices -----------------------------------------------------------------
_H = {name: i for i, name in enumerate(FIELDS)}
H_FLOOR, H_MEDIAN, H_SHIFT, H_SIGMA = (_H["reaction_floor"], _H["takeover_median"],
                                       _H["takeover_shift"], _H["takeover_sigma"])
H_TMAX, H_URGENT, H_LAPSE = _H["takeover_max"], _H["urgent_factor"], _H["lapse_prob"]
H_TAU, H_SLOW, H_CLAPSE = (_H["complacency_tau"], _H["complacency_slowdown"],
                           _H["complacency_lapse"])
H_DANGER_TTC, H_REACT, H_RSIGMA = _H["danger_ttc"], _H["danger_reaction"], _H["reaction_sigma"]
H_SNOISE, H_ANOISE, H_RHO = _H["steer_noise"], _H["accel_noise"], _H["noise_rho"]
H_WRONG, H_CALM_TTC, H_CALM_T, H_MIN_CTRL = (_H["wrong_action_prob"], _H["calm_ttc"],
                                             _H["calm_time"], _H["min_control"])

# --- state columns (one float64 row per world) -------------------------------------------
(S_AUTO, S_LAST_T, S_TOR, S_Z, S_TOR_START, S_LAPSED, S_TOR_T, S_DANGER_AT, S_CONTROL,
 S_CONTROL_SINCE, S_CALM_SINCE, S_NOISE0, S_NOISE1, S_TARGET_LANE, S_AWARE, S_REACT_AT,
 S_HELD_ACC, S_SIGNAL_LANE) = range(18)
STATE_COLS = 18
BRAKE_NEED = 2.0  # m/s^2; asked to brake harder than this, a human needs a reaction time
BRAKE_RELAX = 1.0  # m/s^2; below this the need has passed (the next one is a new stimulus)

_AGENT, _TOR, _HUMAN, _FALLBACK = (PHASES.index(p) for p in
                                   (Phase.AGENT, Phase.TOR, Phase.HUMAN, Phase.FALLBACK))


@njit(cache=True)
def _complacency(hp, auto_t):
    return 1.0 - math.exp(-auto_t / hp[H_TAU])


@njit(cache=True)
def takeover_time(hp, z, urgency, c):
    """The takeover time at normal score ``z`` (``HumanParams.takeover_time``)."""
    if hp[H_MEDIAN] == 0.0:
        return 0.0
    f = hp[H_FLOOR]
    above = (hp[H_SHIFT] - f) + (hp[H_MEDIAN] - hp[H_SHIFT]) * math.exp(hp[H_SIGMA] * z)
    u = min(max(urgency, 0.0), 1.0)
    t = f + above * (1.0 + hp[H_SLOW] * c) * (1.0 - u * (1.0 - hp[H_URGENT]))
    return min(t, hp[H_TMAX])


@njit(cache=True)
def reaction_time(hp, z, c):
    """The danger / brake reaction time at normal score ``z``."""
    if hp[H_REACT] == 0.0:
        return 0.0
    f = hp[H_FLOOR]
    return f + (hp[H_REACT] - f) * math.exp(hp[H_RSIGMA] * z) * (1.0 + hp[H_SLOW] * c)


@njit(cache=True)
def _take_control(st, n, t):
    st[n, S_CONTROL] = 1.0
    st[n, S_CONTROL_SINCE] = t
    st[n, S_CALM_SINCE] = np.nan
    st[n, S_DANGER_AT] = np.nan
    st[n, S_TOR] = 0.0
    st[n, S_AUTO] = 0.0  # a takeover restores attention
    st[n, S_TARGET_LANE] = np.nan
    st[n, S_SIGNAL_LANE] = np.nan
    st[n, S_AWARE] = 1.0  # the takeover itself was the reaction
    st[n, S_REACT_AT] = np.nan
    st[n, S_NOISE0] = 0.0
    st[n, S_NOISE1] = 0.0


@njit(cache=True)
def _drive(n, t, ttc, hz_active, vw, ww, p, hp, st, key, ctr, act_c, act_d, intent, wants,
           releases):
    """World ``n``'s action (``act_c`` or ``act_d``) and the intent it realises
    (``intent[n]``: acceleration m/s^2, lane wanted relative to the ego's lane now).

    The intent is the acceleration and lane the action is chosen to realise (during a brake
    reaction time, the acceleration still held), before motor noise or a wrong-action slip:
    a learner imitating it learns what the human meant, not
    its slips. The lane follows ``meta_action``'s rule (standing still behind an obstacle
    with a signal set, the human wants the lane it signals toward); so does the acceleration
    for discrete actions (capped at 0 there: the meta-action holds the car still), while a
    continuous action realises the acceleration as it is (the human creeps up to the
    obstacle)."""
    calm = ttc > hp[H_CALM_TTC] and not hz_active
    if not calm:
        st[n, S_CALM_SINCE] = np.nan
    elif math.isnan(st[n, S_CALM_SINCE]):
        st[n, S_CALM_SINCE] = t
    rel = (not math.isnan(st[n, S_CALM_SINCE]) and t - st[n, S_CALM_SINCE] >= hp[H_CALM_T]
           and t - st[n, S_CONTROL_SINCE] >= hp[H_MIN_CTRL])
    releases[n] = rel
    wants[n] = not rel
    discrete = p[L.DISCRETE] > 0.5
    steer, acc, tl, sl = controls(vw, p, hp, st[n, S_TARGET_LANE], st[n, S_SIGNAL_LANE],
                                  ww[L.TGT_LANE] if discrete else np.nan)
    st[n, S_TARGET_LANE] = tl
    st[n, S_SIGNAL_LANE] = sl
    # brake reaction: a new need to brake is acted on only after a reaction time
    if acc < -BRAKE_NEED:
        if st[n, S_AWARE] == 0.0:
            if math.isnan(st[n, S_REACT_AT]):
                st[n, S_REACT_AT] = t + reaction_time(hp, _normal(key, ctr, n, REACTION), 0.0)
            if t >= st[n, S_REACT_AT]:
                st[n, S_AWARE] = 1.0
            else:
                acc = st[n, S_HELD_ACC]  # the foot has not moved yet
    elif acc > -BRAKE_RELAX:
        st[n, S_AWARE] = 0.0
        st[n, S_REACT_AT] = np.nan
    st[n, S_HELD_ACC] = acc
    w = p[L.LANE_W]
    lane_now = min(max(math.floor(vw[0, L.Y] / w + 0.5), 0.0), p[L.N_LANES])
    want_lane, want_acc = tl, acc
    if not math.isnan(sl) and vw[0, L.V] < 0.5:  # ``meta_action``'s rule
        want_lane = sl
        if discrete:
            want_acc = min(acc, 0.0)
    intent[n, 0] = want_acc
    intent[n, 1] = want_lane - lane_now
    if discrete:
        a = meta_action(vw, ww, p, hp, acc, tl, sl)
        if hp[H_WRONG] > 0.0 and _uniform(key, ctr, n, MOTOR) < hp[H_WRONG]:
            other = min(int(_uniform(key, ctr, n, MOTOR) * (len(L.META_ACTIONS) - 1)),
                        len(L.META_ACTIONS) - 2)
            a = other + (1 if other >= a else 0)
        act_d[n] = a
        return
    a0 = steer / p[L.STEER_MAX]
    a1 = acc / (p[L.ACC_MAX] if acc > 0.0 else p[L.BRAKE_MAX])
    if hp[H_SNOISE] > 0.0 or hp[H_ANOISE] > 0.0:
        rho = hp[H_RHO]
        k = math.sqrt(1.0 - rho * rho)
        st[n, S_NOISE0] = rho * st[n, S_NOISE0] + k * hp[H_SNOISE] * _normal(key, ctr, n, MOTOR)
        st[n, S_NOISE1] = rho * st[n, S_NOISE1] + k * hp[H_ANOISE] * _normal(key, ctr, n, MOTOR)
        a0 += st[n, S_NOISE0]
        a1 += st[n, S_NOISE1]
    act_c[n, 0] = min(max(a0, -1.0), 1.0)
    act_c[n, 1] = min(max(a1, -1.0), 1.0)


@njit(cache=True)
def _act(phase, tor_active, tor_elapsed, urgency, time, ttc, hz_active, veh, wld, p, hp, st,
         key, ctr, act_c, act_d, intent, has_action, wants, releases):
    for n in range(phase.shape[0]):
        t = time[n]
        last = st[n, S_LAST_T]
        dt = 0.0 if math.isnan(last) else max(0.0, t - last)
        st[n, S_LAST_T] = t
        has_action[n] = False
        intent[n, 0] = np.nan
        intent[n, 1] = np.nan
        wants[n] = False
        releases[n] = False
        if phase[n] == _HUMAN:
            if st[n, S_CONTROL] == 0.0:
                _take_control(st, n, t)
            has_action[n] = True
            _drive(n, t, ttc[n], hz_active[n], veh[n], wld[n], p, hp, st, key, ctr, act_c,
                   act_d, intent, wants, releases)
            continue
        st[n, S_CONTROL] = 0.0
        c = _complacency(hp, st[n, S_AUTO])
        if tor_active[n] or phase[n] == _TOR or phase[n] == _FALLBACK:
            if st[n, S_TOR] == 0.0:  # a new request: lapse or not, and how fast
                st[n, S_TOR] = 1.0
                st[n, S_TOR_START] = t - tor_elapsed[n]
                lapse = min(1.0, hp[H_LAPSE] + hp[H_CLAPSE] * c)
                st[n, S_LAPSED] = 1.0 if _uniform(key, ctr, n, REQUEST) < lapse else 0.0
                st[n, S_Z] = _normal(key, ctr, n, REQUEST)
                st[n, S_TOR_T] = takeover_time(hp, st[n, S_Z], urgency[n], c)
            if st[n, S_LAPSED] != 0.0:
                continue
            elapsed = tor_elapsed[n] if tor_active[n] else t - st[n, S_TOR_START]
            if elapsed >= takeover_time(hp, st[n, S_Z], urgency[n], c):
                _take_control(st, n, t)
                has_action[n] = True
                _drive(n, t, ttc[n], hz_active[n], veh[n], wld[n], p, hp, st, key, ctr,
                       act_c, act_d, intent, wants, releases)
            continue
        st[n, S_TOR] = 0.0
        st[n, S_LAPSED] = 0.0
        st[n, S_AUTO] += dt
        if ttc[n] < hp[H_DANGER_TTC]:  # human-gated mode: take over on perceived danger
            if math.isnan(st[n, S_DANGER_AT]):
                st[n, S_DANGER_AT] = t + reaction_time(hp, _normal(key, ctr, n, REACTION), c)
            if t >= st[n, S_DANGER_AT]:
                _take_control(st, n, t)
                has_action[n] = True
                _drive(n, t, ttc[n], hz_active[n], veh[n], wld[n], p, hp, st, key, ctr,
                       act_c, act_d, intent, wants, releases)
        elif ttc[n] > 1.5 * hp[H_DANGER_TTC]:
            st[n, S_DANGER_AT] = np.nan


@njit(cache=True)
def _sample(hp, n, urgency, c, key, ctr, which):
    out = np.empty(n)
    for i in range(n):
        if which == 0:
            out[i] = takeover_time(hp, _normal(key, ctr, 0, REQUEST), urgency, c)
        else:
            out[i] = reaction_time(hp, _normal(key, ctr, 0, REACTION), c)
    return out


def _sampler_keys(seed: int) -> tuple[np.ndarray, np.ndarray]:
    key = np.zeros((1, N_STREAMS), dtype=np.uint64)
    ctr = np.zeros((1, N_STREAMS), dtype=np.uint64)
    _seed_keys(key, ctr, np.zeros(1, dtype=np.int64), np.array([seed], dtype=np.uint64),
               np.ones(1, dtype=bool))
    return key, ctr


def sample_takeover_times(params: HumanParams, n: int, urgency: float = 0.0,
                          complacency: float = 0.0, seed: int = 0) -> np.ndarray:
    """``n`` takeover times (s) drawn as the humans draw them (same generator, same model)."""
    return _sample(as_vector(params), int(n), float(urgency), float(complacency),
                   *_sampler_keys(seed), 0)


def sample_reaction_times(params: HumanParams, n: int, complacency: float = 0.0,
                          seed: int = 0) -> np.ndarray:
    """``n`` danger / brake reaction times (s)."""
    return _sample(as_vector(params), int(n), 0.0, float(complacency), *_sampler_keys(seed), 1)


# --- the batched humans ------------------------------------------------------------------
def _world_arrays(world: Any, n: int) -> tuple[np.ndarray, np.ndarray, Any]:
    try:
        veh, wld, cfg = world.vehicles, world.world, world.config
    except AttributeError:
        raise TypeError(
            f"scripted humans drive by reading the true world state: {type(world).__name__} "
            "has no vehicles / world / config arrays (pass the takeover world, e.g. a "
            "HighwayVectorEnv, or use a live human through PerWorldHumans)") from None
    if veh.ndim != 3 or veh.shape[0] != n or wld.shape[0] != n:
        raise ValueError(f"world arrays have shapes {veh.shape} and {wld.shape}; expected "
                         f"({n}, S, C) and ({n}, W) for {n} humans")
    return veh, wld, cfg


class ScriptedHumans:
    """``num_worlds`` scripted humans of one preset, implementing ``takeover.types.Humans``.

    Args:
        num_worlds: N, the number of worlds (one human each).
        skill: a preset of :data:`~takeover.supervisor.humans.SKILLS` (``expert``,
            ``average``, ``novice``, ``perfect``).
        **overrides: any :class:`HumanParams` field, e.g. ``lapse_prob=0``.

    State is a ``(N, STATE_COLS)`` float64 array plus the generator's keys and counters; one
    ``act`` is one numba call over all worlds. ``reset`` must be called for a world before
    its first ``act`` (unseeded worlds draw fresh entropy).
    """

    def __init__(self, num_worlds: int = 1, skill: str = "average", **overrides: Any) -> None:
        if not isinstance(num_worlds, (int, np.integer)) or num_worlds < 1:
            raise ValueError(f"num_worlds must be a positive integer, got {num_worlds!r}")
        self.num_worlds = n = int(num_worlds)
        self.skill = skill
        self.params = make_params(skill, **overrides)
        self._hp = as_vector(self.params)
        self.state = np.zeros((n, STATE_COLS))
        self._key = np.zeros((n, N_STREAMS), dtype=np.uint64)
        self._ctr = np.zeros((n, N_STREAMS), dtype=np.uint64)
        self._seeded = np.zeros(n, dtype=bool)
        self._cfg: Any = None
        self._p = np.zeros(0)
        self._act_c = np.zeros((n, 2), dtype=np.float32)
        self._act_d = np.zeros(n, dtype=np.int64)
        self._intent = np.full((n, 2), np.nan)
        self.reset(np.arange(n), [None] * n)

    def reset(self, worlds: np.ndarray, seeds: list[int | None]) -> None:
        worlds = np.asarray(worlds, dtype=np.int64).reshape(-1)
        if len(seeds) != len(worlds):
            raise ValueError(f"got {len(seeds)} seeds for {len(worlds)} worlds")
        if len(worlds) and (worlds.min() < 0 or worlds.max() >= self.num_worlds):
            raise IndexError(f"world indices must be in 0..{self.num_worlds - 1}")
        has = np.array([s is not None for s in seeds], dtype=bool)
        # a world never seeded and reset without a seed draws fresh entropy (per event)
        fresh = ~has & ~self._seeded[worlds]
        vals = [s if s is not None
                else (cast(int, np.random.SeedSequence().entropy) % 2**63 if f else 0)
                for s, f in zip(seeds, fresh, strict=True)]
        has |= fresh
        for s in vals:
            if not 0 <= s < 2**64:
                raise ValueError(f"seed {s} must be in 0..2**64-1")
        _seed_keys(self._key, self._ctr, worlds, np.array(vals, dtype=np.uint64), has)
        self._seeded[worlds] = True
        st = self.state
        st[worlds] = 0.0
        st[worlds, S_AUTO] = self.params.initial_automation
        for col in (S_LAST_T, S_DANGER_AT, S_CALM_SINCE, S_TARGET_LANE, S_SIGNAL_LANE,
                    S_REACT_AT, S_TOR_T):
            st[worlds, col] = np.nan

    def act(self, obs: np.ndarray, info: dict[str, Any], world: Any,
            views: HumanViews) -> HumanInputs:
        n = self.num_worlds
        veh, wld, cfg = _world_arrays(world, n)
        if cfg is not self._cfg:
            self._cfg, self._p = cfg, cfg.params()
        ttc = info.get("ttc")
        ttc = np.full(n, L.TTC_MAX) if ttc is None else np.asarray(ttc, dtype=np.float64)
        hz = info.get("hazard_active")
        hz = np.zeros(n, dtype=bool) if hz is None else np.asarray(hz, dtype=bool)
        has, wants, rel = np.zeros((3, n), dtype=bool)
        _act(np.asarray(views.phase, dtype=np.int8), np.asarray(views.tor_active, dtype=bool),
             np.asarray(views.tor_elapsed, dtype=np.float64),
             np.asarray(views.urgency, dtype=np.float64), np.asarray(views.time, dtype=np.float64),
             ttc, hz, veh, wld, self._p, self._hp, self.state, self._key, self._ctr,
             self._act_c, self._act_d, self._intent, has, wants, rel)
        action = (self._act_d.copy() if cfg.action_type == "discrete" else self._act_c.copy())
        action[~has] = 0  # rows without an action carry no stale values
        return HumanInputs(action=action, has_action=has, wants_control=wants, releases=rel,
                           intent=self._intent.astype(np.float32))

    # --- read-outs (tests, plots) ------------------------------------------------------
    @property
    def complacency(self) -> np.ndarray:
        """``(N,)`` current complacency, 0..1."""
        return 1.0 - np.exp(-self.state[:, S_AUTO] / self.params.complacency_tau)

    @property
    def last_takeover_time(self) -> np.ndarray:
        """``(N,)`` s, the takeover time drawn for the latest request (NaN before any)."""
        return self.state[:, S_TOR_T].copy()


class AbsentHumans:
    """Nobody answers and nobody takes over: exercises the fallback (minimal-risk) path."""

    def __init__(self, num_worlds: int = 1) -> None:
        if not isinstance(num_worlds, (int, np.integer)) or num_worlds < 1:
            raise ValueError(f"num_worlds must be a positive integer, got {num_worlds!r}")
        self.num_worlds = int(num_worlds)

    def reset(self, worlds: np.ndarray, seeds: list[int | None]) -> None:
        if len(seeds) != len(np.asarray(worlds).reshape(-1)):
            raise ValueError(f"got {len(seeds)} seeds for {len(worlds)} worlds")

    def act(self, obs: np.ndarray, info: dict[str, Any], world: Any,
            views: HumanViews) -> HumanInputs:
        n = self.num_worlds
        discrete = getattr(getattr(world, "config", None), "action_type", "") == "discrete"
        action = np.zeros(n, dtype=np.int64) if discrete else np.zeros((n, 2), np.float32)
        no = np.zeros(n, dtype=bool)
        return HumanInputs(action=action, has_action=no, wants_control=no.copy(),
                           releases=no.copy())
