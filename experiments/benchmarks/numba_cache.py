"""Whether processes that compile the numba kernels into one empty disk cache at the same
moment still step the worlds bit for bit (issue 18: clean-clone test runs under xdist).

Each trial points ``NUMBA_CACHE_DIR`` at a fresh empty folder and starts ``--procs``
processes that wait for one signal, then import the envs and run the same cases (the single
and the batched env, both action types, ``observe_lanes`` on and off, scripted humans,
queued seeds and snapshots, seeded actions), each process in its own order of cases (as
xdist's workers run different tests, so they compile the kernels' signatures in different
orders). Every case's observations, rewards, dones and infos are hashed per step and
compared with a reference run in a cache of its own, compiled by one process alone. After
the concurrent processes, one more process runs the cases from the cache they left (what
the next test run, or the next worker to load a kernel, gets).

    python -m takeover.experiments.benchmarks.numba_cache [--procs 3] [--trials 5]
        [--warm none|lock] [--fork] [--steps 200] [--alongside] [--json]

``--warm lock`` runs the package's warm-up (``takeover.envs.warmup.warm_up`` with the
scripted humans' ``warm_humans``: every kernel compiled under the cache's file lock) in each
process before its cases; ``none`` is the package without the fix. ``--fork`` runs the
processes as ``experiments.episodes.run_jobs`` does: one parent (warms up or not and) forks
them. ``--alongside`` runs the reference at the same time as the first trial (in its own
cache: it still compiles alone), which halves the wall time on 2 cores
(``tests/test_numba_cache.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

STEPS = 200


def _cases() -> dict[str, dict[str, Any]]:
    out = {}
    for at in ("continuous", "discrete"):
        for lanes in (False, True):
            for n in (0, 3):  # 0: the single HighwayEnv
                out[f"{'single' if n == 0 else 'batch'}-{at}-{'lanes' if lanes else 'k'}"] = dict(
                    n=n, action_type=at, observe_lanes=lanes)
    out["batch-humans-continuous"] = dict(n=4, action_type="continuous", humans=True)
    out["batch-humans-discrete"] = dict(n=4, action_type="discrete", humans=True,
                                        observe_lanes=True)
    return out


CASES = _cases()


def _actions(rng: np.random.Generator, n: int, discrete: bool) -> np.ndarray:
    if discrete:
        return rng.choice(5, size=max(n, 1), p=[0.6, 0.15, 0.05, 0.1, 0.1]).astype(np.int64)
    a = rng.uniform(-1, 1, size=(max(n, 1), 2)) * np.array([0.2, 1.0])
    return a.astype(np.float32)


def run_case(name: str, seed: int = 7, steps: int = STEPS) -> list[str]:
    """One hex digest per step (obs, reward, dones, info) of case ``name``, ``steps`` steps
    (events past the last step are skipped)."""
    import takeover.envs  # noqa: F401
    from takeover.envs import HighwayEnv
    from takeover.envs.vector import HighwayVectorEnv

    c = dict(CASES[name])
    n = c.pop("n")
    humans = c.pop("humans", False)
    discrete = c["action_type"] == "discrete"
    rng = np.random.default_rng(seed)
    out = []

    def digest(*arrays: Any) -> str:
        h = hashlib.sha256()
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def info_arrays(info: dict) -> list:
        return [np.asarray(info[k]) for k in sorted(info)
                if isinstance(info[k], (np.ndarray, float, int, bool, np.generic))
                and np.asarray(info[k]).dtype != object]

    if n == 0:
        env = HighwayEnv(scenario="mixed", **c)
        obs, info = env.reset(seed=seed)
        out.append(digest(obs, *info_arrays(info)))
        snap = None
        for t in range(steps):
            if t == 50:
                snap = env.get_state()
            if t == 120 and snap is not None:
                env.set_state(snap)
            if t == 150:
                env.set_mrm(True)
            obs, r, term, trunc, info = env.step(_actions(rng, 0, discrete)[0])
            out.append(digest(obs, np.float64(r), np.bool_(term), np.bool_(trunc),
                              *info_arrays(info)))
            if term or trunc:
                obs, info = env.reset(seed=seed + t)
        return out

    from takeover.types import HumanViews

    venv = HighwayVectorEnv(n, scenario="mixed", **c)
    obs, info = venv.reset(seed=[seed + i for i in range(n)])
    venv.set_next_seeds([1000 + seed + i for i in range(n)])
    hum = None
    if humans:
        from takeover.supervisor.humans import ScriptedHumans

        hum = ScriptedHumans(n, "average")
        hum.reset(np.arange(n), [seed + i for i in range(n)])
    out.append(digest(obs, *info_arrays(info)))
    for t in range(steps):
        a = _actions(rng, n, discrete)
        if hum is not None:
            phase = np.array([(t // 20 + i) % 4 for i in range(n)], dtype=np.int8)
            views = HumanViews(phase, phase == 1, np.full(n, (t % 20) * 0.1),
                               np.full(n, 0.5), np.full(n, t * 0.1))
            hi = hum.act(obs, info, venv, views)
            a = np.where(hi.has_action.reshape((-1,) + (1,) * (a.ndim - 1)), hi.action, a)
            out.append(digest(hi.action, hi.has_action, hi.wants_control, hi.releases,
                              hum.state))
        if t == 60:
            s = venv.get_state(1)
        if t == 90:
            venv.set_state(0, s)
            venv.set_mrm(np.arange(n) % 2 == 0)
        if t == 130:
            venv.set_mrm(np.zeros(n, bool))
        obs, r, term, trunc, info = venv.step(a)
        done = term | trunc
        if done.any():
            venv.set_next_seeds([2000 + seed + t + i for i in range(n)])
        out.append(digest(obs, r, term, trunc, *info_arrays(info)))
    return out


def child(order_seed: int, go: str | None, out_path: str, warm: str, steps: int = STEPS
          ) -> None:
    """Wait for ``go`` (a file), (warm up,) then run every case in an order drawn from
    ``order_seed`` (-1: the listed order); write the digests to ``out_path``."""
    if go:
        while not os.path.exists(go):
            time.sleep(0.002)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"errors": {}}
    try:
        before = None
        if warm != "none":
            warm_all()
            before = cache_entries()
        result["warmup_s"] = time.perf_counter() - t0
        names = list(CASES)
        if order_seed >= 0:
            np.random.default_rng(order_seed).shuffle(names)
        for name in names:
            try:
                result[name] = run_case(name, steps=steps)
            except Exception as e:  # noqa: BLE001  (a wrong kernel may raise anything)
                result["errors"][name] = f"{type(e).__name__}: {e}"
        if before is not None:  # signatures the warm-up missed (anyone's, this process's too)
            result["compiled_after_warmup"] = sorted(cache_entries() - before)
    finally:
        result["seconds"] = time.perf_counter() - t0
        Path(out_path).write_text(json.dumps(result))


def cache_entries() -> set[str]:
    """``file: signature`` of every entry in the indexes under ``NUMBA_CACHE_DIR``."""
    import pickle

    out: set[str] = set()
    for index in Path(os.environ["NUMBA_CACHE_DIR"]).rglob("*.nbi"):
        try:
            with open(index, "rb") as f:
                pickle.load(f)  # numba's version
                _, overloads = pickle.loads(f.read())
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
        out.update(f"{index.name}: {key[0]}" for key in overloads)
    return out


def warm_all() -> float:
    """The package's warm-up of every kernel the cases use (the env's and the humans')."""
    from takeover.envs.warmup import warm_up
    from takeover.supervisor.humans.warmup import warm_humans

    return warm_up(warm_humans)


def _env(cache: str) -> dict[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, SDL_VIDEODRIVER="dummy",
               SDL_AUDIODRIVER="dummy", MPLBACKEND="Agg")
    root = str(Path(__file__).resolve().parents[2])
    if (Path(root) / "takeover" / "__init__.py").is_file():  # a source checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _spawn(cache: str, order_seed: int, go: str | None, out: str, warm: str, steps: int
           ) -> subprocess.Popen:
    code = ("from takeover.experiments.benchmarks.numba_cache import child; "
            f"child({order_seed}, {go!r}, {out!r}, {warm!r}, {steps})")
    return subprocess.Popen([sys.executable, "-c", code], env=_env(cache))


def _fork_children(cache: str, go: str, outs: list[str], warm: str, steps: int
                   ) -> subprocess.Popen:
    """One parent that (warms up and) forks one child per ``outs``, as ``run_jobs`` does,
    then releases them all at once (``go``)."""
    code = f"""
import os
from pathlib import Path
from takeover.experiments.benchmarks.numba_cache import child, warm_all
if {warm!r} != "none":
    warm_all()
else:
    import takeover.envs  # noqa: F401  (importing compiles nothing that the cases use)
pids = []
for k, out in enumerate({outs!r}):
    pid = os.fork()
    if pid == 0:
        try:
            child(k, {go!r}, out, "none", {steps})
        finally:
            os._exit(0)
    pids.append(pid)
Path({go!r}).touch()
for pid in pids:
    os.waitpid(pid, 0)
"""
    return subprocess.Popen([sys.executable, "-c", code], env=_env(cache))


def _run(cache: str, procs: int, warm: str, fork: bool, tmp: str, tag: str,
         steps: int = STEPS, alongside: list[subprocess.Popen] | None = None
         ) -> list[dict[str, Any]]:
    """Run ``procs`` processes on ``cache`` released at once; their results. ``alongside``
    are processes started earlier (on other caches) to wait for as well."""
    go = os.path.join(tmp, f"go-{tag}")
    outs = [os.path.join(tmp, f"{tag}-{k}.json") for k in range(procs)]
    if fork:
        ps = [_fork_children(cache, go, outs, warm, steps)]
    else:
        ps = [_spawn(cache, k, go, out, warm, steps) for k, out in enumerate(outs)]
        time.sleep(1.5)  # let the interpreters start (numpy imported) before the release
        Path(go).touch()
    for p in ps + list(alongside or ()):
        p.wait()
    res = []
    for o in outs:
        try:
            res.append(json.loads(Path(o).read_text()))
        except FileNotFoundError:
            res.append({"errors": {"*": "no result (the process died)"}, "seconds": 0.0})
    return res


def _diff(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """Case -> first differing step (or the error)."""
    bad: dict[str, Any] = dict(got.get("errors", {}))
    for name in CASES:
        if name in bad:
            continue
        a, b = ref.get(name), got.get(name)
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a or [], b or [])) if x != y),
                         None)
            bad[name] = f"differs from step {first}"
    return bad


def run_trials(procs: int = 3, trials: int = 5, warm: str = "none", fork: bool = False,
               steps: int = STEPS, alongside: bool = False,
               log: Any = None) -> dict[str, Any]:
    """The reference, then ``trials`` trials of ``procs`` processes on a fresh cache each
    plus one process on the cache they left; the report (see ``main``).

    ``alongside`` runs the reference (in a cache of its own, still compiled by one process
    alone) at the same time as the first trial: about half the wall time on 2 cores, for
    tests; the reference's cold time is then not a solo time."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as tmp:
        ref_cache = os.path.join(tmp, "ref-cache")
        ref_out = os.path.join(tmp, "ref.json")
        t0 = time.perf_counter()
        ref_p = _spawn(ref_cache, -1, None, ref_out, "none", steps)
        first: list[dict[str, Any]] | None = None
        if alongside and trials:
            first = _run(os.path.join(tmp, "cache-0"), procs, warm, fork, tmp, "t0", steps,
                         alongside=[ref_p])
        ref_p.wait()
        cold_s = time.perf_counter() - t0
        ref = json.loads(Path(ref_out).read_text())
        if ref["errors"]:
            raise RuntimeError(f"the reference run failed: {ref['errors']}")
        warm_ref = _run(ref_cache, 1, "none", False, tmp, "warmref", steps)[0]
        if _diff(ref, warm_ref):
            raise RuntimeError(f"the warm-cache run differs from the cold one: "
                               f"{_diff(ref, warm_ref)}")
        report: dict[str, Any] = {
            "procs": procs, "trials": trials, "warm": warm, "fork": fork, "steps": steps,
            "reference_cold_s": round(cold_s, 1), "reference_alongside": alongside,
            "reference_warm_s": round(warm_ref["seconds"], 1), "runs": []}
        log(f"reference: cold {cold_s:.1f} s{' (alongside trial 0)' if alongside else ''}, "
            f"warm {warm_ref['seconds']:.1f} s")
        for trial in range(trials):
            cache = os.path.join(tmp, f"cache-{trial}")
            got = first if trial == 0 and first is not None else _run(
                cache, procs, warm, fork, tmp, f"t{trial}", steps)
            after = _run(cache, 1, "none", False, tmp, f"after{trial}", steps)[0]
            row: dict[str, Any] = {"trial": trial,
                   "concurrent": [_diff(ref, g) for g in got],
                   "seconds": [round(g.get("seconds", 0.0), 1) for g in got],
                   "warmup_s": [round(g.get("warmup_s", 0.0), 1) for g in got],
                   "compiled_after_warmup": sorted({k for g in got
                                                    for k in g.get("compiled_after_warmup", ())}),
                   "after": _diff(ref, after)}
            report["runs"].append(row)
            nbad = sum(bool(d) for d in row["concurrent"])
            log(f"trial {trial}: {nbad}/{procs} concurrent processes differ, "
                f"after: {len(row['after'])} cases differ; {row}")
    runs = report["runs"]
    report["processes_differing"] = sum(sum(bool(d) for d in r["concurrent"]) for r in runs)
    report["cases_differing"] = sum(sum(len(d) for d in r["concurrent"]) for r in runs)
    report["after_runs_differing"] = sum(bool(r["after"]) for r in runs)
    return report


_TINY_MODULE = """
from numba import njit
import numpy as np

TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.float32,
         np.float64, np.complex128]


@njit(cache=True)
def f(x):
    return x * 3 + 1


def results():
    return " ".join(f"{type(f(t(2))).__name__}:{f(t(2))}" for t in TYPES)
"""
_TINY_CHILD = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import tiny
k, go, lock = int(sys.argv[2]), sys.argv[3], sys.argv[4] == "lock"
if lock:
    from takeover.envs.warmup import cache_lock
while not os.path.exists(go):
    time.sleep(0.0005)
if k < 0:
    print(tiny.results())
elif lock:
    with cache_lock():
        tiny.f(tiny.TYPES[k](2))
else:
    tiny.f(tiny.TYPES[k](2))
"""


def tiny_trials(trials: int = 10, warm: str = "none", log: Any = None) -> dict[str, Any]:
    """numba's cache race itself, on one tiny function: 10 processes, each compiling ``f``
    for another argument type, released at once on an empty cache; then one process
    loads every signature and its results are compared with those of a process that
    compiled alone. Numba saves a signature by reading the function's index, taking the
    first free data-file number and writing both back, unlocked: two processes can both
    take ``.1.nbc`` and leave the index naming a file that holds another signature's
    code. A tiny function compiles in milliseconds, so the processes' saves meet within
    that window far more often than the world kernels' do. ``warm="lock"``: each process
    compiles under ``takeover.envs.warmup.cache_lock``."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="numba_tiny_") as tmp:
        Path(tmp, "tiny.py").write_text(_TINY_MODULE)
        go = os.path.join(tmp, "go")
        Path(go).touch()

        def check(cache: str) -> str:
            return subprocess.run([sys.executable, "-c", _TINY_CHILD, tmp, "-1", go, warm],
                                  env=_env(cache), capture_output=True, text=True,
                                  check=True).stdout.strip()

        ref = check(os.path.join(tmp, "ref"))
        bad = []
        for trial in range(trials):
            cache, go = os.path.join(tmp, f"c{trial}"), os.path.join(tmp, f"go{trial}")
            ps = [subprocess.Popen([sys.executable, "-c", _TINY_CHILD, tmp, str(k), go, warm],
                                   env=_env(cache)) for k in range(10)]
            time.sleep(4.0 if warm == "lock" else 2.0)  # numba (and the envs) imported
            Path(go).touch()
            for p in ps:
                p.wait()
            got = check(cache)
            wrong = [f"{r} (expected {e})" for r, e in zip(got.split(), ref.split()) if r != e]
            bad.append(wrong)
            log(f"tiny trial {trial}: {wrong or 'every signature right'}")
    return {"trials": trials, "warm": warm, "reference": ref,
            "trials_wrong": sum(bool(b) for b in bad), "wrong": bad}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--warm", default="none", choices=("none", "lock"))
    ap.add_argument("--fork", action="store_true",
                    help="one parent forks the processes (as run_jobs)")
    ap.add_argument("--steps", type=int, default=STEPS, help="steps per case")
    ap.add_argument("--alongside", action="store_true",
                    help="run the reference at the same time as the first trial")
    ap.add_argument("--tiny", action="store_true",
                    help="the race on one tiny function instead of the world's kernels")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.tiny:
        report = tiny_trials(args.trials, args.warm)
        print(json.dumps(report) if args.json else
              f"{report['trials_wrong']} of {args.trials} trials left a wrong signature")
        return report
    report = run_trials(args.procs, args.trials, args.warm, args.fork, args.steps,
                        args.alongside)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['processes_differing']} of {args.procs * args.trials} concurrent "
              f"processes ({report['cases_differing']} cases) and "
              f"{report['after_runs_differing']} of {args.trials} later runs "
              "differed from the reference")
    return report


if __name__ == "__main__":
    main()
