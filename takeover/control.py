"""Who held control, step by step: the one definition of a human intervention, shared by
``takeover log show`` and the metrics.

A **human intervention** is a maximal run of consecutive steps whose ``controller`` is
``"human"`` (the human held control). Not an intervention: a minimal-risk manoeuvre or any
fallback (``controller == "fallback"``, counted apart by :func:`fallback_segments`), and a key
press that did not change who drives (a ``human_action`` on an agent-driven step). A human
who drives, is replaced by the fallback and takes control again intervened twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def segments(held: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` step ranges of each maximal run of ``True`` in ``held``."""
    h = np.asarray(held, dtype=bool).reshape(-1)
    if not h.size:
        return []
    edges = np.diff(np.concatenate([[False], h, [False]]).astype(np.int8))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def human_segments(controller: Sequence[str] | np.ndarray) -> list[tuple[int, int]]:
    """Step ranges of the human interventions of one episode (``controller`` per step)."""
    return segments(np.asarray(controller, dtype=str) == "human")


def fallback_segments(controller: Sequence[str] | np.ndarray) -> list[tuple[int, int]]:
    """Step ranges where the fallback / minimal-risk manoeuvre drove (never a human
    intervention; reported as its own rate)."""
    return segments(np.asarray(controller, dtype=str) == "fallback")


def count_interventions(controller: Sequence[str] | np.ndarray) -> int:
    """Number of human interventions in one episode."""
    return len(human_segments(controller))
