"""``takeover sweep CONFIG [key=value ...]``: the gate x estimator x human x scenario x seed
grid, resumable, on a local process pool or Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape


def sweep(
    args: Annotated[list[str], typer.Argument(
        metavar="CONFIG [KEY=VALUE]...",
        help="A YAML file, a shipped config name or a sweep folder (resumes it), then "
             "overrides like sweep.seeds=[0,1,2].")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="Override key=value (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Sweep folder; re-running into it resumes (default "
                      "runs/sweep-<name>).")] = None,
    backend: Annotated[str, typer.Option(
        "--backend", help="local (process pool) or ray.")] = "local",
    address: Annotated[str | None, typer.Option(
        "--address", help="Ray cluster address (e.g. ray://head:10001 or auto); none = a "
                          "local Ray instance.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Parallel cells (default sweep.workers).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Run every missing cell of a sweep, then write summary.json and report.md."""
    from rich.console import Console

    from takeover.config import ConfigError
    from takeover.experiments.config import load_config
    from takeover.folders import FolderError

    console = Console(stderr=True, soft_wrap=True)  # one line per message, paths whole
    config, overrides = args[0], [*args[1:], *(set_ or [])]
    if Path(config).is_dir() and (Path(config) / "sweep.yaml").exists():
        out = out or Path(config)
        config = str(Path(config) / "sweep.yaml")
    try:
        cfg, _ = load_config(config, overrides)
    except ConfigError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    root = out or Path("runs") / f"sweep-{cfg.name}"
    try:
        res = _sweep(cfg, root, backend, address, workers, quiet, console)
    except (ConfigError, FolderError) as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    console.print(f"{res.total} cells: {res.ran} run, {res.skipped} already done, "
                  f"{res.failed} failed")
    typer.echo(str(root / "report.md"))
    if res.failed:
        for cell, err in res.summary["errors"].items():
            console.print(f"[red]failed[/red] {escape(f'{cell}: {err}')}")
        raise typer.Exit(1)


def _sweep(cfg, root: Path, backend: str, address: str | None, workers: int | None,
           quiet: bool, console):
    from takeover.commands import progress_bar
    from takeover.experiments.sweep import run_sweep

    with progress_bar(console, quiet, "sweep", 48, cut=True) as progress:
        return run_sweep(cfg, root, backend=backend, address=address, workers=workers,
                         progress=progress)

