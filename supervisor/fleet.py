"""Fleet supervision: H humans for N worlds, as one :class:`~takeover.types.Humans`.

Fleet-DAgger (Hoque et al. 2022) and its IFL benchmark give a few humans a fleet of robots;
a remote-operations desk gives a few operators a fleet of vehicles. :class:`FleetHumans`
wraps N per-world human models (any batched ``Humans``: how one person reacts once they look
at a world and how they drive it) and lets at most H of them be present at once:

* a world *waits* while its takeover request (or its minimal-risk manoeuvre after the
  request timed out) has no human with it; an allocation policy (``ALLOCATIONS``) ranks the
  waiting worlds and free humans go to the best ranked;
* a human going to a world other than the one they left first pays ``context_switch_time``
  s (rebuilding situational awareness) during which they give no input; after it the
  per-world model sees the request as if just issued, so its own takeover time follows;
* a human stays at least ``min_intervention_time`` s (Fleet-DAgger's ``min_int_time``)
  from the start of their intervention: the later of the end of their context switch and
  the moment they took control (Fleet-DAgger's oracle humans act at once and switch for
  free; the minimum protects the intervention, not the switch or the reaction): an earlier
  hand-back by the per-world model is held off; after it, with ``preempt``, a human is
  moved (handing control back to the agent) to a waiting world the policy ranks strictly
  above theirs on its keys (never for the random tie-break between equals, which would
  move humans back and forth between equal worlds, paying a context switch each time);
* an episode that leaves the car wrecked, off the road or at rest short of its
  destination (:data:`RECOVERY_OUTCOMES`: Fleet-DAgger's constraint violation, whose robot
  waits for a human's hard reset; a time-out resets for free, as in the IFL benchmark)
  takes the world out of service until a human has spent ``hard_reset_time`` s recovering
  it (the human who was with it starts at once; an unattended one waits to be allocated
  like a request: a constraint violation for the C key, and the lowest risk and
  uncertainty, since its failure already happened and no human can prevent it now; scored
  as maximal risk, as it was, wrecks took every human first under the risk priority, who
  then spent 92% of their time recovering while live requests crashed unanswered). Episodes a world plays while
  out of service count for nothing (as a blocked robot earns no reward in Fleet-DAgger):
  not as arrivals, failures or episodes (``lost_episodes`` counts them);
* a world without a human gets no input, so the engine's handover falls back to the
  minimal-risk manoeuvre when the request times out;
* a *pinned* human (:meth:`FleetHumans.pin`: a live person, ``takeover drive --fleet``) is
  one of the H but goes where :meth:`FleetHumans.place` puts them, never where the policy
  sends them; they pay no modelled context switch (a person's own is real) and no minimum
  intervention time, and stay in their world across its episodes until placed elsewhere.

The engine is untouched except for two optional hooks it calls on humans that define them:
``observe_scores(scores)`` before ``act`` (the step's estimator scores, for risk and
uncertainty priorities) and ``end_episodes(worlds, info)`` when episodes end (for resets,
arrivals and failures while waiting). Everything is arrays over N worlds and H humans; the
only loop is over the humans being (re)assigned this step (at most H).

Time is the fleet's clock: ``dt`` s per engine step, the same for every world (episode times
restart per world). :meth:`FleetHumans.stats` reduces the bookkeeping to :class:`FleetStats`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from takeover.config import option, validate
from takeover.types import HumanInputs, HumanViews

from .allocation import ALLOCATIONS, FleetState, above, rank

AGENT, TOR, HUMAN, FALLBACK = 0, 1, 2, 3

RECOVERY_OUTCOMES = ("collision", "off_road", "stopped", "stopped_in_lane", "pulled_over")
"""Outcomes whose world needs a human's recovery: ``metric_definitions.RECOVERY_OUTCOMES``
(the one ROHE definition), copied so the supervisor imports no later layer; a test checks
the two are equal."""


@dataclass(frozen=True)
class FleetConfig:
    """The fleet's humans and their cost model (Fleet-DAgger's ``num_humans``,
    ``min_int_time``, ``hard_reset_time``, ``allocation``, plus a context-switch cost)."""

    num_humans: int = option(1, "humans supervising the fleet (H)", range=(1, 10_000))
    allocation: str = option("constraint", "which waiting world gets a free human (ALLOCATIONS)",
                             choices=lambda: ALLOCATIONS.names())
    allocation_kwargs: dict[str, Any] = option(None, "keyword arguments of the policy",
                                               factory=dict)
    min_intervention_time: float = option(
        3.0, "s a human stays with a world once assigned (Fleet-DAgger min_int_time)",
        range=(0.0, 600.0))
    context_switch_time: float = option(
        2.0, "s a human needs in a new world before acting (situational awareness)",
        range=(0.0, 600.0))
    hard_reset_time: float = option(
        10.0, "s of a human's time recovering a car after an episode ending in "
        "RECOVERY_OUTCOMES (wrecked, off road, or at rest short of its destination)",
        range=(0.0, 3600.0))
    preempt: bool = option(True, "move a human past min_intervention_time to a waiting "
                                 "world the policy ranks higher")
    seed: int = option(0, "seeds the policy's tie-breaks and random draws",
                       range=(0, 2**63 - 1))

    def __post_init__(self) -> None:
        validate(self, "fleet")


def arrived(info: Mapping[str, Any], i: int, phase: int) -> bool:
    """World ``i``'s episode ended in an arrival: ``info["outcome"] == "arrived"`` on worlds
    that report outcomes; on older worlds, reaching the time limit not in the minimal-risk
    manoeuvre (``reason == "time_limit"`` while not in phase FALLBACK)."""
    if "outcome" in info:
        return str(info["outcome"][i]) == "arrived"
    reason = str(info["reason"][i]) if "reason" in info else ""
    return reason == "time_limit" and phase != FALLBACK


def needs_recovery(info: Mapping[str, Any], worlds: np.ndarray) -> np.ndarray:
    """``(len(worlds),)``: the episode ended in a :data:`RECOVERY_OUTCOMES` outcome (on
    worlds that report no outcome: a collision or off-road exit)."""
    if "outcome" in info:
        out = np.asarray(info["outcome"])[worlds].astype(str)
        return np.isin(out, RECOVERY_OUTCOMES)
    return failed(info, worlds)


def failed(info: Mapping[str, Any], worlds: np.ndarray) -> np.ndarray:
    """``(len(worlds),)``: a collision or off-road exit (the fleet's constraint violation)."""
    if "outcome" in info:
        out = np.asarray(info["outcome"])[worlds].astype(str)
        return (out == "collision") | (out == "off_road")
    col = np.asarray(info.get("collision", np.zeros(len(worlds) and worlds.max() + 1)))
    off = np.asarray(info.get("offroad", np.zeros_like(col)))
    return col[worlds].astype(bool) | off[worlds].astype(bool)


@dataclass
class FleetStats:
    """What one fleet run measured (times in s of the fleet clock unless named otherwise).

    ROHE is not computed here: it is defined once, in
    ``takeover.experiments.metric_definitions.rohe`` (a later layer), from :attr:`arrivals`
    and :attr:`human_effort` (``summary()["human_effort_s"]``).
    """

    num_worlds: int
    num_humans: int
    clock: float
    arrivals: int
    episodes: int
    failures: int
    failures_waiting: int
    fallbacks: int
    hard_resets: int
    human_busy: float
    human_switching: float
    human_resetting: float
    human_idle: float
    world_waiting: float
    waits: list[float] = field(default_factory=list)
    switches: int = 0
    preemptions: int = 0
    lost_episodes: int = 0
    out_of_service: float = 0.0
    owed: float = 0.0

    @property
    def hours(self) -> float:
        return self.clock / 3600.0

    @property
    def human_minutes(self) -> float:
        return self.human_busy / 60.0

    @property
    def human_effort(self) -> float:
        """ROHE's human-seconds: the time humans were assigned to worlds (switching in,
        driving, recovering) plus :attr:`owed`, the recoveries still to do when the run
        ended (a run that leaves its wrecks for later did not save that effort)."""
        return self.human_busy + self.owed

    def summary(self) -> dict[str, float]:
        """Flat numbers for tables and plots (NaN where undefined)."""
        hh = self.num_humans * self.clock
        waits = np.asarray(self.waits, dtype=float)
        return {
            "N": float(self.num_worlds), "H": float(self.num_humans),
            "N_per_H": self.num_worlds / self.num_humans, "hours": self.hours,
            "episodes": float(self.episodes), "arrivals": float(self.arrivals),
            "throughput_per_hour": self.arrivals / self.hours if self.clock else math.nan,
            "arrival_rate": self.arrivals / self.episodes if self.episodes else math.nan,
            "failure_rate": self.failures / self.episodes if self.episodes else math.nan,
            "failures_waiting": float(self.failures_waiting),
            "failures_waiting_rate": (self.failures_waiting / self.episodes
                                      if self.episodes else math.nan),
            "fallback_rate": self.fallbacks / self.episodes if self.episodes else math.nan,
            "human_minutes": self.human_minutes, "human_seconds": self.human_busy,
            "human_effort_s": self.human_effort, "owed_s": self.owed,
            "human_idle_fraction": self.human_idle / hh if hh else math.nan,
            "human_switching_fraction": self.human_switching / hh if hh else math.nan,
            "human_resetting_fraction": self.human_resetting / hh if hh else math.nan,
            "worlds_waiting_mean": self.world_waiting / self.clock if self.clock else math.nan,
            "wait_mean_s": float(waits.mean()) if len(waits) else math.nan,
            "wait_p90_s": float(np.quantile(waits, 0.9)) if len(waits) else math.nan,
            "waits": float(len(waits)), "switches": float(self.switches),
            "preemptions": float(self.preemptions), "hard_resets": float(self.hard_resets),
            "lost_episodes": float(self.lost_episodes),
            "out_of_service_fraction": (self.out_of_service / (self.num_worlds * self.clock)
                                        if self.clock else math.nan),
        }


def _intent_where(hin: Any, has: np.ndarray) -> np.ndarray | None:
    """The inner humans' intent rows where the fleet lets their action through (NaN
    elsewhere), so a fleet run logs the label a plain engine run would and never a row for
    an action the fleet withheld (no human present, a forced release); ``None`` if the
    inner humans give none."""
    raw = getattr(hin, "intent", None)
    if raw is None:
        return None
    rows = np.asarray(raw, dtype=np.float32).reshape(len(has), 2)
    return np.where(has[:, None], rows, np.float32(np.nan))


class FleetHumans:
    """H humans supervising N worlds (see the module docstring), a batched
    :class:`~takeover.types.Humans`.

    Args:
        inner: the N per-world human models (a batched ``Humans``, e.g.
            ``PerWorldHumans([ScriptedHuman(...) ...])`` or ``ScriptedHumans(N, skill)``).
        num_worlds: N (must match the engine's worlds).
        config: :class:`FleetConfig` (or its fields as keywords).
        dt: s per engine step; ``None`` reads ``world.config.dt`` at the first step.
    """

    def __init__(self, inner: Any, num_worlds: int, config: FleetConfig | None = None, *,
                 dt: float | None = None, **kw: Any) -> None:
        if config is not None and kw:
            raise TypeError("pass either config or its fields as keywords, not both")
        cfg = config if config is not None else FleetConfig(**kw)
        self.inner, self.n, self.config = inner, int(num_worlds), cfg
        self.policy = ALLOCATIONS.make(cfg.allocation, **dict(cfg.allocation_kwargs))
        self.rng = np.random.default_rng(cfg.seed)
        self.dt = dt
        n, h = self.n, cfg.num_humans
        self.clock = 0.0
        # humans
        self.h_world = np.full(h, -1, dtype=np.int64)  # world assigned, -1 free
        self.h_last = np.full(h, -1, dtype=np.int64)  # the last world they were in
        self.h_ready = np.zeros(h)  # clock when the context switch is done
        self.h_pinned = np.zeros(h, dtype=bool)  # placed by hand (a live person), see pin()
        # worlds
        self.w_human = np.full(n, -1, dtype=np.int64)
        self.w_wait_start = np.full(n, math.nan)  # clock the current wait began
        self.w_blocked = np.zeros(n, dtype=bool)  # out of service: a wreck to recover
        self.w_reset_done = np.full(n, math.nan)  # clock its recovery ends (NaN: none yet)
        self.w_lost = np.zeros(n, dtype=bool)  # the running episode began out of service
        self.w_took = np.full(n, math.nan)  # clock its present human took control (NaN: no)
        self.last_served = np.full(n, -math.inf)
        self.phase = np.zeros(n, dtype=np.int8)
        self.scores: dict[str, np.ndarray] = {}
        self._force_release = np.zeros(n, dtype=bool)
        self._release_next = np.zeros(n, dtype=bool)
        self.s = FleetStats(n, h, 0.0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)

    # --- engine hooks ------------------------------------------------------------------
    def observe_scores(self, scores: Mapping[str, np.ndarray]) -> None:
        """The step's estimator scores (non-finite as ``+inf``), before :meth:`act`."""
        self.scores = dict(scores)

    def end_episodes(self, worlds: np.ndarray, info: Mapping[str, Any]) -> None:
        """Episodes of ``worlds`` ended this step (``info``: the step's final info arrays):
        count arrivals and failures, and take failed worlds out of service."""
        worlds = np.asarray(worlds, dtype=np.int64)
        bad, recover = failed(info, worlds), needs_recovery(info, worlds)
        s = self.s
        self._close_waits(worlds)  # a wait ends with its episode (arrived or not)
        for i, f, r in zip(worlds.tolist(), bad.tolist(), recover.tolist()):
            ph = int(self.phase[i])
            j = int(self.w_human[i])
            if self.w_lost[i]:
                s.lost_episodes += 1
            else:
                s.episodes += 1
                s.arrivals += arrived(info, i, ph)
                s.fallbacks += ph == FALLBACK
                if f:
                    s.failures += 1
                    present = j >= 0 and self.clock >= self.h_ready[j]
                    s.failures_waiting += (not present) and ph in (TOR, FALLBACK)
                if r:
                    self.w_blocked[i] = True
                    if j >= 0:  # the human who was there starts the recovery at once
                        self._start_reset(j, i, switch=False)
            if j >= 0 and not self.w_blocked[i]:
                self._free(j)
            self.w_lost[i] = self.w_blocked[i]

    # --- a live person among the humans ---------------------------------------------------
    def pin(self, j: int) -> None:
        """Human ``j`` is placed by hand from now on (:meth:`place`), never by the policy;
        they start in no world."""
        if not 0 <= j < self.config.num_humans:
            raise ValueError(f"human {j} does not exist: the fleet has humans 0.."
                             f"{self.config.num_humans - 1} (FleetConfig.num_humans)")
        self._free(j, force=True)
        self.h_pinned[j] = True

    def place(self, j: int, world: int) -> None:
        """Put pinned human ``j`` in ``world`` (``-1``: in none, watching the overview), from
        the next step on. A policy-sent human who was there is freed (the policy may send
        them elsewhere); a wreck there starts its recovery with ``j``."""
        if not self.h_pinned[j]:
            raise ValueError(f"human {j} is placed by the allocation policy; pin({j}) first")
        if not -1 <= world < self.n:
            raise ValueError(f"world {world} does not exist: the fleet has worlds 0..{self.n - 1}")
        if world == self.h_world[j]:
            return
        self._free(j, force=True)
        if world < 0:
            return
        k = int(self.w_human[world])
        if k >= 0:
            self._free(k, force=True)
        self.s.switches += int(self.h_last[j] != world)
        self.h_world[j], self.w_human[world] = world, j
        self.h_ready[j] = self.clock
        if self.w_blocked[world] and math.isnan(self.w_reset_done[world]):
            self._start_reset(j, world, switch=False)

    def release_next(self, world: int) -> None:
        """Hand ``world`` back to its agent at the next step (a person leaving a world they
        drive: nobody would be at its wheel)."""
        self._release_next[world] = True

    # --- the Humans protocol -------------------------------------------------------------
    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        worlds = np.asarray(worlds, dtype=np.int64)
        self.inner.reset(worlds, seeds)
        self._close_waits(worlds)
        for i in worlds.tolist():
            j = int(self.w_human[i])
            if j >= 0 and not self.w_blocked[i]:
                self._free(j)
        self.phase[worlds] = AGENT

    def act(self, obs: np.ndarray, info: Mapping[str, Any], world: Any,
            views: HumanViews) -> HumanInputs:
        if self.dt is None:
            self.dt = float(world.config.dt)
        cfg, dt = self.config, float(self.dt)
        ph = np.asarray(views.phase, dtype=np.int8)
        self.phase = ph.copy()
        took = (ph == HUMAN) & (self.w_human >= 0)  # kept from the answer, or from now
        self.w_took = np.where(took, np.where(np.isnan(self.w_took), self.clock, self.w_took),
                               math.nan)
        # recoveries that are done put their world back in service
        done = np.flatnonzero(self.w_reset_done <= self.clock + 1e-9)
        for i in done.tolist():
            self.w_blocked[i] = False
            self.w_reset_done[i] = math.nan
            self._free(int(self.w_human[i]))
        blocked = self.w_blocked
        requesting = ((np.asarray(views.tor_active, dtype=bool) | (ph == TOR) | (ph == FALLBACK))
                      & ~blocked)
        holding = (ph == HUMAN) & ~blocked
        need = requesting | holding | blocked
        self._force_release[:] = self._release_next
        self._release_next[:] = False
        # humans whose world needs them no more (withdrawn, handed back) are free
        for j in np.flatnonzero(self.h_world >= 0).tolist():
            if not need[self.h_world[j]]:
                self._free(j)
        self._assign(requesting, ph, views)
        # what the per-world models see: a request only once a human is present
        hw = self.w_human
        has = hw >= 0
        present = np.zeros(self.n, dtype=bool)
        present[has] = self.clock >= self.h_ready[hw[has]] - 1e-9
        present &= ~blocked
        ready_at = np.where(has, self.h_ready[np.maximum(hw, 0)], math.nan)
        self.last_served = np.where(has & (self.clock >= ready_at - 1e-9)
                                    & (self.last_served < ready_at), ready_at, self.last_served)
        inner_views = HumanViews(
            phase=np.where(present, ph, AGENT).astype(np.int8),
            tor_active=present & requesting,
            tor_elapsed=np.where(present & requesting, np.maximum(self.clock - ready_at, 0.0),
                                 0.0),
            urgency=np.where(present, views.urgency, 0.0), time=views.time)
        hin = self.inner.act(obs, info, world, inner_views)
        # the waits that end now: a human is present
        self._close_waits(np.flatnonzero(present & ~np.isnan(self.w_wait_start)))
        start = requesting & ~present & np.isnan(self.w_wait_start)
        self.w_wait_start[start] = self.clock - np.asarray(views.tor_elapsed)[start]
        # hold off a hand-back before the minimum intervention time
        pinned = has & self.h_pinned[np.maximum(hw, 0)]
        since = np.where(has & ~pinned, self._intervention_start(), -math.inf)
        early = self.clock - since < cfg.min_intervention_time - 1e-9
        h_rel, h_wants = np.asarray(hin.releases), np.asarray(hin.wants_control)
        rel = (present & h_rel & ~early) | self._force_release
        wants = present & (h_wants | (h_rel & early)) & ~self._force_release
        has_a = present & np.asarray(hin.has_action) & ~self._force_release
        self.w_took = np.where(wants & np.isnan(self.w_took), self.clock, self.w_took)
        # bookkeeping for this step (dt s)
        s = self.s
        busy = self.h_world >= 0
        resetting = busy & self.w_blocked[np.maximum(self.h_world, 0)]
        s.human_busy += dt * busy.sum()
        s.human_switching += dt * (busy & ~resetting & (self.clock < self.h_ready)).sum()
        s.human_resetting += dt * resetting.sum()
        s.human_idle += dt * (~busy).sum()
        s.world_waiting += dt * (requesting & ~present).sum()
        s.out_of_service += dt * blocked.sum()
        self.clock += dt
        s.clock = self.clock
        return HumanInputs(action=hin.action, has_action=has_a, wants_control=wants,
                           releases=rel, intent=_intent_where(hin, has_a))

    # --- assignment ------------------------------------------------------------------------
    def _intervention_start(self) -> np.ndarray:
        """``(N,)`` clock each world's human began intervening: the later of their arrival
        (switch done) and their taking control (NaN where no human)."""
        hw = self.w_human
        ready = np.where(hw >= 0, self.h_ready[np.maximum(hw, 0)], math.nan)
        return np.fmax(ready, self.w_took)

    def _free(self, j: int, force: bool = False) -> None:
        """Human ``j`` leaves their world (a pinned human only when ``force``d: by hand)."""
        if j < 0 or (self.h_pinned[j] and not force):
            return
        i = int(self.h_world[j])
        if i >= 0:
            self.w_human[i] = -1
            self.w_took[i] = math.nan
            self.h_last[j] = i
        self.h_world[j] = -1

    def _go(self, j: int, i: int) -> None:
        if self.h_world[j] >= 0:
            self._free(j)
        switch = self.h_last[j] != i
        self.s.switches += int(switch)
        self.h_world[j] = i
        self.w_human[i] = j
        self.h_ready[j] = self.clock + (self.config.context_switch_time if switch else 0.0)
        if self.w_blocked[i]:
            self._start_reset(j, i, switch=switch)

    def _start_reset(self, j: int, i: int, switch: bool) -> None:
        """Human ``j`` recovers world ``i``: after the switch (if any), ``hard_reset_time``."""
        cfg = self.config
        self.h_world[j], self.w_human[i] = i, j
        self.h_ready[j] = self.clock + (cfg.context_switch_time if switch else 0.0)
        self.w_reset_done[i] = self.h_ready[j] + cfg.hard_reset_time
        self.s.hard_resets += 1

    def _assign(self, requesting: np.ndarray, ph: np.ndarray, views: HumanViews) -> None:
        cfg = self.config
        free = np.flatnonzero((self.h_world < 0) & ~self.h_pinned)
        blocked = self.w_blocked
        waiting = (requesting | blocked) & (self.w_human < 0)
        movable = np.zeros(0, dtype=np.int64)
        if cfg.preempt:  # past the minimum intervention time, and not mid-recovery
            assigned = np.flatnonzero((self.h_world >= 0) & ~self.h_pinned)
            assigned = assigned[~blocked[self.h_world[assigned]]]
            start = self._intervention_start()[self.h_world[assigned]]
            movable = assigned[self.clock - start >= cfg.min_intervention_time - 1e-9]
        if not waiting.any() or (not len(free) and not len(movable)):
            return
        state = FleetState(
            waiting=waiting, constraint=(ph == FALLBACK) | blocked,
            waited=np.where(requesting, np.asarray(views.tor_elapsed, dtype=float), 0.0),
            urgency=np.asarray(views.urgency, dtype=float),
            scores={k: np.where(blocked, -math.inf, np.asarray(v, dtype=float))
                    for k, v in self.scores.items()},
            last_served=self.last_served, rng=self.rng)
        keys = self.policy.keys(state)
        order = rank(self.policy, state, keys)
        pos = np.empty(self.n, dtype=np.int64)
        pos[order] = np.arange(self.n)
        cands = [int(i) for i in order[waiting[order]]]
        for j in free.tolist():
            if not cands:
                return
            self._go(j, cands.pop(0))
        if not cands or not len(movable):
            return
        # worst-placed movable humans first, each to a better-ranked waiting world
        movable = movable[np.argsort(-pos[self.h_world[movable]])]
        for j in movable.tolist():
            if not cands:
                break
            here = int(self.h_world[j])
            if not above(keys, cands[0], here):
                continue
            if ph[here] == HUMAN:
                self._force_release[here] = True
            self.s.preemptions += 1
            self._go(j, cands.pop(0))

    def _close_waits(self, worlds: np.ndarray) -> None:
        """End the waits of ``worlds`` now (a human arrived, or the episode ended)."""
        worlds = np.asarray(worlds, dtype=np.int64)
        if not len(worlds):
            return
        w = self.w_wait_start[worlds]
        ok = ~np.isnan(w)
        self.s.waits.extend((self.clock - w[ok]).tolist())
        self.w_wait_start[worlds] = math.nan

    def stats(self) -> FleetStats:
        """The run's bookkeeping so far (waits still open are not counted; recoveries not
        yet done are :attr:`FleetStats.owed`: the rest of one under way, a switch plus a
        whole recovery for one nobody has started)."""
        cfg = self.config
        left = self.w_reset_done[self.w_blocked] - self.clock
        self.s.owed = float(np.where(np.isnan(left), cfg.context_switch_time
                                     + cfg.hard_reset_time, np.maximum(left, 0.0)).sum())
        return self.s
