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
* once assigned a human stays at least ``min_intervention_time`` s (Fleet-DAgger's
  ``min_int_time``): an earlier hand-back by the per-world model is held off; after it, with
  ``preempt``, a human is moved (handing control back to the agent) to a waiting world the
  policy ranks above theirs;
* a collision or off-road exit (Fleet-DAgger's constraint violation) costs a human
  ``hard_reset_time`` s: the human who was with that world, else the next free human
  (resets are mandatory work and come before any request, whatever the policy);
* a world without a human gets no input, so the engine's handover falls back to the
  minimal-risk manoeuvre when the request times out.

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

from .allocation import ALLOCATIONS, FleetState, rank

AGENT, TOR, HUMAN, FALLBACK = 0, 1, 2, 3


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
        10.0, "s of a human's time a collision or off-road exit costs (recovery)",
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

    ROHE follows Fleet-DAgger: ``(H / N) * successes / (1 + human effort)``, with successes
    the arrivals and human effort in human-minutes (time humans were assigned to a world:
    switching, intervening, resetting), not steps, so it does not depend on ``dt``.
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

    @property
    def hours(self) -> float:
        return self.clock / 3600.0

    @property
    def human_minutes(self) -> float:
        return self.human_busy / 60.0

    @property
    def rohe(self) -> float:
        return self.num_humans / self.num_worlds * self.arrivals / (1.0 + self.human_minutes)

    def summary(self) -> dict[str, float]:
        """Flat numbers for tables and plots (NaN where undefined)."""
        hh = self.num_humans * self.clock
        waits = np.asarray(self.waits, dtype=float)
        return {
            "N": float(self.num_worlds), "H": float(self.num_humans),
            "N_per_H": self.num_worlds / self.num_humans, "hours": self.hours,
            "episodes": float(self.episodes), "arrivals": float(self.arrivals),
            "rohe": self.rohe,
            "throughput_per_hour": self.arrivals / self.hours if self.clock else math.nan,
            "arrival_rate": self.arrivals / self.episodes if self.episodes else math.nan,
            "failure_rate": self.failures / self.episodes if self.episodes else math.nan,
            "failures_waiting": float(self.failures_waiting),
            "failures_waiting_rate": (self.failures_waiting / self.episodes
                                      if self.episodes else math.nan),
            "fallback_rate": self.fallbacks / self.episodes if self.episodes else math.nan,
            "human_minutes": self.human_minutes,
            "human_idle_fraction": self.human_idle / hh if hh else math.nan,
            "human_switching_fraction": self.human_switching / hh if hh else math.nan,
            "human_resetting_fraction": self.human_resetting / hh if hh else math.nan,
            "worlds_waiting_mean": self.world_waiting / self.clock if self.clock else math.nan,
            "wait_mean_s": float(waits.mean()) if len(waits) else math.nan,
            "wait_p90_s": float(np.quantile(waits, 0.9)) if len(waits) else math.nan,
            "waits": float(len(waits)), "switches": float(self.switches),
            "preemptions": float(self.preemptions), "hard_resets": float(self.hard_resets),
        }


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
        cfg = config if config is not None else FleetConfig(**kw)
        if config is not None and kw:
            raise TypeError("pass either config or its fields as keywords, not both")
        self.inner, self.n, self.config = inner, int(num_worlds), cfg
        self.policy = ALLOCATIONS.make(cfg.allocation, **dict(cfg.allocation_kwargs))
        self.rng = np.random.default_rng(cfg.seed)
        self.dt = dt
        n, h = self.n, cfg.num_humans
        self.clock = 0.0
        # humans
        self.h_world = np.full(h, -1, dtype=np.int64)  # world assigned, -1 free
        self.h_last = np.full(h, -1, dtype=np.int64)  # the last world they were in
        self.h_since = np.zeros(h)  # clock at assignment
        self.h_ready = np.zeros(h)  # clock when the context switch is done
        self.h_blocked = np.zeros(h)  # clock until which a hard reset occupies them
        # worlds
        self.w_human = np.full(n, -1, dtype=np.int64)
        self.w_wait_start = np.full(n, math.nan)  # clock the current wait began
        self.w_control = np.full(n, math.nan)  # clock the present human took control
        self.last_served = np.full(n, -math.inf)
        self.phase = np.zeros(n, dtype=np.int8)
        self.resets: list[float] = []  # clock of each pending unattended reset (FIFO)
        self.scores: dict[str, np.ndarray] = {}
        self._force_release = np.zeros(n, dtype=bool)
        self.s = FleetStats(n, h, 0.0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)

    # --- engine hooks ------------------------------------------------------------------
    def observe_scores(self, scores: Mapping[str, np.ndarray]) -> None:
        """The step's estimator scores (non-finite as ``+inf``), before :meth:`act`."""
        self.scores = dict(scores)

    def end_episodes(self, worlds: np.ndarray, info: Mapping[str, Any]) -> None:
        """Episodes of ``worlds`` ended this step (``info``: the step's final info arrays):
        count arrivals and failures, and charge the hard resets."""
        worlds = np.asarray(worlds, dtype=np.int64)
        bad = failed(info, worlds)
        s = self.s
        s.episodes += len(worlds)
        for i, f in zip(worlds.tolist(), bad.tolist()):
            ph = int(self.phase[i])
            s.arrivals += arrived(info, i, ph)
            s.fallbacks += ph == FALLBACK
            if not f:
                continue
            s.failures += 1
            s.hard_resets += 1
            j = int(self.w_human[i])
            present = j >= 0 and self.clock >= self.h_ready[j]
            if not present and ph in (TOR, FALLBACK):
                s.failures_waiting += 1
            if j >= 0:  # the human who was there recovers it
                self.h_blocked[j] = self.clock + self.config.hard_reset_time
            else:
                self.resets.append(self.clock)
        self._close_waits(worlds)  # a wait ends with its episode (arrived or not)
        for i in worlds.tolist():
            if self.w_human[i] >= 0:
                self._free(int(self.w_human[i]))

    # --- the Humans protocol -------------------------------------------------------------
    def reset(self, worlds: np.ndarray, seeds: Sequence[int | None]) -> None:
        worlds = np.asarray(worlds, dtype=np.int64)
        self.inner.reset(worlds, seeds)
        self._close_waits(worlds)
        for i in worlds.tolist():
            j = int(self.w_human[i])
            if j >= 0:
                self._free(j)
        self.w_control[worlds] = math.nan
        self.phase[worlds] = AGENT

    def act(self, obs: np.ndarray, info: Mapping[str, Any], world: Any,
            views: HumanViews) -> HumanInputs:
        if self.dt is None:
            self.dt = float(world.config.dt)
        cfg, dt = self.config, float(self.dt)
        ph = np.asarray(views.phase, dtype=np.int8)
        self.phase = ph.copy()
        requesting = np.asarray(views.tor_active, dtype=bool) | (ph == TOR) | (ph == FALLBACK)
        holding = ph == HUMAN
        need = requesting | holding
        self._force_release[:] = False
        # humans whose world needs them no more (withdrawn, handed back) are free
        for j in np.flatnonzero(self.h_world >= 0).tolist():
            if not need[self.h_world[j]]:
                self._free(j)
        self._assign(requesting, ph, views)
        # what the per-world models see: a request only once a human is present
        hw = self.w_human
        present = np.zeros(self.n, dtype=bool)
        has = hw >= 0
        present[has] = self.clock >= self.h_ready[hw[has]] - 1e-9
        ready_at = np.where(has, self.h_ready[np.maximum(hw, 0)], math.nan)
        self.last_served = np.where(present & (self.last_served < ready_at), ready_at,
                                    self.last_served)
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
        took = present & (np.asarray(hin.wants_control) | np.asarray(hin.has_action))
        self.w_control = np.where(took & np.isnan(self.w_control), self.clock, self.w_control)
        since = np.where(has, self.h_since[np.maximum(hw, 0)], math.inf)
        early = self.clock - since < cfg.min_intervention_time - 1e-9
        rel = present & np.asarray(hin.releases) & ~early
        wants = present & (np.asarray(hin.wants_control) | (np.asarray(hin.releases) & early))
        has_a = present & np.asarray(hin.has_action)
        rel = rel | self._force_release
        wants &= ~self._force_release
        has_a &= ~self._force_release
        # bookkeeping for this step (dt s)
        s = self.s
        busy = (self.h_world >= 0) | (self.h_blocked > self.clock)
        switching = (self.h_world >= 0) & (self.clock < self.h_ready)
        s.human_busy += dt * busy.sum()
        s.human_switching += dt * switching.sum()
        s.human_resetting += dt * ((self.h_blocked > self.clock) & (self.h_world < 0)).sum()
        s.human_idle += dt * (~busy).sum()
        s.world_waiting += dt * (requesting & ~present).sum()
        self.clock += dt
        s.clock = self.clock
        return HumanInputs(action=hin.action, has_action=has_a, wants_control=wants,
                           releases=rel)

    # --- assignment ------------------------------------------------------------------------
    def _free(self, j: int) -> None:
        i = int(self.h_world[j])
        if i >= 0:
            self.w_human[i] = -1
            self.w_control[i] = math.nan
            self.h_last[j] = i
        self.h_world[j] = -1

    def _go(self, j: int, i: int) -> None:
        cfg = self.config
        if self.h_world[j] >= 0:
            self._free(j)
        switch = self.h_last[j] != i
        self.s.switches += int(switch)
        self.h_world[j] = i
        self.w_human[i] = j
        self.h_since[j] = self.clock
        self.h_ready[j] = self.clock + (cfg.context_switch_time if switch else 0.0)

    def _available(self) -> np.ndarray:
        return (self.h_world < 0) & (self.h_blocked <= self.clock + 1e-9)

    def _assign(self, requesting: np.ndarray, ph: np.ndarray, views: HumanViews) -> None:
        cfg = self.config
        free = np.flatnonzero(self._available())
        # pending unattended resets first (mandatory), oldest first
        while self.resets and len(free):
            j = int(free[0])
            free = free[1:]
            self.resets.pop(0)
            self.h_last[j] = -1  # the wreck is another place: the next world costs a switch
            self.h_blocked[j] = self.clock + cfg.context_switch_time + cfg.hard_reset_time
        waiting = requesting & (self.w_human < 0)
        movable = np.zeros(0, dtype=np.int64)
        if cfg.preempt:
            assigned = np.flatnonzero(self.h_world >= 0)
            movable = assigned[self.clock - self.h_since[assigned]
                               >= cfg.min_intervention_time - 1e-9]
        if not waiting.any() or (not len(free) and not len(movable)):
            return
        state = FleetState(
            waiting=waiting, constraint=ph == FALLBACK,
            waited=np.where(requesting, np.asarray(views.tor_elapsed, dtype=float), 0.0),
            urgency=np.asarray(views.urgency, dtype=float),
            scores={k: np.asarray(v, dtype=float) for k, v in self.scores.items()},
            last_served=self.last_served, rng=self.rng)
        order = rank(self.policy, state)
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
            if pos[cands[0]] >= pos[here]:
                break
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
        """The run's bookkeeping so far (waits still open are not counted)."""
        return self.s
