"""``takeover run [CONFIG] [key=value ...]``: the main experiment, config to report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _split(args: list[str]) -> tuple[str | None, list[str]]:
    """First argument without ``=`` is the config; the rest are ``key=value`` overrides."""
    config, overrides = None, []
    for i, a in enumerate(args):
        if i == 0 and "=" not in a:
            config = a
        else:
            overrides.append(a)
    return config, overrides


def run(
    args: Annotated[list[str] | None, typer.Argument(
        metavar="[CONFIG] [KEY=VALUE]...",
        help="A YAML file, a shipped config name, or a run folder (re-runs its config.yaml); "
             "then overrides like train.rounds=1. No config: the embedded default.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override key=value (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Run folder (default runs/<name>-<time>).")] = None,
    expect: Annotated[list[str] | None, typer.Option(
        "--expect", help="Exit non-zero unless it holds, e.g. 'success_rate>=0.9' or "
                         "'agent_alone.collision_rate<=0.5' (repeatable).")] = None,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Write the expectations as JUnit XML.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Run an experiment: rounds of supervised fine-tuning, evaluation against baselines,
    statistics and a report in the run folder."""
    from rich.console import Console

    from takeover.config import ConfigError
    from takeover.experiments import expect as ex
    from takeover.experiments.config import load_config
    from takeover.experiments.provenance import default_run_dir

    console = Console(stderr=True)
    config, overrides = _split(list(args or []))
    overrides += list(set_ or [])
    expect = list(expect or [])
    from takeover.experiments.fleet import is_fleet, load_fleet_config

    try:
        if is_fleet(config):  # `kind: fleet`: a fleet-size sweep (experiments/fleet.py)
            cfg = load_fleet_config(config, overrides)
        else:
            cfg, _ = load_config(config, overrides)
        for e in expect:  # refuse a malformed expectation before running for minutes
            ex.parse(e)
    except ConfigError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    run_dir = out or default_run_dir(cfg.name)
    if run_dir.exists() and any(run_dir.iterdir()):
        console.print(f"[red]error:[/red] {run_dir} already exists and is not empty; pass "
                      "another --out (or delete it)")
        raise typer.Exit(2)
    from takeover.agents.checkpoint import CheckpointError

    try:
        result = _run(cfg, run_dir, overrides, quiet, console)
    except CheckpointError as e:  # raised while loading the agent, before anything is written
        console.print(f"[red]error:[/red] agent.name={cfg.agent.name!r}: {e}")
        raise typer.Exit(2) from None
    console.print(f"report: {result.report}  ({result.seconds:.0f} s)")
    typer.echo(str(result.report))
    if expect:
        try:
            outcomes = ex.check(result.metrics, expect)
        except ConfigError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from None
        if junit:
            ex.write_junit(junit, outcomes, f"takeover.{cfg.name}")
        for o in outcomes:
            console.print(("[green]" if o.passed else "[red]") + o.message + "[/]")
        failed = [o for o in outcomes if not o.passed]
        if failed:
            console.print(f"[red]{len(failed)} expectation(s) failed:[/red] "
                          + "; ".join(o.expectation.text for o in failed))
            raise typer.Exit(1)


def _run(cfg, run_dir: Path, overrides: list[str], quiet: bool, console):
    from rich import progress as rp

    from takeover.experiments.runner import run_experiment

    if quiet:
        return run_experiment(cfg, run_dir, overrides=overrides)
    with rp.Progress(rp.TextColumn("{task.description:<36}"), rp.BarColumn(),
                     rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("starting", total=None)

        def start(total: int):
            bar.update(task, total=total)

            def tick(msg: str) -> None:
                bar.update(task, advance=1, description=msg)

            return tick

        return run_experiment(cfg, run_dir, overrides=overrides, progress=start)

