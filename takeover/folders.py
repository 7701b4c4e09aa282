"""Output folders a command owns: names that are safe as path parts, and an ``--out``
folder claimed atomically so two writers never share it and no command writes into a
user's folder it did not create.

A claim is a lock file ``.takeover.lock`` created with ``O_CREAT | O_EXCL`` (atomic on
POSIX, also on NFSv3+) holding the holder's pid, host, command and start time. A folder is
claimable when it does not exist, is empty, or was created by takeover (its ``.takeover``
marker) and is not held by a live process. The claim is released when the command ends;
a lock left by a killed process is taken over once its pid is gone (same host).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from takeover.atomic import atomic_write_text

LOCK = ".takeover.lock"
MARKER = ".takeover"
"""Present in every folder a takeover command created: it may write there again (resume)."""
MAX_NAME = 100
"""Characters in one name that becomes a path part (file systems allow 255 bytes; run
folders append a timestamp and cell ids join several names)."""


class FolderError(ValueError):
    """A name or an output folder cannot be used; the message names it and the fix."""


def check_name(name: object, what: str = "name") -> str:
    """``name`` as one safe path part: non-empty, at most ``MAX_NAME`` characters, no path
    separator, no ``..`` / ``.``, no leading ``-`` or ``.`` (hidden / option-like), no NUL or
    control characters. Raises ``FolderError`` naming ``what``."""
    if not isinstance(name, str):
        raise FolderError(f"{what} must be a string, got {type(name).__name__} {name!r}")
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME:
        problem = f"is {len(name)} characters long (at most {MAX_NAME})"
    elif "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        problem = "contains a path separator"
    elif name in (".", "..") or name.startswith("."):
        problem = "starts with '.' (a hidden or parent folder)"
    elif name.startswith("-"):
        problem = "starts with '-' (it would read as an option)"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "contains a NUL or control character"
    if problem:
        raise FolderError(f"{what} {name!r} {problem}: use letters, digits, '_', '-', '.' "
                          "and no slashes")
    return name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(folder: Path) -> dict[str, Any] | None:
    """The lock's content (pid, host, command, since) or ``None`` when nobody holds it."""
    try:
        data = json.loads((Path(folder) / LOCK).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {"pid": None}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"pid": None, "command": "unknown (unreadable lock)"}


def _describe(h: dict[str, Any]) -> str:
    since = h.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(
        since, (int, float)) else "?"
    return f"pid {h.get('pid')} on {h.get('host', '?')} ({h.get('command', '?')}, since {when})"


_HELD: list[Path] = []
"""Folders this process holds, newest last: the interrupt message names the newest."""


_LAST: list[Path] = []
_CREATED: set[Path] = set()
"""Folders this process's claims created: removed again on release if nothing was written."""


def held() -> Path | None:
    """The newest folder this process still holds."""
    return _HELD[-1] if _HELD else None


def last_claimed() -> Path | None:
    """The newest folder this process claimed, held or already released (for the message
    after an interruption unwound the claim)."""
    return _LAST[-1] if _LAST else None


def continue_hint() -> str:
    """After a command stopped early: what is on disk and how to go on."""
    folder = last_claimed()
    if folder is None:
        return "nothing was written"
    return f"{folder} is intact; continue with: takeover run --resume {folder}" \
        if (folder / "config.yaml").exists() and not (folder / "sweep.yaml").exists() \
        else f"{folder} is intact; re-run the same command to continue"


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""``OSError.errno`` values that mean "no space left" (a full disk, a quota)."""


def disk_full_message(e: OSError) -> str:
    """The one line every command prints when the disk fills up. A wrapped error (the log
    writer's ``LogWriteError``) is reported by its cause: the advice here is the one that
    knows the command (resume the run folder), not the writer's generic one."""
    cause = e.__cause__
    if isinstance(cause, OSError) and cause.errno in DISK_FULL:
        e = cause
    where = f" writing {e.filename}" if e.filename else ""
    return f"the disk is full{where} ({e.strerror}); free space, then {continue_hint()}"


def claim(folder: str | os.PathLike[str], *, resume: bool = False,
          resumable: bool = True) -> Path:
    """Claim ``folder`` for this process or raise ``FolderError`` naming why.

    A new or empty folder is created and marked; an existing non-empty one is accepted only
    with ``resume=True`` and only if takeover created it (marker present). The lock is
    created exclusively: a second writer is refused naming the holder. ``resumable=False``
    (a command that cannot continue a run, e.g. ``train``) leaves out the ``--resume``
    hint."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{folder} exists and is not a folder; pass another --out")
    new = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FolderError(f"cannot create {folder}: {e.strerror}") from None
    lock = folder / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
          "since": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            h = holder(folder) or {}
            pid = h.get("pid")
            stale = (isinstance(pid, int) and h.get("host") == me["host"] and not _alive(pid))
            if not stale:
                raise FolderError(f"{folder} is in use by {_describe(h)}; wait for it, or pass "
                                  f"another --out (if that process is gone, delete {lock})"
                                  ) from None
            lock.unlink(missing_ok=True)  # its holder died: take it over
            continue
        try:
            with os.fdopen(fd, "w") as f:  # a full disk fails here: leave nothing behind
                json.dump(me, f)
        except BaseException:
            lock.unlink(missing_ok=True)
            _drop_if_new(folder, new)
            raise
        break
    else:  # pragma: no cover - lost a race for a stale lock twice
        raise FolderError(f"{folder} is being claimed by another process; try again")
    try:
        others = [p.name for p in folder.iterdir() if p.name not in (LOCK, MARKER)]
        marked = (folder / MARKER).exists()
        if others and not (resume and marked):
            why = ("it was not created by takeover" if not marked else
                   "it already holds an earlier run" + (
                       " (takeover run --resume continues an interrupted one)" if resumable
                       else ""))
            raise FolderError(f"{folder} is not empty ({len(others)} entries, e.g. "
                              f"{sorted(others)[0]!r}) and {why}; choose another output "
                              "folder")
        if not marked:
            atomic_write_text(folder / MARKER, "created by takeover; safe to delete with "
                                               "the folder\n")
    except BaseException:
        lock.unlink(missing_ok=True)
        _drop_if_new(folder, new)
        raise
    _HELD.append(folder)
    _LAST.append(folder)
    if new:
        _CREATED.add(folder)
    return folder


def _drop_if_new(folder: Path, new: bool) -> None:
    """Undo a failed claim's ``mkdir``: remove ``folder`` if the claim created it and it
    holds nothing but (at most) the marker."""
    if new:
        with contextlib.suppress(OSError):
            if {p.name for p in folder.iterdir()} <= {MARKER}:
                (folder / MARKER).unlink(missing_ok=True)
                folder.rmdir()


def release(folder: str | os.PathLike[str]) -> None:
    """Give up a claim made by this process (a no-op when it is not ours). A folder the
    claim created and nothing was written into is removed again."""
    folder = Path(folder)
    h = holder(folder)
    if h and h.get("pid") == os.getpid():
        (folder / LOCK).unlink(missing_ok=True)
        if folder in _CREATED:  # a command that failed before writing leaves nothing behind
            _drop_if_new(folder, True)
            if not folder.exists():
                _CREATED.discard(folder)
    with contextlib.suppress(ValueError):
        _HELD.remove(folder)


@contextlib.contextmanager
def claimed(folder: str | os.PathLike[str], *, resume: bool = False,
            resumable: bool = True) -> Iterator[Path]:
    """``claim`` for the duration of a ``with`` block."""
    path = claim(folder, resume=resume, resumable=resumable)
    try:
        yield path
    finally:
        release(path)
