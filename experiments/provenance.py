"""The run folder and its provenance: enough to trust a number and to run it again.

A run folder holds ``config.yaml`` (the resolved config: ``takeover run RUN_DIR`` re-runs it),
``overrides.txt`` (what the command line changed), ``provenance.json`` (seeds, git revision
and dirty flag, package versions, machine, command line, start time) and, once the run ends,
the logs, ``metrics.json`` / ``metrics.csv`` and the report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from takeover.atomic import atomic_write_text
from takeover.config import to_dict

PACKAGES = ("takeover", "numpy", "torch", "gymnasium", "stable-baselines3", "numba", "rliable",
            "pandas", "matplotlib", "ray")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on (``"-"`` if absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def git_revision(path: Path | None = None) -> tuple[str, bool]:
    """``(revision, dirty)`` of the source tree holding this package; ``("", False)`` when
    it is not a git checkout (an installed wheel)."""
    where = path or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10)
        if rev.returncode != 0:
            return "", False
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=where, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "", False


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "hostname": platform.node()}


def default_run_dir(name: str, root: Path | str = "runs") -> Path:
    """``runs/<name>-<UTC time>``; a numeric suffix avoids reusing an existing folder."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


def write_provenance(run_dir: Path, cfg: Any, overrides: Sequence[str],
                     seeds: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create ``run_dir`` and write ``config.yaml``, ``overrides.txt``, ``provenance.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml",
                      yaml.safe_dump(to_dict(cfg), sort_keys=False))
    atomic_write_text(run_dir / "overrides.txt", "".join(f"{o}\n" for o in overrides))
    rev, dirty = git_revision()
    prov = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "seed": getattr(cfg, "seed", None),
        "seeds": seeds,
        "git_rev": rev,
        "git_dirty": dirty,
        "versions": package_versions(),
        "machine": machine(),
        **(extra or {}),
    }
    atomic_write_text(run_dir / "provenance.json", json.dumps(prov, indent=2, sort_keys=True))
    return prov


# --- resuming an interrupted run ----------------------------------------------------------------
RESUMABLE = ("config.yaml", "provenance.json")
"""Files an interrupted run folder must hold to be resumed (written before any episode)."""


def resume_config(run_dir: Path) -> tuple[Any, list[str]]:
    """The config and overrides of the interrupted run in ``run_dir``, for
    ``takeover run --resume``: the resolved ``config.yaml`` exactly as the run started, so a
    resumed run cannot drift from its first half."""
    from takeover.config import ConfigError
    from takeover.experiments.config import load_config

    missing = [f for f in RESUMABLE if not (run_dir / f).is_file()]
    if missing:
        raise ConfigError(f"{run_dir} is not a takeover run folder (no {missing[0]}); "
                          "--resume takes the folder an interrupted 'takeover run' wrote")
    cfg, _ = load_config(run_dir / "config.yaml")
    over = run_dir / "overrides.txt"
    overrides = over.read_text(encoding="utf-8").splitlines() if over.is_file() else []
    return cfg, overrides


def note_resume(run_dir: Path) -> None:
    """Record in ``provenance.json`` when and by which command the run was resumed (its
    original ``created`` / ``command`` stay as they were)."""
    path = run_dir / "provenance.json"
    prov = json.loads(path.read_text(encoding="utf-8"))
    prov.setdefault("resumed", []).append({
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "git_rev": git_revision()[0]})
    atomic_write_text(path, json.dumps(prov, indent=2, sort_keys=True))


def completed_episodes(log_dir: Path) -> dict[str, list[Any]]:
    """Every complete, intact episode already in the log folder ``log_dir``, by episode id,
    as its ``StepRecord`` lists (``{}`` when there is no log yet). A resumed run replays these
    instead of re-simulating them (same seed, same records), so it keeps every completed
    episode and gives the metrics of an uninterrupted run. An episode that never ended
    (``*.tkc.open``) is not returned and its partial file is removed, so it is played
    again; a damaged episode cannot be rewritten under its id, so it is an error."""
    from takeover.folders import FolderError
    from takeover.logio import read_log
    from takeover.logio.reader import EPISODES_DIR, OPEN_SUFFIX, is_log_dir

    log_dir = Path(log_dir)
    if not log_dir.is_dir() or not is_log_dir(log_dir):
        return {}
    res = read_log(log_dir)
    if res.damaged:
        raise FolderError(f"{log_dir} holds damaged episodes ({', '.join(sorted(res.damaged))})"
                          "; they cannot be replayed or rewritten: start the run again in a "
                          "new folder (takeover run CONFIG --out NEW_FOLDER)")
    episodes = dict(res.episodes)
    for eid in res.incomplete:
        if eid not in episodes:
            (log_dir / EPISODES_DIR / f"{eid}{OPEN_SUFFIX}").unlink(missing_ok=True)
    return episodes
