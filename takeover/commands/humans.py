"""``takeover humans``: the scripted human models: calibration against the literature."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Scripted human models (takeover time, brake reaction, driving).",
                  no_args_is_help=True)


@app.command("report")
def report(out: Path = typer.Option(Path("human_calibration"), help="folder for the .md/.png"),
           samples: int = typer.Option(20_000, min=100, help="draws per distribution"),
           episodes: int = typer.Option(200, min=1, help="driving-alone episodes per preset, "
                                                         "scenario and action type"),
           seed: int = typer.Option(1_000_000, min=0, help="first seed (held-out block)")) -> None:
    """Each preset's takeover time and brake reaction against the literature targets it
    claims, and how it drives alone; writes human_calibration.md and .png."""
    from takeover.experiments.human_calibration import write_report

    md = write_report(out, n_samples=samples, n_drive=episodes, seed=seed)
    typer.echo(f"wrote {md} and {md.with_suffix('.png')}")
