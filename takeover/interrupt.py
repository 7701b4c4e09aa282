"""SIGINT / SIGTERM as a clean stop: both raise ``KeyboardInterrupt`` so ``finally`` blocks
close logs and release folder claims, and ``takeover.cli.main`` prints one line naming the
run folder and how to continue.

Python drops an exception raised by a signal handler while C code runs a Python callback
(numba/llvmlite compiling, a ctypes hook), so the signal is also remembered: long loops call
``check()`` at safe points (every finished episode) and stop there if it was swallowed.
"""

from __future__ import annotations

import signal

_received: int | None = None


def _handler(signum: int, _frame: object) -> None:
    global _received
    _received = signum
    raise KeyboardInterrupt(signum)


def install() -> None:
    """Route SIGINT and SIGTERM through ``KeyboardInterrupt(signum)`` (main thread only)."""
    global _received
    _received = None
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def received() -> int | None:
    """The signal that asked this process to stop, or ``None``."""
    return _received


def check() -> None:
    """Raise ``KeyboardInterrupt`` now if a stop signal arrived (a no-op otherwise)."""
    if _received is not None:
        raise KeyboardInterrupt(_received)
