"""SIGINT / SIGTERM as a clean stop: both raise ``KeyboardInterrupt`` so ``finally`` blocks
close logs and release folder claims, and ``takeover.cli.main`` prints one line naming the
run folder and how to continue.

Python drops an exception raised by a signal handler while C code runs a Python callback
(numba/llvmlite compiling, a ctypes hook, the fork hooks of ``os.fork``), so the signal is
also remembered: long loops call ``check()`` at safe points (every finished episode, and
while waiting for worker processes) and stop there if it was swallowed. While the process
forks, the handler only remembers (raising there prints "Exception ignored ... Traceback"
and is lost anyway). An interrupt dropped that way elsewhere (numba writing its disk cache
from llvmlite's object-cache callback, say) is not printed either: ``sys.unraisablehook``
passes over this module's own ``KeyboardInterrupt`` and hands everything else on.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

_received: int | None = None
_forking = False
_hooked = False


def _handler(signum: int, _frame: object) -> None:
    global _received
    _received = signum
    if not _forking:
        raise KeyboardInterrupt(signum)


def _fork_begins() -> None:
    global _forking
    _forking = True


def _fork_ends() -> None:
    global _forking
    _forking = False


def _unraisable(hook: Any) -> Any:
    """``hook`` except for the ``KeyboardInterrupt`` of a remembered stop signal (it is
    not lost: ``check()`` raises it again at the next safe point)."""
    def quiet(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received is not None:
            return
        hook(unraisable)
    quiet.takeover_quiet = True  # type: ignore[attr-defined]
    return quiet


def install() -> None:
    """Route SIGINT and SIGTERM through ``KeyboardInterrupt(signum)`` (main thread only)."""
    global _received, _hooked
    _received = None
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    if not getattr(sys.unraisablehook, "takeover_quiet", False):
        sys.unraisablehook = _unraisable(sys.unraisablehook)
    if not _hooked and hasattr(os, "register_at_fork"):
        # registered after the standard library's hooks: "after" hooks run in registration
        # order, so the flag stays set while theirs run
        os.register_at_fork(before=_fork_begins, after_in_parent=_fork_ends,
                            after_in_child=_fork_ends)
        _hooked = True


def received() -> int | None:
    """The signal that asked this process to stop, or ``None``."""
    return _received


def check() -> None:
    """Raise ``KeyboardInterrupt`` now if a stop signal arrived (a no-op otherwise)."""
    if _received is not None:
        raise KeyboardInterrupt(_received)
