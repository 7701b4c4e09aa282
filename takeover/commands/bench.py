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
def supervisor(worlds: list[int] = typer.Option([1, 256], "--worlds", "-n", metavar="N",
                                               help="batch sizes (repeat the option)"),
               seconds: float = typer.Option(5.0, help="wall seconds per measurement"),
               human: str = typer.Option("average", help="scripted human model, or none"),
               agent: str = typer.Option("novice", help="shipped agent"),
               log: bool = typer.Option(True, help="also measure with the log written"),
               json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Supervised world-steps per second end to end (agent, estimators, gate, human,
    records, log) on the engine, with and without counterfactual labels, next to
    highway-fast-v0 + an SB3 policy + a threshold measured in the same run."""
    from takeover.experiments.benchmarks.supervisor import main

    if any(n < 1 for n in worlds) or not seconds > 0:
        raise typer.BadParameter("--worlds must be >= 1 and --seconds > 0")
    res = main(tuple(worlds), seconds, human, agent, log=log)
    if json_out:
        import json

        typer.echo(json.dumps(res, indent=2))
        return
    table = Table(title=f"supervised world-steps/s (reference "
                        f"{res['reference_steps_per_s']:,.0f}/s: {res['reference']})")
    for col in ("worlds", "labels", "human", "log", "steps/s", "x reference"):
        table.add_column(col, justify="right")
    for r in res["rows"]:
        table.add_row(str(r["worlds"]), str(r["labels"]), r["human"], str(r["log"]),
                      f"{r['steps_per_s']:,.0f}", f"{r['x_reference']:,.1f}")
    Console().print(table)


@app.command("drive")
def drive(frames: int = typer.Option(1800, help="frames at 60 fps (30 simulated s)"),
          agent: str = typer.Option("auto", help="agent; auto = shipped novice if present")) -> None:
    """Frame time of the live loop (render + agent + supervisor) headless, ms."""
    from takeover.experiments.benchmarks.drive import main

    _table("live loop frame time, ms (budget 16.7 ms at 60 fps)", _numbers(main(frames, agent)))


@app.command("log")
def log(records: int = typer.Option(100_000, help="records written and read per format"),
        repeats: int = typer.Option(3, help="measurements (the best is reported)"),
        folder: str = typer.Option(None, help="where to write (default: the temp folder)"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Records/s written and read, bytes/record: the 2.0 log against the 1.0 writer."""
    import json

    from takeover.experiments.benchmarks.log import main

    out = main(records, repeats, folder=folder)
    if as_json:
        typer.echo(json.dumps(out))
    else:
        _table("intervention log (v1 = schema 1.0 writer, same records, same run)", out)


def _numbers(rows: dict) -> dict:
    """The numeric entries of a benchmark's result (names and labels are dropped)."""
    return {k: v for k, v in rows.items() if v is None or isinstance(v, (int, float))}
