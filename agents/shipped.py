"""The table of agents shipped with the package: their names, where they lie, and the command
that rebuilds them. The recipe itself (training, distillation, risk critics, acceptance
measurements) is ``takeover.agents.build_shipped``; loading goes through
``takeover.agents.checkpoint`` (a shipped name is a folder under ``SHIPPED_DIR`` holding a
manifest), so this module imports neither torch nor the recipe."""

from __future__ import annotations

from pathlib import Path

from takeover.agents.checkpoint import SHIPPED_DIR, CheckpointError

PRETRAINED_DIR: Path = SHIPPED_DIR
PRETRAINED = {
    "novice": "novice",  # discrete PPO trained on Plain-v2 only (hazards are new to it)
    "novice-ensemble": "novice-ensemble",  # randomized-prior members on the novice's features
    "novice-ppo-ensemble": "novice-ppo-ensemble",  # independently seeded PPO runs
    "novice-dqn": "novice-dqn",  # off-policy start for PVP / RLIF (agents.learners.offpolicy)
    "novice-intent": "novice-intent",  # the novice as an intent agent (agents.build_intent)
}
"""Shipped name -> sub-directory of ``PRETRAINED_DIR``."""

BUILD_COMMAND = "python -m takeover.agents.build_shipped --out agents/pretrained"


def pretrained_path(name: str) -> Path:
    """The folder of shipped agent ``name``; a missing one is an error naming the rebuild."""
    if name not in PRETRAINED:
        raise CheckpointError(f"{name!r} is not a shipped agent; shipped: {', '.join(PRETRAINED)}")
    path = PRETRAINED_DIR / PRETRAINED[name]
    if not (path / "manifest.json").is_file():
        raise CheckpointError(f"the shipped checkpoint {name!r} is missing at {path}; "
                              f"rebuild it with: {BUILD_COMMAND}")
    return path
