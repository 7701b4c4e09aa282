"""One module per ``takeover`` sub-command; each imports its layer inside the command body."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Progress = Callable[[int], Callable[[str], None]]
"""What the runners take as ``progress``: called once with the number of items, it returns
the ``tick(message)`` called after each item."""


@contextmanager
def progress_bar(console: Any, quiet: bool, first: str, width: int, cut: bool = False,
                 last: str | None = None) -> Iterator[Progress]:
    """A ``Progress`` drawing a rich bar (``first`` until the first tick; messages padded
    to ``width`` characters, and cut to it with ``cut``; ``last`` once every item is done,
    for the work after them, e.g. building the report), or none with ``quiet``. Either way
    every tick is a safe point for a signal the run deferred (``takeover.interrupt``)."""
    from takeover import interrupt

    if quiet:
        yield lambda _total: lambda _msg: interrupt.check()
        return
    from rich import progress as rp

    with rp.Progress(rp.TextColumn(f"{{task.description:<{width}}}"), rp.BarColumn(),
                     rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(first, total=None)

        def start(total: int) -> Callable[[str], None]:
            bar.update(task, total=total)
            done = 0

            def tick(msg: str) -> None:
                nonlocal done
                interrupt.check()
                done += 1
                if last is not None and done >= total:
                    msg = last
                bar.update(task, advance=1, description=msg[:width] if cut else msg)

            return tick

        yield start
