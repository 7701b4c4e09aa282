"""Output folders: safe names, atomic claims, no writing into a user's folder, and the one-line
messages of ``main`` for bad input, a full disk and SIGINT/SIGTERM (no traceback)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takeover import folders
from takeover.folders import FolderError, check_name, claim, claimed, release

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "/abs", "x\0y",
                                  "n" * 101, ".hidden", "-rf", "tab\there"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(FolderError, match="name"):
        check_name(name)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_an_accepted_name_is_one_plain_path_part(name):
    try:
        check_name(name)
    except FolderError:
        return
    p = Path(name)
    assert p.parts == (name,) and not p.is_absolute() and name not in (".", "..")
    assert "\0" not in name and len(name) <= folders.MAX_NAME


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from takeover.folders import claim; claim(sys.argv[1]); "
        "print('held', flush=True); time.sleep(60)"), str(out)], cwd=ROOT,
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderError, match=f"in use by pid {holder.pid}"):
            claim(out)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # its holder is gone: the stale lock is taken over, and the folder (ours) resumes
    assert claim(out, resume=True) == out
    release(out)
    assert not (out / folders.LOCK).exists()


def test_only_folders_takeover_created_are_written_again(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    for resume in (False, True):
        with pytest.raises(FolderError, match="not created by takeover"):
            claim(user, resume=resume)
    assert sorted(p.name for p in user.iterdir()) == ["thesis.tex"]  # nothing left behind
    with claimed(tmp_path / "new") as out:
        (out / "metrics.json").write_text("{}")
    with pytest.raises(FolderError, match="already holds an earlier run"):
        claim(tmp_path / "new")
    with claimed(tmp_path / "new", resume=True):
        pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with claimed(empty):
        pass
    assert empty.is_dir()  # the user's (empty) folder stays
    with claimed(tmp_path / "unused"):
        pass
    assert not (tmp_path / "unused").exists()  # failed before writing: nothing left behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(FolderError, match="not a folder"):
        claim(tmp_path / "file")


def _cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "takeover", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("args,message", [
    (["eval", "NOT_AN_AGENT", "--seeds", "1"], "no agent 'NOT_AN_AGENT'"),
    (["eval", "novice", "-s", "CutInn-v0"], "unknown scenario 'CutInn-v0'"),
    (["run", "train.lr=nan"], "train.lr=nan"),
    (["run", "supervisor.gate_kwargs={bogus: 1}"], "bogus"),
    (["train", "lr=1"], "unknown config key 'lr'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    res = _cli(*args)
    assert res.returncode == 2, res.stderr
    assert message in " ".join(res.stderr.split()) and "Traceback" not in res.stderr


def test_a_tampered_checkpoint_is_exit_2_in_eval_and_drive(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"format": "takeover-checkpoint",
                                                   "format_version": 2}))
    for args in (["eval", str(bad), "--seeds", "1"],
                 ["drive", "--agent", str(bad), "--max-frames", "1"]):
        res = _cli(*args, env={"SDL_VIDEODRIVER": "dummy"})
        assert res.returncode == 2, (args, res.stderr[-2000:])
        assert "manifest.json" in "".join(res.stderr.split()) and "Traceback" not in res.stderr


def test_version_and_plain_flags():
    from takeover import __version__

    res = _cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"takeover {__version__}"
    res = _cli("eval", "--help")
    assert "<bool>" not in res.stdout and "--trust-sb3-zip" in res.stdout


def test_train_refuses_to_overwrite_an_earlier_run(tmp_path):
    out = tmp_path / "t"
    out.mkdir()
    (out / "config.yaml").write_text("earlier: run\n")
    res = _cli("train", f"out={out}", "total_timesteps=64")
    assert res.returncode == 2 and "not empty" in res.stderr
    assert (out / "config.yaml").read_text() == "earlier: run\n"


def test_eval_takes_the_short_names_drive_takes():
    from takeover.commands.eval import resolve_env_id
    from takeover.envs import ENV_IDS

    cut_in = next(i for i, s in ENV_IDS.items() if s == "cut_in")
    short = cut_in.split("/", 1)[1]
    for name in (cut_in, short, short.rsplit("-v", 1)[0], "cut_in"):
        assert resolve_env_id(name, ENV_IDS) == cut_in


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_prints_one_line_naming_the_folder(tmp_path, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "takeover", "run", "ci", "--out", str(out), "--quiet"], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "config.yaml").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("interrupted") and str(out) in lines[-1]
    assert "--resume" in lines[-1] and "Traceback" not in err
    assert not (out / folders.LOCK).exists()  # the claim is released


def test_disk_full_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    """ENOSPC raised anywhere inside a command ends in one line naming the file."""
    from takeover import cli

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json"))

    monkeypatch.setattr("takeover.experiments.config.load_config", full)
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "disk is full writing" in err and "x.json" in err


def test_a_plain_run_prints_no_audio_xdg_or_ray_noise(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("SDL_AUDIODRIVER", "SDL_VIDEODRIVER", "XDG_RUNTIME_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-m", "takeover", "eval", "novice", "-s", "Plain-v2",
                          "--seeds", "1"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    noise = [w for w in ("ALSA", "XDG_RUNTIME_DIR", "pygame-ce", "Hello from the pygame",
                         "usage stats", "token") if w.lower() in res.stderr.lower()]
    assert not noise and res.stderr.strip() == "", res.stderr[-2000:]


def test_an_interrupt_dropped_in_a_c_callback_prints_nothing_and_is_remembered():
    """A stop signal that lands while C code runs a Python callback (numba writing its cache
    through llvmlite's object-cache hook) is dropped by Python with an "Exception ignored
    ... Traceback" on stderr; the run still stops at its next ``check()``, so that
    traceback must not print (CI caught it under ``takeover run`` + SIGTERM)."""
    import ctypes

    from takeover import interrupt

    saved = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM),
             sys.unraisablehook)
    reported: list[type] = []  # what reaches the hook that prints "Exception ignored"
    try:
        sys.unraisablehook = lambda u: reported.append(u.exc_type)
        interrupt.install()
        callback = ctypes.CFUNCTYPE(None)(lambda: os.kill(os.getpid(), signal.SIGTERM))
        callback()
        assert interrupt.received() == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        other = ctypes.CFUNCTYPE(None)(lambda: 1 / 0)
        other()  # anything else dropped in a callback is still reported
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
        sys.unraisablehook = saved[2]
        interrupt._received = None
    assert reported == [ZeroDivisionError]
