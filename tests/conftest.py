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
    The race itself is open (issue 18's note); this keeps CI honest meanwhile."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has compiled
        return
    import numpy as np

    import takeover.envs  # noqa: F401
    from takeover.envs import HighwayEnv
    from takeover.envs.vector import make_vector_env
    from takeover.supervisor.humans import ScriptedHumans
    from takeover.types import HumanViews

    for action_type, act in (("discrete", 0), ("continuous", np.zeros(2, np.float32))):
        env = HighwayEnv(scenario="mixed", action_type=action_type)
        env.reset(seed=0)
        env.step(act)
        venv = make_vector_env("takeover/Highway-v2", 2, action_type=action_type)
        venv.reset(seed=[0, 1])
        obs, _, _, _, info = venv.step(np.stack([act, act]))
        views = HumanViews(np.full(2, 2, np.int8), np.zeros(2, bool), np.zeros(2), np.zeros(2),
                           np.zeros(2))
        ScriptedHumans(2, "expert").act(obs, info, venv, views)  # phase 2: the human drives
        venv.close()
