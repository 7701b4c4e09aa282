"""``takeover study``: run a takeover experiment with a participant, or report on a study (a thin
shell over ``takeover.supervisor.study``, where the design is documented).

    takeover study STUDY.yaml --participant P07          # one participant's session
    takeover study report RUN_DIR ... [--study STUDY.yaml]  # aggregate + takeover-time fits
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer


def study(
    target: Annotated[str, typer.Argument(help="STUDY.yaml, or 'report'")],
    run_dirs: Annotated[list[Path] | None, typer.Argument(
        help="with 'report': the participants' run folders")] = None,
    participant: Annotated[str | None, typer.Option(help="participant ID, e.g. P07")] = None,
    order: Annotated[int | None, typer.Option(
        help="Latin-square row (default: the digits ending the participant ID)")] = None,
    out: Annotated[Path | None, typer.Option(
        help="run folder [default: study-runs/<study>/<participant>]")] = None,
    study_file: Annotated[Path | None, typer.Option(
        "--study", help="with 'report': the study file, to fit the scripted humans too")] = None,
    repeats: Annotated[int | None, typer.Option(
        help="with 'report': scripted runs per trial seed")] = None,
    fullscreen: Annotated[bool, typer.Option(help="open full screen")] = False,
    sound: Annotated[bool, typer.Option(help="a tone with each takeover request")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="report as JSON")] = False,
) -> None:
    """Run a participant through a study, or report on the participants' runs."""
    from takeover.commands.drive import person_errors
    from takeover.config import ConfigError

    with person_errors():
        if target == "report":
            _report(run_dirs or [], study_file, repeats, json_out)
            return
        from takeover.supervisor.study import load_study, run_study

        if participant is None:
            raise ConfigError("give the participant's ID: --participant P07")
        if run_dirs:
            raise ConfigError(f"unexpected arguments {[str(p) for p in run_dirs]}; "
                              "only 'report' takes folders")
        cfg = load_study(target)
        folder = out or Path("study-runs") / cfg.name / participant
        data = run_study(cfg, participant, folder, order=order, sound=sound,
                         fullscreen=fullscreen)
    done = sum(1 for t in data["trials"] if "outcome" in t)
    typer.echo(f"participant {participant}: {done} of {len(data['trials'])} trials driven; "
               f"saved in {folder}")


def _report(run_dirs: list[Path], study_file: Path | None, repeats: int | None,
            as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from takeover.config import ConfigError
    from takeover.supervisor.study import report

    if not run_dirs:
        raise ConfigError("give the participants' run folders: takeover study report DIR ...")
    res = report(run_dirs, study_file, repeats)
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return

    def f(x, nd=2):
        return "--" if isinstance(x, float) and not math.isfinite(x) else (
            f"{x:.{nd}f}" if isinstance(x, float) else str(x))

    con = Console()
    t = Table(title="per participant and condition")
    cols = ("participant", "condition", "trials", "arrived", "collisions", "off_road", "takeovers",
            "takeover_median_s", "min_ttc_s", "tlx_raw", "trust")
    for c in cols:
        t.add_column(c)
    for row in res["rows"]:
        t.add_row(*(f(row[c]) for c in cols))
    con.print(t)
    t = Table(title="takeover time after the request, log-normal fit (s)")
    for c in ("who", "n", "median", "sigma", "mean"):
        t.add_column(c)
    for who, fit in res["participants"].items():
        t.add_row(who, *(f(fit[c]) for c in ("n", "median", "sigma", "mean")))
    for who, fit in res["scripted"].items():
        t.add_row(f"scripted {who}", *(f(fit[c]) for c in ("n", "median", "sigma", "mean")))
    con.print(t)
