"""Frame time of the live ``takeover drive`` loop, headless: event handling + render + (every
sixth frame at 60 fps / 10 Hz control) agent + estimators + gate + human + env step.

The budget is one 60 fps frame, 16.7 ms, at the 99th percentile. The loop runs under
``SDL_VIDEODRIVER=dummy`` with a fixed simulated clock (no waiting), so the figure is pure
compute: what a real window adds is the display flip.
"""

from __future__ import annotations

import os
from typing import Any

FRAME_BUDGET_MS = 1000.0 / 60.0


def main(frames: int = 1800, agent: str = "auto", scenario: str = "Highway-v1",
         seed: int = 0) -> dict[str, Any]:
    """Run ``frames`` frames (about ``frames / 60`` simulated seconds) and report
    p50/p99/max frame times in ms. ``agent="auto"`` uses the shipped ``novice`` agent when
    it is installed, else the IDM stand-in."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import numpy as np

    from takeover.commands.drive import DriveOptions, run_drive

    if agent == "auto":
        try:
            from takeover.agents.pretrained import pretrained_path

            pretrained_path("novice")
            agent = "novice"
        except Exception:  # noqa: BLE001 - not built yet: fall back to the stand-in
            agent = "idm"
    ms: list[float] = []
    step_ms: list[float] = []
    episodes = 0
    while len(ms) < frames:
        res = run_drive(DriveOptions(scenario=scenario, agent=agent, seed=seed + episodes,
                                     fixed_clock=True, max_frames=frames - len(ms),
                                     sound=False))
        ms.extend(res.frame_ms)
        step_ms.extend(m for m, s in zip(res.frame_ms, res.stepped, strict=True) if s)
        episodes += 1
    a = np.asarray(ms)
    return {
        "frames": int(a.size), "agent": agent, "scenario": scenario, "episodes": episodes,
        "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "step_frame_p50_ms": float(np.percentile(step_ms, 50)) if step_ms else float("nan"),
        "step_frame_p99_ms": float(np.percentile(step_ms, 99)) if step_ms else float("nan"),
        "budget_ms": FRAME_BUDGET_MS,
        "p99_within_budget": bool(np.percentile(a, 99) < FRAME_BUDGET_MS),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
