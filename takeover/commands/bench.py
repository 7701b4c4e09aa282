"""``takeover bench``: speed as ratios against a reference measured in the same run."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Benchmarks (ratios against a reference measured in the same run).",
                  no_args_is_help=True)


def _table(title: str, rows: dict) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, "n/a" if value is None else f"{value:,.1f}")
    Console().print(table)


@app.command("env")
def env(seconds: float = typer.Option(6.0, help="wall seconds per measurement"),
        num_envs: int = typer.Option(256, help="worlds in the batched env")) -> None:
    """Simulated seconds per wall second: single env, batched env, highway-fast-v0."""
    from takeover.experiments.benchmarks.env import main

    _table("simulated s per wall s (ratio = x highway-fast-v0)", main(seconds, num_envs))
