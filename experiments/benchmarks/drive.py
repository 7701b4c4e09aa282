"""The live ``takeover drive`` loop, headless (``SDL_VIDEODRIVER=dummy``): real-time pacing and
frame time.

* **Pacing** (``pacing``): a drive on the real clock; the simulated time of each control
  step against the wall-clock time it ran at (pauses excluded). The requirement is that
  simulated time tracks wall time within 1 % over an episode (``ratio`` = simulated /
  wall seconds), so logged takeover times are the person's.
* **Frame time** (``frames``): the loop on a fixed clock (no waiting): event handling +
  render + (every sixth frame at 60 fps / 10 Hz control) agent + estimator + gate + human +
  env step. The budget is one 60 fps frame, 16.7 ms, at the 99th percentile; a real window
  adds the display flip.
"""

from __future__ import annotations

import os
from typing import Any

FRAME_BUDGET_MS = 1000.0 / 60.0


def _agent(agent: str) -> str:
    if agent != "auto":
        return agent
    try:
        from takeover.agents.shipped import pretrained_path

        pretrained_path("novice")
        return "novice"
    except Exception:  # noqa: BLE001 - not built yet: fall back to the stand-in
        return "idm"


def _session(agent: str, scenario: str, seed: int, frames: int, fixed: bool):
    from takeover.supervisor.live import LiveSession, LiveSettings, LoopOptions

    settings = LiveSettings(scenario=scenario, agent=agent, env={"duration": 600.0})
    loop = LoopOptions(fixed_clock=fixed, sound=False, start_screen=False, end_screen=False,
                       max_frames=frames)
    return LiveSession(settings, seed, loop, max_episodes=1).run().episodes[0]


def pacing(seconds: float = 20.0, agent: str = "idm", scenario: str = "Plain-v2",
           seed: int = 0) -> dict[str, Any]:
    """Drive ``seconds`` of wall time on the real clock; compare simulated and wall time.
    The IDM stand-in by default: it never crashes, so the episode lasts ``seconds``.

    ``ratio``: simulated / wall seconds from the first to the last step (1 = real time);
    ``step_lag_ms``: how late each step ran after its simulated start (a frame, at most)."""
    import numpy as np

    agent = _agent(agent)
    ep = _session(agent, scenario, seed, int(seconds * 60), fixed=False)
    dt = ep.records[1].time - ep.records[0].time
    start = np.array([r.time - dt for r in ep.records])  # simulated start of each step
    wall = np.array([r.info["wall_s"] for r in ep.records])  # wall s when it had run
    lag = wall - start
    ratio = float((start[-1] - start[0]) / (wall[-1] - wall[0]))
    return {"agent": agent, "scenario": scenario, "steps": len(ep.records),
            "sim_s": float(start[-1] - start[0]), "wall_s": float(wall[-1] - wall[0]),
            "ratio": ratio, "within_1pct": bool(abs(ratio - 1.0) < 0.01),
            "step_lag_ms_p50": float(1000 * np.percentile(lag, 50)),
            "step_lag_ms_p99": float(1000 * np.percentile(lag, 99)),
            "step_lag_ms_max": float(1000 * lag.max())}


def frames(frames: int = 1800, agent: str = "auto", scenario: str = "Highway-v2",
           seed: int = 0) -> dict[str, Any]:
    """Frame compute time on a fixed clock (about ``frames / 60`` simulated seconds)."""
    import numpy as np

    agent = _agent(agent)
    ep = _session(agent, scenario, seed, frames, fixed=True)
    a = np.asarray(ep.frame_ms)
    step_ms = [m for m, s in zip(ep.frame_ms, ep.stepped, strict=True) if s]
    return {
        "frames": int(a.size), "agent": agent, "scenario": scenario,
        "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "step_frame_p50_ms": float(np.percentile(step_ms, 50)) if step_ms else float("nan"),
        "step_frame_p99_ms": float(np.percentile(step_ms, 99)) if step_ms else float("nan"),
        "budget_ms": FRAME_BUDGET_MS,
        "p99_within_budget": bool(np.percentile(a, 99) < FRAME_BUDGET_MS),
    }


def main(frames_n: int = 1800, agent: str = "auto", seconds: float = 20.0) -> dict[str, Any]:
    """Both measurements, flat (``pacing_*`` keys for the pacing)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    out = frames(frames_n, agent)
    out.update({f"pacing_{k}": v for k, v in pacing(seconds).items()})
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
