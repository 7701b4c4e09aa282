"""``takeover log``: check, summarise and export intervention logs.

``check`` is for scripts (``--json``, exit codes), ``show`` for people, ``export`` for other
tools (Minari datasets, Parquet tables with one row per step). Only complete, intact
episodes are summarised or exported; the rest is reported, never mixed in.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from takeover.control import count_interventions, fallback_segments
from takeover.logio import LogError, LogReadResult, find_logs, read_log
from takeover.records import StepRecord

LogPath = Annotated[Path, typer.Argument(help="run directory of the log")]
app = typer.Typer(help="Check, summarise and export intervention logs.", no_args_is_help=True)

EXIT_OK, EXIT_DAMAGED = 0, 2
"""``log check``: 0 every log intact and complete; 2 damage, an interrupted run, or no log."""
CONTROLLERS = ("agent", "human", "fallback")


def _load(path: Path) -> LogReadResult:
    try:
        return read_log(path)
    except LogError as e:  # includes SchemaVersionError
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_DAMAGED) from None


def exit_code(res: LogReadResult) -> int:
    """0 clean; 2 damaged (dropped frames, checksum mismatch, missing or copied files,
    non-finite actions) or interrupted (an unfinished or unjournaled episode)."""
    return EXIT_OK if res.status == "ok" else EXIT_DAMAGED


_TOTALS = ("complete", "incomplete", "damaged", "records", "dropped", "unlisted")


@app.command()
def check(
    path: Annotated[Path, typer.Argument(help="a log's run directory, or a run folder: every "
                                              "log under it is checked")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Validate every log at or under PATH: complete / incomplete / damaged episodes, records,
    dropped frames.

    ``--json`` prints one object: the totals, ``status`` (``ok``, ``interrupted``,
    ``damaged``) and ``logs`` (each log's own result, by path relative to PATH). Exit code 0 =
    every log clean, 2 = damage, an interrupted run, or no log found.
    """
    if not path.is_dir():
        typer.echo(f"error: {path} is not a directory; pass a log's run directory or a run "
                   "folder", err=True)
        raise typer.Exit(EXIT_DAMAGED)
    logs = find_logs(path)
    if not logs:
        typer.echo(f"error: no log under {path} (a log has meta.json, journal or episodes/)",
                   err=True)
        raise typer.Exit(EXIT_DAMAGED)
    results: dict[str, dict] = {}
    for log in logs:
        rel = log.relative_to(path).as_posix() or "."
        try:
            res = read_log(log)
        except LogError as e:
            results[rel] = {"status": "damaged", "ok": False, "problems": [str(e)],
                            **{k: 0 for k in _TOTALS}, "error": str(e)}
            continue
        results[rel] = res.summary()
    statuses = [r["status"] for r in results.values()]
    status = ("damaged" if "damaged" in statuses else
              "interrupted" if "interrupted" in statuses else "ok")
    code = EXIT_OK if status == "ok" else EXIT_DAMAGED
    out = {"path": str(path), "status": status, "ok": status == "ok", "exit_code": code,
           **{k: sum(r[k] for r in results.values()) for k in _TOTALS}, "logs": results}
    if as_json:
        typer.echo(json.dumps(out))
        raise typer.Exit(code)
    for rel, r in results.items():
        where = path if rel == "." else path / rel
        typer.echo(f"{where}: {r['status']}: {r['complete']} complete, {r['incomplete']} "
                   f"incomplete, {r['damaged']} damaged episodes; {r['records']} records, "
                   f"{r['dropped']} dropped")
        for p in r.get("problems", []):
            typer.echo(f"  - {p}")
        for eid in r.get("incomplete_ids", []):
            typer.echo(f"  - episode {eid}: incomplete (the writer was interrupted)")
        for eid in r.get("unlisted_ids", []):
            typer.echo(f"  - episode {eid}: complete, but the writer was interrupted before "
                       "journaling it")
    if len(results) > 1:
        typer.echo(f"{len(results)} logs: {status}")
    raise typer.Exit(code)


# ---------------------------------------------------------------- show


def control_period(records: Sequence[StepRecord]) -> float:
    """Seconds per control step, from the records' simulation times (0.1 s if unknown)."""
    t = np.array([r.time for r in records], dtype=float)
    d = np.diff(t)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size:
        return float(np.median(d))
    return float(t[0]) if t.size and math.isfinite(t[0]) and t[0] > 0 else 0.1


def episode_summary(records: Sequence[StepRecord]) -> dict[str, Any]:
    """Who drove how long, human interventions (``takeover.control``: segments the human
    held control; a fallback / MRM is counted apart, a key press that changed nothing is
    not one), takeover requests and takeover times of one episode (a takeover time is
    ``takeover_time - tor_time`` of a requested takeover)."""
    dt = control_period(records)
    ctrl = [r.controller for r in records]
    out: dict[str, Any] = {"episode": records[0].episode, "steps": len(records)}
    for c in CONTROLLERS:
        n = sum(1 for x in ctrl if x == c)
        out[f"{c}_steps"] = n
        out[f"{c}_s"] = n * dt
    out["interventions"] = count_interventions(ctrl)  # takeover.control: human-held segments
    out["mrm"] = len(fallback_segments(ctrl))
    out["switches"] = sum(1 for i in range(1, len(ctrl)) if ctrl[i] != ctrl[i - 1])
    tors = {r.tor_time for r in records if math.isfinite(r.tor_time)}
    out["tors"] = len(tors)
    pairs = {(r.tor_time, r.takeover_time) for r in records
             if math.isfinite(r.tor_time) and math.isfinite(r.takeover_time)
             and r.takeover_time >= r.tor_time}
    out["takeover_times"] = sorted(b - a for a, b in pairs)
    out["reason"] = records[-1].outcome or records[-1].reason
    out["return"] = float(sum(r.reward for r in records))
    return out


@app.command()
def show(path: LogPath) -> None:
    """Summary table: per episode who drove how long, interventions and takeover times."""
    from rich.console import Console
    from rich.table import Table

    res = _load(path)
    title = f"{path} (run {res.meta.run_id if res.meta else '?'})"
    table = Table(title=title)
    for col in ("episode", "steps", "agent s", "human s", "fallback s", "interventions",
                "MRMs", "TORs", "takeover s", "outcome"):
        table.add_column(col, justify="left" if col in ("episode", "outcome") else "right")
    rows = [episode_summary(recs) for recs in res.episodes.values() if recs]
    for s in rows:
        tt = ", ".join(f"{x:.1f}" for x in s["takeover_times"]) or "-"
        table.add_row(s["episode"], str(s["steps"]), f"{s['agent_s']:.1f}",
                      f"{s['human_s']:.1f}", f"{s['fallback_s']:.1f}", str(s["interventions"]),
                      str(s["mrm"]), str(s["tors"]), tt, s["reason"] or "-")
    if rows:
        all_tt = [x for s in rows for x in s["takeover_times"]]
        table.add_section()
        table.add_row(
            f"total ({len(rows)})", str(sum(s["steps"] for s in rows)),
            *(f"{sum(s[f'{c}_s'] for s in rows):.1f}" for c in CONTROLLERS),
            str(sum(s["interventions"] for s in rows)), str(sum(s["mrm"] for s in rows)),
            str(sum(s["tors"] for s in rows)),
            f"median {np.median(all_tt):.1f}" if all_tt else "-", "")
    console = Console()
    console.print(table)
    if res.incomplete or res.damaged:
        console.print(f"[yellow]not shown: {len(res.incomplete)} incomplete, "
                      f"{len(res.damaged)} damaged episodes (run `takeover log check`)[/]")


# ---------------------------------------------------------------- export


def _vector(prefix: str, a: np.ndarray | None, width: int) -> dict[str, float]:
    flat = np.full(width, np.nan) if a is None else np.asarray(a, dtype=float).reshape(-1)
    return {f"{prefix}_{i}": float(flat[i]) if i < flat.size else math.nan for i in range(width)}


def flat_fields(episodes: Iterable[Sequence[StepRecord]]) -> list[str]:
    """Union of scores/info keys, so every step carries the same keys (Minari needs it)."""
    scores: set[str] = set()
    info: set[str] = set()
    for recs in episodes:
        for r in recs:
            scores.update(r.scores)
            info.update(r.info)
    return [f"score.{k}" for k in sorted(scores)] + [f"info.{k}" for k in sorted(info)]


def flat_step(rec: StepRecord, keys: Sequence[str], act_dim: int) -> dict[str, Any]:
    """The record's per-step fields as scalars (no arrays: Minari's Arrow backend cannot
    load 1-D info arrays); a missing human action is NaN with ``has_human_action=False``."""
    row: dict[str, Any] = {
        "episode": rec.episode, "step": rec.step, "time": rec.time, "wall_time": rec.wall_time,
        "controller": rec.controller, "phase": rec.phase, "transition": rec.transition,
        "gate_request": rec.gate_request, "threshold": rec.threshold,
        "tor_time": rec.tor_time, "takeover_time": rec.takeover_time, "reward": rec.reward,
        "terminated": rec.terminated, "truncated": rec.truncated, "reason": rec.reason,
        "has_human_action": rec.human_action is not None,
        "has_human_intent": rec.human_intent is not None,
        "n_members": 0 if rec.member_actions is None else int(rec.member_actions.shape[0]),
    }
    row.update(_vector("agent_action", rec.agent_action, act_dim))
    row.update(_vector("human_action", rec.human_action, act_dim))
    row.update(_vector("human_intent", rec.human_intent, 2))
    row.update(_vector("action", rec.action, act_dim))
    for k in keys:
        group, name = k.split(".", 1)
        src = rec.scores if group == "score" else rec.info
        v = src.get(name)
        row[k] = _info_value(v)
    return row


def _info_value(v: Any) -> Any:
    """Info values as one type per key across steps: numbers become float, others text."""
    if v is None:
        return math.nan
    if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
        return float(v)
    return str(v)


def _type_consistent(rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    """A key holding text in some steps and numbers in others becomes text everywhere."""
    for k in keys:
        if any(isinstance(r[k], str) for r in rows):
            for r in rows:
                if not isinstance(r[k], str):
                    r[k] = "" if isinstance(r[k], float) and math.isnan(r[k]) else str(r[k])


def to_parquet(res: LogReadResult, out: Path) -> int:
    """One row per step of every complete episode; ``obs`` and ``member_actions`` as lists,
    the observation shape and the run metadata in the file's schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from takeover.atomic import atomic_open

    eps = list(res.episodes.values())
    recs = [r for e in eps for r in e]
    if not recs:
        raise LogError("the log has no complete episode to export")
    keys = flat_fields(eps)
    act_dim = max(r.action.size for r in recs)
    rows = [flat_step(r, keys, act_dim) for r in recs]
    _type_consistent(rows, keys)
    table = pa.Table.from_pylist(rows)
    obs = np.stack([r.obs.reshape(-1) for r in recs]).astype(np.float32)
    table = table.append_column(
        "obs", pa.FixedSizeListArray.from_arrays(pa.array(obs.reshape(-1)), obs.shape[1]))
    members = [None if r.member_actions is None else r.member_actions.reshape(-1).tolist()
               for r in recs]
    table = table.append_column("member_actions", pa.array(members, pa.list_(pa.float32())))
    meta = {"obs_shape": json.dumps(list(recs[0].obs.shape)),
            "run_meta": json.dumps(res.meta.__dict__ if res.meta else None, default=str)}
    table = table.replace_schema_metadata(meta)
    with atomic_open(out, "wb") as f:
        pq.write_table(table, f)
    return len(rows)


def _spaces(res: LogReadResult, env_id: str | None):
    import gymnasium as gym

    if env_id:
        import takeover.envs  # noqa: F401  (registers the takeover/* ids)

        env = gym.make(env_id)
        try:
            return env.observation_space, env.action_space
        finally:
            env.close()
    recs = [r for e in res.episodes.values() for r in e]
    obs_shape = recs[0].obs.shape
    acts = np.stack([r.action.reshape(-1) for r in recs])
    obs_space = gym.spaces.Box(-1.0, 1.0, obs_shape, np.float32)
    if acts.shape[1] == 1 and np.all(acts == np.round(acts)) and acts.min() >= 0:
        return obs_space, gym.spaces.Discrete(int(acts.max()) + 1)
    return obs_space, gym.spaces.Box(-1.0, 1.0, (acts.shape[1],), np.float32)


def to_minari(res: LogReadResult, dataset_id: str, env_id: str | None = None):
    """A Minari dataset with one episode per complete log episode, in log order.

    ``observations[t]`` is the record's ``obs`` for ``t < n``; ``observations[n]`` is the
    episode's terminal observation (a 1.0 log has none: it repeats ``observations[n-1]``).
    ``infos[t + 1]`` holds the fields of record ``t`` (Minari's convention: the info
    returned by step ``t``), ``infos[0]`` the same keys with empty values.
    """
    import warnings

    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    eps = [e for e in res.episodes.values() if e]
    if not eps:
        raise LogError("the log has no complete episode to export")
    obs_space, act_space = _spaces(res, env_id)
    discrete = isinstance(act_space, gym.spaces.Discrete)
    keys = flat_fields(eps)
    act_dim = max(r.action.size for e in eps for r in e)
    buffers = []
    for i, recs in enumerate(eps):
        rows = [flat_step(r, keys, act_dim) for r in recs]
        first = {k: _empty_like(v) for k, v in rows[0].items()}
        first["episode"] = recs[0].episode
        rows = [first, *rows]
        _type_consistent(rows, keys)
        last = recs[-1].terminal_obs if recs[-1].terminal_obs is not None else recs[-1].obs
        obs = np.stack([r.obs for r in recs] + [last]).astype(np.float32)
        acts = np.stack([r.action for r in recs])
        acts = acts[:, 0].astype(np.int64) if discrete else acts.astype(np.float32)
        buffers.append(EpisodeBuffer(
            id=i, observations=obs, actions=acts,
            rewards=[r.reward for r in recs], terminations=[r.terminated for r in recs],
            truncations=[r.truncated for r in recs],
            infos={k: [row[k] for row in rows] for k in rows[0]},
        ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, env=None, action_space=act_space, observation_space=obs_space,
            algorithm_name="takeover supervised run", data_format="arrow",
            description=f"takeover intervention log {res.meta.run_id if res.meta else ''}; "
                        "per-step supervision fields in infos (infos[t+1] = step t)",
        )


def _empty_like(v: Any) -> Any:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return 0
    if isinstance(v, float):
        return math.nan
    return ""


def _created_or_nothing(dataset: Path, make: Callable[[], Any]) -> Any:
    """``make()``, which creates the folder ``dataset`` and its parents; if it fails (a full
    disk mid-way), remove what it created so no partial dataset is left to be loaded as a
    complete one. Folders that existed before are left as they were."""
    import shutil

    made = [p for p in (dataset, *dataset.parents) if not p.exists()]
    try:
        return make()
    except BaseException:
        if made:
            shutil.rmtree(made[-1], ignore_errors=True)  # the outermost folder it created
        raise


def _check_dataset_id(dataset_id: str) -> None:
    """A Minari id becomes folders under the datasets root: ``namespace/name-vN`` parts must
    each be a safe name (no ``..``, no absolute path, no NUL), so the export stays inside it."""
    from takeover.folders import FolderError, check_name

    parts = dataset_id.split("/")
    if not dataset_id or len(parts) > 2:
        raise typer.BadParameter(f"{dataset_id!r}: a Minari id is 'name-v0' or "
                                 "'namespace/name-v0'", param_hint="--out")
    for part in parts:
        try:
            check_name(part, "--out")
        except FolderError as e:  # one line, exit 2
            raise typer.BadParameter(str(e), param_hint="--out") from None


@app.command()
def export(
    path: LogPath,
    to: Annotated[str, typer.Option("--to", help="minari or parquet")],
    out: Annotated[str, typer.Option("--out", help="parquet: output file; minari: dataset id "
                                                   "(e.g. takeover/cutin-hgdagger-v0)")],
    env: Annotated[str | None, typer.Option("--env", help="minari: env id for the spaces "
                                                          "(default: inferred from the log)")]
    = None,
    root: Annotated[Path | None, typer.Option("--root", help="minari: the datasets folder "
                                                             "(default: Minari's own, "
                                                             "$MINARI_DATASETS_PATH or "
                                                             "~/.minari/datasets)")] = None,
) -> None:
    """Export the complete episodes of a log to Minari or Parquet, and say where."""
    if to not in ("minari", "parquet"):
        typer.echo(f"error: --to {to!r} is not supported; use --to minari or --to parquet",
                   err=True)
        raise typer.Exit(2)
    res = _load(path)
    skipped = len(res.incomplete) + len(res.damaged)
    try:
        if to == "parquet":
            n = to_parquet(res, Path(out))
            typer.echo(f"wrote {n} steps of {len(res.episodes)} episodes to {out}")
        else:
            try:
                import minari  # noqa: F401
            except ImportError:
                typer.echo("error: minari is not installed: pip install 'takeover[minari]'",
                           err=True)
                raise typer.Exit(1) from None
            _check_dataset_id(out)
            if root is not None:  # Minari reads its datasets folder from the environment
                os.environ["MINARI_DATASETS_PATH"] = str(root.resolve())
            from minari.storage import get_dataset_path

            ds = _created_or_nothing(get_dataset_path(out),
                                     lambda: to_minari(res, out, env))

            typer.echo(f"wrote Minari dataset {out!r} ({ds.total_episodes} episodes, "
                       f"{ds.total_steps} steps) to {get_dataset_path(out)}")
    except (LogError, OSError, ValueError) as e:
        from takeover.folders import DISK_FULL, disk_full_message

        full = isinstance(e, OSError) and e.errno in DISK_FULL
        typer.echo(f"error: {disk_full_message(e) if isinstance(e, OSError) and full else e}",
                   err=True)
        raise typer.Exit(1) from None
    if skipped:
        typer.echo(f"skipped {skipped} incomplete/damaged episodes (see `takeover log check`)")
