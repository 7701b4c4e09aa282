"""Whether a change to the step kernel made it faster: this checkout's kernel against another
checkout's (``git worktree add /tmp/ref main``, say), in one process, bit for bit.

Both kernels step copies of one batch (the mixed world after a warm-up, do-nothing actions,
autoreset) in alternated windows of a few hundred microseconds, and the ratio of each pair
of neighbouring windows is taken, so that load which comes and goes on a shared machine hits
both sides of it. The median ratio is stable to about 1% on a loaded 2-core machine, where
timing the two in separate processes scatters by 30% or more. Both batches must stay
bit-identical (a speedup must not change a single bit), which the report checks (the
worlds' arrays; not the scratch room after them).

    python -m takeover.experiments.benchmarks.kernel_ab /tmp/ref [--sizes 1,16,256,4096]
        [--threads T] [--json]

The reference's ``envs/dynamics.py`` is loaded as a second module over this checkout's
``layout``, ``controllers`` and ``scenarios``, so only a change within ``dynamics`` (and the
three-buffer ``Batch`` layout both share) can be compared this way. This checkout's kernel
is loaded the same way, as a fresh copy compiled in this process, and the two batches trade
kernels every other round: with this checkout's cached kernel on one copy of the batch
against the reference compiled afresh on the other, the same kernel on both sides measured
0.94-0.96 (the kernels' and the buffers' places in memory); now 1.00 +- 0.02. Run it as its own
process (as the test does): a second kernel compiled into a process that goes on to use the
first is not something the rest of the code base expects, so ``reference_kernel`` takes the
module out of ``sys.modules`` again when the comparison is done.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np

SPARE = 4096
"""Elements of room added after each buffer of both sides' batches (for their scratch)."""
REFERENCE = "takeover.envs._reference_dynamics"
"""The name the reference's ``dynamics`` is loaded under (numba needs the module in
``sys.modules`` while it compiles the module's functions)."""
THIS = "takeover.envs._this_dynamics"
"""The name this checkout's ``dynamics`` copy is loaded under."""


@contextlib.contextmanager
def reference_kernel(tree: str | Path, name: str = REFERENCE) -> Iterator[ModuleType]:
    """The ``dynamics`` module of the checkout at ``tree``, as a module of its own, for the
    duration of the ``with``; afterwards it is no longer in ``sys.modules``.

    It is loaded from a copy in a temporary folder, so numba caches it there and the copy
    goes with the folder. Loaded in place it would be cached in ``tree``'s own
    ``envs/__pycache__``, keyed by file, function and signature but not module name: that
    checkout's ``takeover.envs.dynamics`` then loads code compiled as this module, whose
    environment names a module it cannot import (every kernel test fails with
    ``No module named 'takeover.envs._reference_dynamics'``), and this module could load
    code compiled as ``takeover.envs.dynamics``, whose symbols may coincide with this
    checkout's kernel's, so that the two sides of the A/B run one kernel."""
    path = Path(tree) / "envs" / "dynamics.py"
    if not path.is_file():
        raise SystemExit(f"no envs/dynamics.py under {tree}: pass the root of a checkout")
    with tempfile.TemporaryDirectory(prefix="kernel_ab_") as tmp:
        copy = Path(tmp) / "dynamics.py"
        shutil.copyfile(path, copy)
        spec = importlib.util.spec_from_file_location(name, copy)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
            yield module
        finally:
            sys.modules.pop(spec.name, None)


def compare(reference: ModuleType, worlds: int, rounds: int = 300, warmup: int = 20_000,
            threads: int = 1, this: ModuleType | None = None) -> dict:
    """Median (and 10th / 90th percentile) of this kernel's time (module ``this``; default
    the installed ``takeover.envs.dynamics``) over the reference's, per pair of neighbouring
    windows, and each one's median us per world-step; ``threads`` > 1 compares
    ``step_batch_threads`` on that many blocks."""
    from takeover.envs import dynamics
    from takeover.envs.dynamics import _offsets
    from takeover.envs.vector import make_vector_env

    env = make_vector_env("takeover/Highway-v2", worlds, threads=threads)
    env.reset(seed=0)
    actions = np.zeros((worlds, 2))
    for _ in range(max(50, warmup // worlds)):
        env.step(actions)
    b = env._batch
    # each side's copy of the buffers, with room to spare after them: a kernel keeps its
    # scratch after the worlds' arrays, and the reference's may want more than this
    # checkout's Batch leaves (``SPARE`` elements is far more than any has)
    f64, f32, i64 = (np.concatenate([x, np.zeros(SPARE, x.dtype)]) for x in (b.f64, b.f32, b.i64))
    ref = (f64, f32, i64)
    new = (f64.copy(), f32.copy(), i64.copy())
    calls = max(1, 400 // worlds)  # a window: a few hundred world-steps
    kernels: tuple[Callable[..., None], ...] = (
        (reference.step_batch, (this or dynamics).step_batch) if threads == 1
        else (reference.step_batch_threads, (this or dynamics).step_batch_threads))
    for kernel, bufs in zip(kernels, (ref, new)):
        kernel(*bufs, True)  # compile
    laps = np.zeros((rounds, 2))
    for r in range(rounds):
        for side in ((0, 1) if r % 2 else (1, 0)):
            # the two copies trade kernels every other round: a copy's place in memory
            # alone made one kernel 4-6% faster than the same kernel on the other copy
            kernel, bufs = kernels[side], (ref, new)[side ^ (r // 2) % 2]
            t = time.perf_counter()
            for _ in range(calls):
                kernel(*bufs, True)
            laps[r, side] = time.perf_counter() - t
    # the worlds' state: the buffers up to their ends (after them a kernel keeps scratch)
    off = _offsets(*b.i64[:5])
    ends = (off[8], off[11], off[-1])
    ratio = laps[:, 1] / laps[:, 0]
    us = laps / (calls * worlds) * 1e6
    return {"worlds": worlds, "threads": threads, "ratio": float(np.median(ratio)),
            "ratio_p10": float(np.percentile(ratio, 10)),
            "ratio_p90": float(np.percentile(ratio, 90)),
            "ref_us": float(np.median(us[:, 0])), "new_us": float(np.median(us[:, 1])),
            "world_steps": rounds * calls * worlds,
            "bit_identical": all(x[:end].tobytes() == y[:end].tobytes()
                                 for x, y, end in zip(ref, new, ends))}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="root of the checkout to compare against")
    parser.add_argument("--sizes", default="1,16,256,4096", help="world counts")
    parser.add_argument("--rounds", type=int, default=300, help="window pairs per size")
    parser.add_argument("--warmup", type=int, default=20_000,
                        help="world-steps of traffic before the timing")
    parser.add_argument("--threads", type=int, default=1,
                        help="compare the threaded kernels on this many blocks")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON list of the results instead of lines")
    args = parser.parse_args(argv)
    out = []
    from takeover.envs import dynamics

    here = Path(dynamics.__file__).resolve().parents[1]  # this checkout (or installed tree)
    with reference_kernel(args.reference) as reference, reference_kernel(here, THIS) as this:
        for n in (int(s) for s in args.sizes.split(",")):
            res = compare(reference, n, args.rounds, args.warmup, args.threads, this)
            out.append(res)
            if not args.json:
                print(f"{n:5d} worlds: this / reference {res['ratio']:.3f} (p10-p90 "
                      f"{res['ratio_p10']:.3f}-{res['ratio_p90']:.3f}), {res['new_us']:.2f} "
                      f"vs {res['ref_us']:.2f} us per world-step, {res['world_steps']} "
                      f"world-steps, bit-identical {res['bit_identical']}", flush=True)
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
