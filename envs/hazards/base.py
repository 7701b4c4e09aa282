"""What a hazard is: one class that places its objects at reset and tells the kernel how it
fires. The kernel knows only the two triggers and the modes below, so a new hazard that
combines them is one class and one registry line (``takeover.envs.hazards``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from takeover.envs import layout as L

if TYPE_CHECKING:
    from takeover.envs.config import HighwayConfig

KeepOut = tuple[float, float, float]
"""``(lane, x_lo, x_hi)``: a stretch of a lane where no traffic may spawn, m."""


@dataclass
class Scene:
    """One world at reset, as a hazard sees it.

    Attributes:
        veh, wld: the world's arrays (``layout``); write only your own slots
            ``slot .. slot + HAZARD_SLOTS - 1`` and the ``HZ_*`` world columns.
        cfg: the env's configuration.
        rng: this hazard's own stream (seeded by the episode and the hazard's name, so
            adding a hazard or changing one never changes another's episodes).
        slot: first vehicle slot reserved for hazards.
        ego_lane, v_ego: the ego's start lane and speed (m/s); the ego is at x = 0.
        onset: s, drawn in ``cfg.onset``; severity: 0..1, drawn uniformly.
    """

    veh: np.ndarray
    wld: np.ndarray
    cfg: HighwayConfig
    rng: np.random.Generator
    slot: int
    ego_lane: float
    v_ego: float
    onset: float
    severity: float

    @property
    def x_hit(self) -> float:
        """Where the ego is at the onset if it holds its start speed, m."""
        return self.v_ego * self.onset


class Hazard:
    """Base class of a hazard.

    Class attributes: ``name`` (the scenario name), ``env_name`` (the id's stem, e.g.
    ``"CutIn"`` -> ``takeover/CutIn-v1``), ``code`` (the kernel's ``HZ_KIND``; pinned, never
    reused: snapshots and logs store it), ``trigger`` (``TRIGGER_TIME``: fires at the onset
    time whatever the ego does; ``TRIGGER_RANGE``: a standing hazard fires when the ego
    comes within ``sense_range`` of it), ``fire_mode`` (the mode vehicle ``HZ_IDX`` takes
    when it fires: ``BRAKING`` brakes at its ``DECEL`` to a stop, ``LANE_BOUND`` moves into
    the ego's lane ``HZ_DEFICIT`` m/s slower than the ego; -1: nothing moves),
    ``start_lane`` (``"right"`` to start the ego in the rightmost lane, else random),
    ``summary`` (one line for the docs: how severity ``s`` sets the strike).
    """

    name: ClassVar[str]
    env_name: ClassVar[str]
    code: ClassVar[int]
    trigger: ClassVar[int]
    fire_mode: ClassVar[int] = -1
    start_lane: ClassVar[str | None] = None
    summary: ClassVar[str]

    def place(self, scene: Scene) -> list[KeepOut]:
        """Put the hazard's objects into ``scene``; return the traffic keep-out zones."""
        raise NotImplementedError

    def setup(self, scene: Scene) -> list[KeepOut]:
        """Write the trigger columns, then ``place``."""
        wld = scene.wld
        wld[L.HZ_KIND] = self.code
        wld[L.HZ_ONSET] = scene.onset
        wld[L.HZ_SEV] = scene.severity
        wld[L.HZ_TRIGGER] = self.trigger
        wld[L.HZ_FIRE_MODE] = self.fire_mode
        return self.place(scene)


def place_vehicle(veh: np.ndarray, i: int, kind: int, x: float, lane: float, v: float,
                  w: float, length: float = 5.0, width: float = 2.0,
                  mode: int = L.NORMAL) -> None:
    """Put an object of ``kind`` into slot ``i`` at ``(x, lane)`` driving ``v`` m/s."""
    row = veh[i]
    row[L.X], row[L.Y], row[L.V], row[L.LANE] = x, lane * w, v, lane
    row[L.LEN], row[L.WID], row[L.KIND], row[L.MODE] = length, width, kind, mode
    row[L.V0] = v


def set_driver(row: np.ndarray, u: np.ndarray, cfg: HighwayConfig) -> None:
    """Per-driver IDM/MOBIL parameters from 6 uniforms ``u`` (Treiber & Kesting's ranges
    for highway drivers); the same ranges as ``scenarios.spawn_traffic``."""
    lo, hi = cfg.traffic_speed
    row[L.V0] = lo + (hi - lo) * u[0]
    row[L.THW] = 1.0 + 0.8 * u[1]
    row[L.AMAX] = 1.0 + 1.0 * u[2]
    row[L.BCOMF] = 1.5 + 1.0 * u[3]
    row[L.S0] = 2.0 + 1.0 * u[4]
    row[L.POLITE] = 0.5 * u[5]


def shadow_car(scene: Scene, lane: float, gap: float) -> None:
    """The hazard car of a cut-in or merge: a car ``gap`` m ahead of the ego's nose in
    ``lane``, holding station beside the ego (SHADOW mode) until the hazard fires."""
    h = scene.slot
    place_vehicle(scene.veh, h, L.CAR, 5.0 + gap, lane, scene.v_ego,
                  scene.cfg.lane_width, mode=L.SHADOW)
    set_driver(scene.veh[h], scene.rng.random(6), scene.cfg)
    scene.veh[h, L.OFFSET] = 5.0 + gap
    scene.wld[L.HZ_IDX] = h
