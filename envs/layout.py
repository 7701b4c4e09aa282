"""Where each quantity lives in the world's arrays.

A batch of ``N`` worlds is three float64 arrays, so a snapshot is three copies and the step
kernel takes no Python objects:

* ``veh``   ``(N, M, VEH_COLS)`` one row per vehicle slot; slot 0 is always the ego;
* ``wld``   ``(N, WLD_COLS)`` per-world scalars (clock, hazard, ego controls);
* ``params`` ``(PARAM_COLS,)`` the configuration, shared by all worlds.

Integers (kinds, lanes, modes) are stored as exact small floats.
"""

from __future__ import annotations

# --- vehicle columns -------------------------------------------------------------------
X, Y, V, PSI, VY, LEN, WID = 0, 1, 2, 3, 4, 5, 6  # m, m, m/s, rad, m/s (lateral), m, m
V0, THW, AMAX, BCOMF, S0, POLITE = 7, 8, 9, 10, 11, 12  # IDM/MOBIL driver parameters
ACC, LANE, KIND, MODE, LC_TIMER, OFFSET, DECEL = 13, 14, 15, 16, 17, 18, 19
VEH_COLS = 20

# KIND: what occupies a slot
EMPTY, EGO, CAR, STALLED, CONE = 0, 1, 2, 3, 4
KIND_NAMES = {EMPTY: "empty", EGO: "ego", CAR: "car", STALLED: "stalled", CONE: "cone"}

# MODE: how a non-ego vehicle is driven
NORMAL = 0  # IDM + MOBIL
SHADOW = 1  # holds an offset to the ego (a hazard vehicle waiting for its cue)
BRAKING = 2  # brakes at DECEL until it stops (sudden braking hazard)
STATIC = 3  # never moves (stalled car, cones)
LANE_BOUND = 4  # IDM only, never changes lane (hazard vehicles before / after their move)

# --- world columns ---------------------------------------------------------------------
TIME, STEP, PREV_ACC, STEER, EGO_ACC = 0, 1, 2, 3, 4
HZ_KIND, HZ_ONSET, HZ_IDX, HZ_SEV, HZ_STATE, HZ_T_ACTIVE, HZ_X, HZ_END = 5, 6, 7, 8, 9, 10, 11, 12
TGT_SPEED, TGT_LANE, CRASHED, OFFROAD, JERK, HZ_DEFICIT = 13, 14, 15, 16, 17, 18
HZ_XEND = 19  # position past which a static hazard (stalled car, work zone) is over
HZ_TRIGGER = 20  # TRIGGER_TIME (fires at HZ_ONSET) or TRIGGER_RANGE (ego within SENSE of HZ_X)
HZ_FIRE_MODE = 21  # MODE slot HZ_IDX takes when the hazard fires (-1: nothing moves)
MRM = 22  # 1 while the minimal-risk manoeuvre is engaged (set by ``set_mrm``)
MRM_LANE = 23  # the lane the MRM is steering to (N_LANES = the hard shoulder)
STILL = 24  # s the ego has stood still in a live lane with the road ahead free
MRM_T = 25  # s since the minimal-risk manoeuvre was engaged
WLD_COLS = 26
# HZ_END is the time a dynamic hazard stops being active; HZ_X the static hazard's start.
# HZ_KIND is the hazard's registry code (``takeover.envs.hazards``), 0 for none.

NO_HAZARD = 0
TRIGGER_TIME, TRIGGER_RANGE = 0, 1
# HZ_STATE
PENDING, ACTIVE, OVER = 0, 1, 2

# --- episode status the kernel reports per world (index into OUTCOMES + 1; 0 = running) --
RUNNING, S_COLLISION, S_OFF_ROAD, S_STOPPED, S_ARRIVED, S_PULLED_OVER, S_STOPPED_IN_LANE = (
    0, 1, 2, 3, 4, 5, 6)
STATUS_OUTCOMES = ("", "collision", "off_road", "stopped", "arrived", "pulled_over",
                   "stopped_in_lane")

# --- parameter columns -----------------------------------------------------------------
(DT, NSUB, LANE_W, N_LANES, STEER_MAX, ACC_MAX, BRAKE_MAX, V_MAX, K_OBS, WHEELBASE,
 V_LO, V_HI, R_SPEED, R_HEADWAY, R_JERK, JERK_THR, R_COLLISION, R_OFFROAD, SENSE,
 HZ_WINDOW, DISCRETE, X_SCALE, V_SCALE, B_SAFE, LC_THRESHOLD, RECYCLE_BEHIND,
 RECYCLE_AHEAD, ROUTE_LEN, R_PROGRESS, R_ARRIVAL, R_STOPPED, R_SHOULDER, STOP_GRACE,
 STOP_SPEED, STOP_CLEAR, LANE_OBS) = range(36)
PARAM_COLS = 36

# --- observation features --------------------------------------------------------------
OBS_FEATURES = ("presence", "x", "y", "vx", "vy", "cos_h", "sin_h")

# --- discrete meta-actions -------------------------------------------------------------
IDLE, FASTER, SLOWER, LANE_LEFT, LANE_RIGHT = 0, 1, 2, 3, 4
META_ACTIONS = ("idle", "faster", "slower", "lane_left", "lane_right")
TTC_MAX = 99.0  # s; reported when no vehicle is closing in the ego's corridor

# --- per-step ground truth, one row per world (turned into the ``info`` dict) -----------
INFO_KEYS = (
    "time", "x", "y", "heading", "speed", "lane", "accel", "steer", "jerk", "ttc",
    "headway", "min_distance", "hazard_active", "hazard_onset", "hazard_severity",
    "collision", "offroad", "hazard_fired", "route_progress", "route_length", "mrm",
)
(I_TIME, I_X, I_Y, I_HEADING, I_SPEED, I_LANE, I_ACCEL, I_STEER, I_JERK, I_TTC, I_HEADWAY,
 I_MIN_DIST, I_HZ_ACTIVE, I_HZ_ONSET, I_HZ_SEV, I_COLLISION, I_OFFROAD, I_HZ_FIRED,
 I_PROGRESS, I_ROUTE_LEN, I_MRM) = range(21)
INFO_COLS = 21
BOOL_INFO = ("hazard_active", "collision", "offroad", "hazard_fired", "mrm")
"""Info keys the kernel stores as 0/1 and the envs report as bools."""
DIST_MAX = 100.0  # m; min_distance reported when nothing is closer
