"""Compile the numba kernels into their disk cache one process at a time.

Why: numba's disk cache (``@njit(cache=True)``) is not safe for processes that fill an empty
cache together. To save a new signature of a function, numba reads the function's index,
takes the first free data-file number and writes the index and the data file back, with no
lock. Two processes adding different signatures of one function at the same moment (the
world kernel's helpers are compiled once with a constant ``Literal[int](0)`` lane or slot and
once with any ``int64``) can both take ``.1.nbc``, and the index can end up naming one
signature's file that holds the other signature's machine code. A process that loads that
entry runs the wrong code, silently: on clean clones, one of pytest-xdist's two workers
failed the bit-for-bit kernel and replay tests at random, and the same holds for
``experiments.episodes.run_jobs``'s workers or any two ``takeover`` processes started at
once on a fresh install (``experiments/benchmarks/numba_cache.py`` reproduces it).

:func:`warm_up` runs every kernel signature the env layer uses (the single and the batched
env, both action types, ``observe_lanes`` on and off, snapshots, the minimal-risk manoeuvre,
queued seeds and the reference drivers) under an exclusive file lock on the cache, so the
first process compiles and saves everything while the others wait, then load it all from
the cache. Later layers pass their own warm-ups in (``warm_up(warm_humans)`` with
``takeover.supervisor.humans.warmup.warm_humans``): this module imports no later layer. With
a warm cache it costs about a second (loading, not compiling); in a forked child whose
parent warmed up it costs nothing more, as the compiled code is inherited.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCK_NAME = "takeover-numba-warmup.lock"
"""The lock file's name, inside ``NUMBA_CACHE_DIR`` when one is set."""


def lock_path() -> Path:
    """The lock file shared by every process that compiles into the same cache.

    With ``NUMBA_CACHE_DIR`` set, the lock lives inside that folder (processes of different
    users or temp folders that share the cache share the lock). Without it numba caches
    each module in the ``__pycache__`` beside its source, so the key is the installed
    package's folder, and the lock lives in the temp folder (a read-only install still gets
    one)."""
    from numba.core import config

    cache = str(getattr(config, "CACHE_DIR", "") or "")
    if cache:
        try:
            os.makedirs(cache, exist_ok=True)
            if os.access(cache, os.W_OK):
                return Path(cache) / LOCK_NAME
        except OSError:
            pass
        key = os.path.abspath(cache)
    else:
        key = str(Path(__file__).resolve().parent.parent)  # the layers' root folder
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"takeover-numba-{digest}.lock"


@contextlib.contextmanager
def cache_lock(path: Path | None = None) -> Iterator[float]:
    """Hold the cache's exclusive lock (``fcntl.flock``); yields the seconds spent waiting.

    The kernel releases the lock when its holder exits or dies, so a killed warm-up leaves
    no stale lock behind."""
    path = lock_path() if path is None else path
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def warm_envs() -> None:
    """Run every env kernel once with each argument type the env layer passes it.

    A kernel's signature depends on its arguments' types, not on the branch taken, so one
    call of each entry point per configuration compiles everything; the configurations are
    the ones that change what the wrappers pass (action type, ``observe_lanes``) and the
    entry points are every public path into the kernels."""
    import numpy as np

    from takeover.envs.drivers import ConstantSpeedDriver, IDMDriver, StandstillDriver
    from takeover.envs.highway import HighwayEnv
    from takeover.envs.vector import HighwayVectorEnv

    for action_type in ("continuous", "discrete"):
        for lanes in (False, True):
            kw: dict[str, Any] = dict(scenario="mixed", action_type=action_type,
                                      observe_lanes=lanes)
            env = HighwayEnv(**kw)
            env.reset(seed=0)
            snap = env.get_state()
            for driver in (IDMDriver(), ConstantSpeedDriver(), StandstillDriver()):
                env.step(driver(env))
            env.set_mrm(True)
            env.step(ConstantSpeedDriver()(env))
            env.set_state(snap)
            env.set_state(snap.to_bytes())
            env.close()

            venv = HighwayVectorEnv(2, **kw)
            venv.reset(seed=[0, 1])
            venv.set_next_seeds([2, None])
            act = (np.zeros(2, np.int64) if action_type == "discrete"
                   else np.zeros((2, 2), np.float32))
            venv.step(act)
            venv.set_mrm(np.array([True, False]))
            venv.set_state(0, venv.get_state(1))
            venv.step(act)
            venv.reset_worlds(np.array([1]), [3])
            venv.set_rows(venv.get_rows(np.array([0])), start=1)
            venv.step(act)
            venv.close()


def warm_up(*more: Callable[[], object]) -> float:
    """Compile (or load from the disk cache) every env kernel, then run each of ``more``
    (later layers' warm-ups), all under the cache's lock; returns the seconds it took.

    Call it before starting processes that may compile kernels at the same time (xdist
    workers, ``run_jobs``'s pool), or at the start of each of them."""
    t0 = time.perf_counter()
    with cache_lock():
        warm_envs()
        for f in more:
            f()
    return time.perf_counter() - t0


__all__ = ["LOCK_NAME", "cache_lock", "lock_path", "warm_envs", "warm_up"]
