"""What a hazard is: one class that places its objects at reset and tells the kernel how it
fires. The kernel knows only the two triggers and the modes below, so a new hazard that
combines them is one module with one class and its line in ``HAZARDS``
(``takeover.envs.hazards``, which builds the compiled dispatch from it).

Placement runs inside the compiled reset (``takeover.envs.scenarios``), so a hazard's
``place`` is a numba function of the world's arrays:

    place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, severity, keep) -> int

``veh`` / ``wld`` the world's arrays (``layout``: write only slots ``slot .. slot +
HAZARD_SLOTS - 1`` and the ``HZ_*`` world columns); ``rp`` the reset parameters (columns
``R_*`` below); ``st`` the hazard's own stream (``takeover.envs.streams.uniform(st)``; seeded
by the world's key, the episode and a hash of the hazard's name, so adding or changing a
hazard never changes another's episodes); ``ego_lane`` and ``v_ego`` (m/s) the ego's start
(it is at x = 0); ``onset`` s (drawn in ``cfg.onset``), ``severity`` 0..1 (uniform);
``keep`` a ``(MAX_KEEP_OUT, 3)`` array of keep-out rows ``(lane, x_lo, x_hi)`` where traffic
must not spawn: write up to ``MAX_KEEP_OUT`` of them and return how many.
"""

from __future__ import annotations

from typing import Any, ClassVar

from numba import njit

from takeover.envs import layout as L
from takeover.envs.streams import uniform

MAX_KEEP_OUT = 4
"""Keep-out rows a hazard may return."""

# --- reset parameters (``scenarios.reset_params``): one float64 row shared by all worlds --
(R_LANES, R_LANE_W, R_VEHICLES, R_EGO_LO, R_EGO_HI, R_TRAF_LO, R_TRAF_HI, R_ONSET_LO,
 R_ONSET_HI, R_SCENARIO, R_MAX_STEPS, R_N_MIXED) = range(12)
R_MIXED = 12
"""``rp[R_MIXED : R_MIXED + rp[R_N_MIXED]]``: the mixed scenario's hazard codes; then per
hazard code ``c`` the row ``rp[R_TABLE + R_PER_CODE * c :]`` = (stream tag, trigger, fire
mode, starts the ego in the right lane), where ``R_TABLE = R_MIXED + rp[R_N_MIXED]``."""
R_PER_CODE = 4
T_TAG, T_TRIGGER, T_FIRE_MODE, T_RIGHT = range(R_PER_CODE)


class Hazard:
    """Base class of a hazard.

    Class attributes: ``name`` (the scenario name), ``env_name`` (the id's stem, e.g.
    ``"CutIn"`` -> ``takeover/CutIn-v2``), ``code`` (the kernel's ``HZ_KIND``; pinned, never
    reused: snapshots and logs store it), ``trigger`` (``TRIGGER_TIME``: fires at the onset
    time whatever the ego does; ``TRIGGER_RANGE``: a standing hazard fires when the ego
    comes within ``sense_range`` of it), ``fire_mode`` (the mode vehicle ``HZ_IDX`` takes
    when it fires: ``BRAKING`` brakes at its ``DECEL`` to a stop, ``LANE_BOUND`` moves into
    the ego's lane ``HZ_DEFICIT`` m/s slower than the ego; -1: nothing moves),
    ``start_lane`` (``"right"`` to start the ego in the rightmost lane, else random),
    ``summary`` (one line for the docs: how severity ``s`` sets the strike), ``place``
    (the compiled placement, see the module docstring).
    """

    name: ClassVar[str]
    env_name: ClassVar[str]
    code: ClassVar[int]
    trigger: ClassVar[int]
    fire_mode: ClassVar[int] = -1
    start_lane: ClassVar[str | None] = None
    summary: ClassVar[str]
    place: ClassVar[Any] = None


@njit(cache=True)
def place_vehicle(veh, i, kind, x, lane, v, w, length, width, mode):
    """Put an object of ``kind`` into slot ``i`` at ``(x, lane)`` driving ``v`` m/s."""
    veh[i, L.X] = x
    veh[i, L.Y] = lane * w
    veh[i, L.V] = v
    veh[i, L.LANE] = lane
    veh[i, L.LEN] = length
    veh[i, L.WID] = width
    veh[i, L.KIND] = kind
    veh[i, L.MODE] = mode
    veh[i, L.V0] = v


@njit(cache=True)
def set_driver(veh, i, st, v_lo, v_hi):
    """Slot ``i``'s IDM/MOBIL parameters from 6 draws of ``st`` (Treiber & Kesting's ranges
    for highway drivers, desired speed in ``[v_lo, v_hi]`` m/s); the same ranges as
    ordinary traffic (``scenarios.spawn_traffic``)."""
    veh[i, L.V0] = v_lo + (v_hi - v_lo) * uniform(st)
    veh[i, L.THW] = 1.0 + 0.8 * uniform(st)
    veh[i, L.AMAX] = 1.0 + 1.0 * uniform(st)
    veh[i, L.BCOMF] = 1.5 + 1.0 * uniform(st)
    veh[i, L.S0] = 2.0 + 1.0 * uniform(st)
    veh[i, L.POLITE] = 0.5 * uniform(st)


@njit(cache=True)
def keep_lane_clear(keep, lane, x_end):
    """Keep-out row 0: no traffic starts in ``lane`` from 25 m behind the ego to ``x_end``
    m, so the ego meets the hazard itself, not a queue of traffic cars stuck behind it
    (ordinary traffic cannot zip-merge out of a blocked lane, so a queue there jammed every
    lane). Returns the rows written, for ``place`` to return."""
    keep[0, 0], keep[0, 1], keep[0, 2] = lane, -25.0, x_end
    return 1


@njit(cache=True)
def shadow_car(veh, wld, rp, st, slot, lane, v_ego, gap):
    """The hazard car of a cut-in or merge: a car ``gap`` m ahead of the ego's nose in
    ``lane``, holding station beside the ego (SHADOW mode) until the hazard fires."""
    place_vehicle(veh, slot, L.CAR, 5.0 + gap, lane, v_ego, rp[R_LANE_W], 5.0, 2.0, L.SHADOW)
    set_driver(veh, slot, st, rp[R_TRAF_LO], rp[R_TRAF_HI])
    veh[slot, L.OFFSET] = 5.0 + gap
    wld[L.HZ_IDX] = slot
