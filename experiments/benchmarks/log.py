"""Intervention-log throughput: records/s written and read and bytes per record of the 2.0
columnar log against the schema-1.0 writer, on the same records in the same run.

The records are real: ``takeover/CutIn-v2`` driven by the env's cautious IDM driver (so
episodes run towards the 300-step limit, as a competent agent's do), with the default estimators' three scores (q_risk,
novelty, ttc), a scripted human holding control for ~10% of the steps, and the env's full
info dict. Writing includes every fsync, rename and journal/manifest write; reading is
``read_columns`` (the training reader) and, for both formats, ``read_log(...).episodes``
(the record-iterator API). ``columns`` is the column path (what the supervision engine
writes: each episode's arrays -> ``chunk_from_columns`` -> ``LogWriter.write_episodes``, no
``StepRecord`` per row), timed from the arrays; ``*_nosync`` are ``durable=False`` (no
per-episode fsync: what the disk costs). Targets (issue 12): >= 200k records/s written and
read (columns), <= 300 bytes a record. The machine's load average is reported with the
rates (a shared machine slows everything; the ratios are same-run), and ``*_per_cpu_s``
rates per CPU second of this process (what one free core would do; the disk's fsync wait
is not CPU time).

    python -m takeover.experiments.benchmarks.log      # or: takeover bench log
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from takeover.records import RunMeta, StepRecord, as_action_array


def episodes(n_episodes: int = 30, seed: int = 0) -> list[list[StepRecord]]:
    """Supervised-looking episodes from the real env (development seeds ``seed..``)."""
    import gymnasium as gym

    import takeover.envs  # noqa: F401
    from takeover.envs.drivers import IDMDriver

    env = gym.make("takeover/CutIn-v2")
    driver = IDMDriver()
    rng = np.random.default_rng(seed)
    out = []
    for e in range(n_episodes):
        obs, info = env.reset(seed=seed + e)
        driver.reset()
        recs: list[Any] = []
        human_left, done = 0, False
        while not done:
            action = driver(cast(Any, env.unwrapped))
            if human_left == 0 and rng.uniform() < 0.01:
                human_left = int(rng.integers(10, 40))
            human, human_left = human_left > 0, max(0, human_left - 1)
            nxt, reward, term, trunc, info = env.step(action)
            done = bool(term or trunc)
            act = as_action_array(action)
            end = str(info.get("reason", "")) if done else ""
            recs.append(StepRecord(
                episode=f"e{e:05d}", step=len(recs), time=float(info["time"]),
                wall_time=time.time(), obs=obs, agent_action=act, member_actions=None,
                human_action=act if human else None, action=act,
                controller="human" if human else "agent", phase="human" if human else "agent",
                scores={"q_risk": float(rng.beta(1, 20)), "novelty": float(rng.gamma(2, 0.5)),
                        "ttc": 1.0 / max(float(info["ttc"]), 1e-3)},
                threshold=0.5, reward=float(reward), terminated=bool(term),
                truncated=bool(trunc), reason=end, info=dict(info), outcome=end,
                terminal_obs=nxt if done else None))
            obs = nxt
        out.append(recs)
    env.close()
    return out


def _renamed(eps: list[list[StepRecord]], total: int) -> list[list[StepRecord]]:
    """``eps`` cycled under fresh episode ids until ``total`` records."""
    out, n, i = [], 0, 0
    while n < total:
        src = eps[i % len(eps)]
        eid = f"r{i:06d}"
        out.append([replace(r, episode=eid) for r in src])
        n, i = n + len(src), i + 1
    return out


def episode_columns(recs: list[StepRecord]) -> tuple[dict, dict, dict]:
    """One episode's records as the arrays an engine holds (the column path's input):
    ``chunk_from_columns``'s arguments."""
    from takeover.logio import chunks as ck

    c = ck.chunks_from_records(recs)[0]
    cols: dict = {f: c.cols[f] for f in ("step", *ck.F8, *ck.B1, *ck.ARR)}
    for f in ck.STR:  # codes into a table, as the engine holds them
        cols[f] = (c.cols[f], c.vocab[f])
    for f in ck.OPT:
        cols[f + "?"] = c.cols[f + "?"]
        if f in c.cols:
            cols[f] = c.cols[f]
    scores = {k: c.cols[f"score.{k}"] for k, _ in c.scores}
    info = {}
    for k, kind, masked in c.info:
        if kind in "fbis" and not masked:  # names as objects, as a batched env's info
            v = c.cols[f"info.{k}"]
            info[k] = (np.asarray(c.vocab[f"info.{k}"], object)[v] if kind == "s" else v, None)
            continue
        vals = [r.info.get(k) for r in recs]
        if all(isinstance(x, float) for x in vals):  # a float subclass (NotYet: NaN)
            info[k] = (np.array(vals, np.float64), None)
            continue
        # mixed types or missing on some steps: an object column, None where absent
        info[k] = (np.array(vals + [None], object)[:-1], None)
    return cols, scores, info


def _write_columns(run: Path, eps: list[tuple[str, tuple]], **kw) -> float:
    """The column path: each episode's arrays -> one chunk -> ``write_episodes`` (episodes
    ending together are made durable together, as the engine's batches do: 8 at a time)."""
    from takeover.logio import LogWriter, chunk_from_columns

    meta = RunMeta(run_id="bench", seed=0)
    start = time.perf_counter()
    with LogWriter(run, meta, **kw) as log:
        for k in range(0, len(eps), 8):
            log.write_episodes([(eid, chunk_from_columns(*arrays))
                                for eid, arrays in eps[k:k + 8]])
    return time.perf_counter() - start


def _write(writer_cls, run: Path, eps: list[list[StepRecord]], **kw) -> float:
    meta = RunMeta(run_id="bench", seed=0)
    start = time.perf_counter()
    with writer_cls(run, meta, **kw) as log:
        for recs in eps:
            for r in recs:
                log.write(r)
            log.end_episode()
    return time.perf_counter() - start


def _bytes(run: Path) -> int:
    return sum(p.stat().st_size for p in run.rglob("*") if p.is_file())


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


_cpu = [0.0]


def _cpu_timed(fn, *args, **kw) -> float:
    """``fn``'s wall seconds; its CPU seconds (this process, every thread) in ``_cpu[0]``."""
    c = time.process_time()
    wall = fn(*args, **kw)
    _cpu[0] = time.process_time() - c
    return wall


def main(records: int = 100_000, repeats: int = 3, n_episodes: int = 30,
         folder: str | None = None) -> dict[str, Any]:
    """Best-of-``repeats`` rates (noise only slows), the formats interleaved per repeat.
    ``v2`` is the default writer (an fsync per episode, as 1.0); ``v2_nosync`` is
    ``durable=False`` (no per-episode fsync), which shows what the disk costs."""
    from takeover.logio import LogWriter, LogWriterV1, read_columns, read_log

    eps = _renamed(episodes(n_episodes), records)
    n = sum(len(e) for e in eps)
    arrays = [(e[0].episode, episode_columns(e)) for e in eps]
    best: dict[str, float] = {}
    size: dict[str, int] = {}
    tmp = Path(tempfile.mkdtemp(prefix="takeover-bench-log-", dir=folder))
    try:
        for rep in range(repeats):
            for name, cls, kw in (("v2", LogWriter, {}), ("v1", LogWriterV1, {}),
                                  ("v2_nosync", LogWriter, {"durable": False}),
                                  ("columns", None, {}),
                                  ("columns_nosync", None, {"durable": False})):
                run = tmp / f"{name}-{rep}"
                t = {"write": (_cpu_timed(_write_columns, run, arrays, **kw) if cls is None
                               else _cpu_timed(_write, cls, run, eps, **kw))}
                cpu = {"write": _cpu[0]}
                size[name] = _bytes(run)
                if name in ("v2", "v1"):
                    t["read_records"] = _timed(lambda run=run: read_log(run).episodes)
                if name in ("v2", "columns"):
                    t["read_columns"] = _cpu_timed(_timed, lambda run=run: read_columns(run))
                    cpu["read_columns"] = _cpu[0]
                for k, v in t.items():
                    key = f"{name}_{k}_per_s"
                    best[key] = max(best.get(key, 0.0), n / v)
                for k, v in cpu.items():
                    key = f"{name}_{k}_per_cpu_s"
                    best[key] = max(best.get(key, 0.0), n / max(v, 1e-9))
                shutil.rmtree(run)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, Any] = {"records": n, "episodes": len(eps),
                           "mean_episode_steps": n / len(eps), **best}
    out["v2_bytes_per_record"] = size["v2"] / n
    out["v1_bytes_per_record"] = size["v1"] / n
    out["columns_bytes_per_record"] = size["columns"] / n
    out["write_speedup"] = best["v2_write_per_s"] / best["v1_write_per_s"]
    out["columns_write_x_records_path"] = best["columns_write_per_s"] / best["v2_write_per_s"]
    out["columns_nosync_write_x_records_path"] = (best["columns_nosync_write_per_s"]
                                                  / best["v2_nosync_write_per_s"])
    out["load_average_1min"] = os.getloadavg()[0]
    out["cpus"] = os.cpu_count()
    out["read_speedup_columns"] = best["v2_read_columns_per_s"] / best["v1_read_records_per_s"]
    out["size_ratio"] = out["v1_bytes_per_record"] / out["v2_bytes_per_record"]
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
