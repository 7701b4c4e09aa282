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


@app.command("supervisor")
def supervisor(steps: int = typer.Option(3000, help="steps per measurement"),
               repeats: int = typer.Option(5, help="measurements (medians are reported)")) -> None:
    """Per-step cost a 5-member ensemble + estimator + gate adds to a bare env step (us)."""
    from takeover.experiments.benchmarks.supervisor import main

    _table("supervisor overhead, us per step", _numbers(main(steps, repeats)))


@app.command("drive")
def drive(frames: int = typer.Option(1800, help="frames at 60 fps (30 simulated s)"),
          agent: str = typer.Option("auto", help="agent; auto = shipped novice if present")) -> None:
    """Frame time of the live loop (render + agent + supervisor) headless, ms."""
    from takeover.experiments.benchmarks.drive import main

    _table("live loop frame time, ms (budget 16.7 ms at 60 fps)", _numbers(main(frames, agent)))


def _numbers(rows: dict) -> dict:
    """The numeric entries of a benchmark's result (names and labels are dropped)."""
    return {k: v for k, v in rows.items() if v is None or isinstance(v, (int, float))}
