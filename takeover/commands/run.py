"""``takeover run [CONFIG] [key=value ...]``: the main experiment, config to report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape


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
        "--set", metavar="KEY=VALUE", help="Override key=value (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Run folder (default runs/<name>-<time>).")] = None,
    expect: Annotated[list[str] | None, typer.Option(
        "--expect", metavar="METRIC<=X", help="Exit non-zero unless it holds, e.g. 'success_rate>=0.9' or "
                         "'agent_alone.collision_rate<=0.5' (repeatable).")] = None,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Write the expectations as JUnit XML.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue the interrupted run in this folder, keeping every "
                         "completed episode (takes no CONFIG or overrides).")] = None,
) -> None:
    """Run an experiment: rounds of supervised fine-tuning, evaluation against baselines,
    statistics and a report in the run folder."""
    from rich.console import Console

    from takeover.config import ConfigError
    from takeover.experiments import expect as ex
    from takeover.experiments.config import load_config
    from takeover.experiments.provenance import default_run_dir, resume_config
    from takeover.folders import FolderError, claimed

    console = Console(stderr=True, soft_wrap=True)  # one line per message, paths whole
    config, overrides = _split(list(args or []))
    overrides += list(set_ or [])
    expect = list(expect or [])
    from takeover.experiments.fleet import is_fleet, load_fleet_config
    from takeover.experiments.rounds import is_learning_config

    if config is not None and is_learning_config(config):  # a `learning:` section
        _run_learning(config, overrides, out, quiet, console)
        return
    try:
        if resume is not None:
            if config is not None or overrides or out is not None:
                raise ConfigError("--resume RUN_DIR continues that run with its own "
                                  "config.yaml; drop the CONFIG, overrides and --out")
            cfg, overrides = resume_config(resume)
        elif config is not None and is_fleet(config):  # `kind: fleet`: experiments/fleet.py
            cfg = load_fleet_config(config, overrides)
        else:
            cfg, _ = load_config(config, overrides)
        for e in expect:  # refuse a malformed expectation before running for minutes
            ex.parse(e)
    except ConfigError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    run_dir = resume or out or default_run_dir(cfg.name)
    if resume is not None and (run_dir / "metrics.json").exists():
        console.print(escape(f"{run_dir} is complete; nothing to resume (report: "
                             f"{run_dir / 'report.md'})"))
        typer.echo(str(run_dir / "report.md"))
        return
    from takeover.agents.checkpoint import CheckpointError

    try:
        with claimed(run_dir, resume=resume is not None):
            result = _run(cfg, run_dir, overrides, quiet, console, resume=resume is not None)
    except FolderError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    except CheckpointError as e:  # raised while loading the agent, before anything is written
        console.print(f"[red]error:[/red] {escape(f'agent.name={cfg.agent.name!r}: {e}')}")
        raise typer.Exit(2) from None
    console.print(f"report: {escape(str(result.report))}  ({result.seconds:.0f} s)")
    typer.echo(str(result.report))
    if expect:
        try:
            outcomes = ex.check(result.metrics, expect)
        except ConfigError as e:
            console.print(f"[red]error:[/red] {escape(str(e))}")
            raise typer.Exit(2) from None
        if junit:
            ex.write_junit(junit, outcomes, f"takeover.{cfg.name}")
        for o in outcomes:
            console.print(("[green]" if o.passed else "[red]") + escape(o.message) + "[/]")
        failed = [o for o in outcomes if not o.passed]
        if failed:
            console.print(f"[red]{len(failed)} expectation(s) failed:[/red] "
                          + escape("; ".join(o.expectation.text for o in failed)))
            raise typer.Exit(1)


def _run(cfg, run_dir: Path, overrides: list[str], quiet: bool, console, resume: bool = False):
    from takeover.folders import FolderError

    run_experiment: Callable[..., Any]
    kw: dict[str, Any] = {}
    if getattr(cfg, "kind", None) == "fleet":  # a fleet-size sweep: experiments/fleet.py
        from takeover.experiments.fleet import run_fleet as run_experiment

        if resume:
            raise FolderError(f"a fleet sweep cannot be resumed yet; start {run_dir} again "
                              "in a new folder")
    else:
        from takeover.experiments.runner import run_experiment

        kw["resume"] = resume

    from takeover.commands import progress_bar

    with progress_bar(console, quiet, "starting", 36,
                      last="building the report (metrics, figures)") as progress:
        return run_experiment(cfg, run_dir, overrides=overrides, progress=progress, **kw)


def _run_learning(config: str, overrides: list[str], out: Path | None, quiet: bool,
                  console) -> None:
    """``takeover run learning``: every learner through the same rounds
    (``takeover.experiments.rounds.run_learning``)."""
    from takeover.config import ConfigError
    from takeover.experiments.provenance import default_run_dir
    from takeover.experiments.rounds import load_learning_config, run_learning

    try:
        cfg = load_learning_config(config, overrides)
    except ConfigError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    from takeover.folders import claimed

    run_dir = out or default_run_dir(cfg.name)
    tick = None if quiet else (lambda msg: console.print(msg))
    with claimed(run_dir):  # refuses a non-empty folder or a second writer, naming it
        _, report, seconds = run_learning(cfg, run_dir, progress=tick)
    console.print(f"report: {escape(str(report))}  ({seconds:.0f} s)")
    typer.echo(str(report))
