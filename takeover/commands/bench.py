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
def env(seconds: float = typer.Option(1.0, help="wall seconds per measurement window"),
        repeats: int = typer.Option(5, help="interleaved rounds (medians are reported)"),
        as_json: bool = typer.Option(False, "--json", help="print the results as JSON")) -> None:
    """Simulated seconds per wall second of the single env and 1 / 16 / 256 / 4,096 worlds,
    as ratios against highway-fast-v0 in the same run; us per world-step; the kernel's
    per-phase profile."""
    from takeover.experiments.benchmarks.env import main

    result = main(seconds, repeats)
    if as_json:
        import json

        typer.echo(json.dumps(result, indent=1))
        return
    prof = result.pop("profile")
    _table(f"simulated s per wall s (ratio = x highway-fast-v0; medians of {repeats} rounds)",
           _numbers(result))
    _table(f"kernel profile, ns per world-step at {prof.pop('worlds')} worlds", prof)


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
