"""The numba warm-up (``takeover.envs.warmup``): processes that start together on an empty
disk cache step the worlds bit for bit as a process that compiled alone (issue 18), and the
cache's lock lets one process at a time in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from takeover.envs.warmup import LOCK_NAME, cache_lock

ROOT = Path(__file__).resolve().parents[1]

_HOLDER = """
import sys, time
from takeover.envs.warmup import cache_lock
with cache_lock():
    print("held", flush=True)
    sys.stdin.readline()  # the test says when the other process is at the lock
    time.sleep(1.0)
    print(json.dumps({"released": time.time()}), flush=True)
"""
_WAITER = """
import json, time
from takeover.envs.warmup import cache_lock
print("ready", flush=True)
with cache_lock() as waited:
    print(json.dumps({"acquired": time.time(), "waited": waited}), flush=True)
"""


def _python(code: str, cache: Path) -> subprocess.Popen:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    return subprocess.Popen([sys.executable, "-c", "import json\n" + code], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_the_cache_lock_lets_one_process_in_at_a_time(tmp_path):
    holder = _python(_HOLDER, tmp_path)
    waiter = None
    try:
        assert holder.stdout.readline().strip() == "held"
        waiter = _python(_WAITER, tmp_path)
        assert waiter.stdout.readline().strip() == "ready"
        holder.stdin.write("go\n")
        holder.stdin.flush()
        released = json.loads(holder.stdout.readline())["released"]
        got = json.loads(waiter.stdout.readline())
    finally:
        for p in (holder, waiter):
            if p is not None:
                p.kill()
                p.wait()
                p.stdin.close()
                p.stdout.close()
    assert got["acquired"] >= released  # never both inside
    assert got["waited"] >= 0.5  # it was at the lock while the holder slept 1 s
    assert (tmp_path / LOCK_NAME).is_file()  # the lock lives in NUMBA_CACHE_DIR


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = _python(_HOLDER, tmp_path)
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdin.close()
        holder.stdout.close()
    t0 = time.perf_counter()
    with cache_lock(tmp_path / LOCK_NAME) as waited:
        assert waited < 5.0
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.slow  # about 35 s on 2 cores: two cold compiles of every kernel, side by side
def test_processes_warming_up_together_on_an_empty_cache_match_a_lone_compile():
    """Two processes start at once on an empty cache, each warms up then runs every case of
    the benchmark (single and batched env, both action types, lane rows on and off,
    scripted humans, snapshots and queued seeds); their per-step digests equal those of a
    process that compiled alone in a cache of its own, and so do a later process's, reading
    the cache they left. No signature is compiled after the warm-up (else it could race)."""
    from takeover.experiments.benchmarks.numba_cache import run_trials

    report = run_trials(procs=2, trials=1, warm="lock", alongside=True, log=lambda _: None)
    (run,) = report["runs"]
    assert run["concurrent"] == [{}, {}]
    assert run["after"] == {}
    assert run["compiled_after_warmup"] == []
