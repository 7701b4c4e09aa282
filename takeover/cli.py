"""The ``takeover`` command line. Each command lives in ``takeover/commands/`` and imports its
layer lazily, so ``takeover --help`` stays fast and a missing optional extra only affects
the command that needs it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="takeover",
    help="Simulate, supervise and learn from human takeovers of a driving agent.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

# each sub-command registers itself here, one line per command module
from takeover.commands import bench as _bench  # noqa: E402

app.add_typer(_bench.app, name="bench")
from takeover.commands import log as _log  # noqa: E402

app.add_typer(_log.app, name="log")
from takeover.commands import train as _train  # noqa: E402

app.command("train")(_train.train)
from takeover.commands import eval as _eval  # noqa: E402

app.command("eval")(_eval.eval_agent)
from takeover.commands import run as _run  # noqa: E402

app.command("run")(_run.run)
from takeover.commands import sweep as _sweep  # noqa: E402

app.command("sweep")(_sweep.sweep)
from takeover.commands import drive as _drive  # noqa: E402

app.command("drive")(_drive.drive)
from takeover.commands import review as _review  # noqa: E402

app.command("review")(_review.review)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
