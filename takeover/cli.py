"""The ``takeover`` command line. Each command lives in ``takeover/commands/`` and imports its
layer lazily, so ``takeover --help`` stays fast and a missing optional extra only affects
the command that needs it.

``main`` is the one place that turns a user's mistake or an interruption into one line and
an exit code instead of a traceback, for every command: bad input (a config, a checkpoint, a
folder: exit 2), a full disk (exit 1, naming the file and how to continue), SIGINT/SIGTERM
(exit 130/143, naming the run folder and how to continue).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from takeover import __version__

app = typer.Typer(
    name="takeover",
    help="Simulate, supervise and learn from human takeovers of a driving agent.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,  # plain click help: flags without a '<bool>' type column
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"takeover {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")]
          = False) -> None:
    """Simulate, supervise and learn from human takeovers of a driving agent."""


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
from takeover.commands import humans as _humans  # noqa: E402

app.add_typer(_humans.app, name="humans")
from takeover.commands import study as _study  # noqa: E402

app.command("study")(_study.study)
from takeover.commands import review as _review  # noqa: E402

app.command("review")(_review.review)



def quiet_environment() -> None:
    """Silence what a plain run should not print: ALSA/SDL audio probing (no sound is
    played), a missing XDG_RUNTIME_DIR (pygame), Ray's usage-stats and token notices."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = os.path.join("/tmp", f"runtime-{os.getuid()}") if hasattr(os, "getuid") \
            else None
        if runtime:
            try:
                os.makedirs(runtime, mode=0o700, exist_ok=True)
                os.environ["XDG_RUNTIME_DIR"] = runtime
            except OSError:
                pass
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tensorboard's TensorFlow probe


def one_math_thread(argv: list[str]) -> None:
    """One BLAS / OpenMP thread per process unless the user set ``OMP_NUM_THREADS``: the
    supervision loops multiply small matrices (16-row blocks), where a second BLAS thread
    only adds hand-offs; on 2 shared cores a 2-thread OpenBLAS GEMM took 49 ms against
    0.53 ms on one. Experiments use the cores with a process per condition instead.
    ``takeover train`` keeps the libraries' defaults (its batches are large)."""
    if "OMP_NUM_THREADS" in os.environ or next(
            (a for a in argv if not a.startswith("-")), "") == "train":
        return
    os.environ["OMP_NUM_THREADS"] = "1"  # torch, imported later, reads it
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # numpy's BLAS, loaded already


def _error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")


def _input_errors() -> tuple[type[Exception], ...]:
    """The layers' own "this input cannot be used" errors (a tampered checkpoint, a damaged
    or unreplayable log): one line, exit 2. Imported only when something failed (torch is
    heavy)."""
    from takeover.agents.checkpoint import CheckpointError
    from takeover.logio import LogError
    from takeover.supervisor.review import ReplayError

    return CheckpointError, LogError, ReplayError


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``takeover`` script and ``python -m takeover``."""

    from takeover import interrupt

    quiet_environment()
    one_math_thread(sys.argv[1:] if argv is None else argv)
    interrupt.install()
    from takeover.config import ConfigError
    from takeover.folders import (
        DISK_FULL,
        FolderError,
        continue_hint,
        disk_full_message,
        held,
        release,
    )

    try:
        rv = app(args=argv, standalone_mode=False, prog_name="takeover")
        code = rv if isinstance(rv, int) else 0
        if interrupt.received() is not None:  # click turned the KeyboardInterrupt into 130
            raise KeyboardInterrupt(interrupt.received())
    except typer.TyperException as e:  # usage errors: click's own message
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            _error(str(e))
        code = getattr(e, "exit_code", 2)
    except (KeyboardInterrupt, typer.Abort) as e:
        del e
        term = interrupt.received() == signal.SIGTERM
        sys.stderr.write(f"\ninterrupted ({'SIGTERM' if term else 'SIGINT'}): "
                         f"{continue_hint()}\n")
        code = 143 if term else 130
    except (ConfigError, FolderError) as e:
        _error(str(e))
        code = 2
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        _error(disk_full_message(e))
        code = 1
    except Exception as e:
        if not isinstance(e, _input_errors()):
            raise
        _error(str(e))
        code = 2
    finally:
        while (folder := held()) is not None:
            release(folder)
    sys.exit(code)


if __name__ == "__main__":
    main()
