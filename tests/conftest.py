"""Shared test setup: headless pygame, Agg matplotlib, one torch thread (2-core CI),
repeatable hypothesis examples."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run (a red CI run is reproducible, a green one
# is not luck); ``HYPOTHESIS_PROFILE=explore pytest ...`` searches afresh with random draws.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_configure(config):
    """Compile the numba kernels once, in the controller, before xdist starts its workers.

    Why: on a clean clone (empty numba disk cache) the two workers compiled the same kernels
    into the same cache at once, and 12 kernel and replay tests (vector world i vs the single
    env, queued seeds, the bit-for-bit regression cases, review replay) failed in one worker,
    at random, in 5 of the 8 clean-clone runs of sessions 6 and 7; warm-cache runs passed.
    The package's warm-up (``takeover.envs.warmup``, issue 18) compiles every kernel
    signature under the cache's file lock, so the workers only load from the cache, and two
    test runs started at once on one checkout compile one after the other."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has compiled
        return
    from takeover.envs.warmup import warm_up
    from takeover.supervisor.humans.warmup import warm_humans

    warm_up(warm_humans)
