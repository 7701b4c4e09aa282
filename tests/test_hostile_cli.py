"""Cases found by driving ``python -m takeover`` from outside the suite (issue 15's adversarial
pass, repeated): a full disk at every point of a command, hostile paths, logs the reviewer
could not replay. Each ends in one line, a non-zero exit (2 for bad input), no traceback, and
nothing left on disk that looks complete but is not."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from takeover import folders
from takeover.cli import app, main
from takeover.folders import FolderError, claim, disk_full_message

runner = CliRunner()


def _no_space(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _main(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code), capsys.readouterr().err


# --- a full disk ----------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["lock", "marker"])
def test_a_claim_on_a_full_disk_leaves_no_lock_and_no_folder(tmp_path, monkeypatch, where):
    """Found with a 256 kB tmpfs: ``train`` on a full disk left ``.takeover.lock`` behind,
    so the next run was refused as 'in use'."""
    target = {"lock": (folders.json, "dump"), "marker": (folders, "atomic_write_text")}[where]
    monkeypatch.setattr(*target, _no_space)
    out = tmp_path / "new"
    with pytest.raises(OSError):
        claim(out)
    assert not out.exists()
    monkeypatch.undo()
    assert claim(out) == out  # and the folder can be claimed once space is back
    folders.release(out)


def test_the_disk_full_line_names_the_cause_not_the_log_writer_advice(tmp_path):
    """The log writer's own hint ('start a new run directory') contradicts the run's
    resume; the one line reports the underlying error and the command's way on."""
    from takeover.logio import LogWriteError

    cause = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "ep.tkc"))
    err = LogWriteError(errno.ENOSPC, "could not finish an episode (disk full: free space, "
                                      "then start a new run directory)")
    err.__cause__ = cause
    line = disk_full_message(err)
    assert "start a new run directory" not in line and "ep.tkc" in line
    assert "\n" not in line


def test_a_minari_export_that_fills_the_disk_leaves_no_partial_dataset(tmp_path, monkeypatch,
                                                                     capsys):
    """Found on a tmpfs: Minari left ``data/metadata.json`` and a torn arrow file, a folder
    ``minari.load_dataset`` would open as a complete dataset."""
    pytest.importorskip("minari")
    from test_log_cli import write_supervised

    import takeover.commands.log as log_cmd

    write_supervised(tmp_path / "run", discrete=True)
    root = tmp_path / "ds"

    def partial(res, dataset_id, env_id=None):
        data = root / dataset_id / "data"
        data.mkdir(parents=True)
        (data / "metadata.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log_cmd, "to_minari", partial)
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    code, err = _main(["log", "export", str(tmp_path / "run"), "--to", "minari", "--out",
                       "takeover/full-v0", "--root", str(root)], capsys)
    assert code == 1 and "disk is full" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (root / "takeover").exists()  # the namespace folder the export created


def test_a_command_that_catches_everything_still_prints_the_disk_full_line():
    """``drive`` and ``study`` turn every failure into one line; a full disk keeps the
    shared message (free space, what is intact) instead of 'OSError: ...'."""
    from takeover.commands.drive import person_errors

    with pytest.raises(OSError) as e, person_errors():
        _no_space()
    assert e.value.errno == errno.ENOSPC


def test_the_humans_report_never_leaves_a_torn_figure(tmp_path, monkeypatch):
    """Found on a full tmpfs: ``humans report`` left a 0-byte ``human_calibration.png``."""
    from matplotlib.figure import Figure

    from takeover.experiments import human_calibration as hc

    def torn(self, f, **kw):
        f.write(b"\x89PNG partial")
        _no_space()

    monkeypatch.setattr(Figure, "savefig", torn)
    rows = [hc.DrivingRow(skill, "takeover/Plain-v2", "continuous", 1, (1.0, 0.2, 1.0), {})
            for skill in hc.PRESETS]
    with pytest.raises(OSError):
        hc._plot(tmp_path / "human_calibration.png", 100, 0, rows)
    assert list(tmp_path.iterdir()) == []


# --- hostile paths ----------------------------------------------------------------------------
@pytest.mark.parametrize("args,shown", [
    (["run", "a[/x]b.yaml"], "a[/x]b.yaml"),
    (["sweep", "z[/].yaml"], "z[/].yaml"),
    (["run", "[bold]x.yaml"], "[bold]x.yaml"),
])
def test_paths_with_markup_characters_print_verbatim(args, shown, capsys):
    """Found from outside: rich read ``[/x]`` in a path as a closing tag (MarkupError
    traceback)."""
    code, err = _main(args, capsys)
    assert code == 2 and shown in err and "Traceback" not in err and "MarkupError" not in err


def test_an_error_naming_a_long_path_stays_on_one_line(tmp_path):
    """The error was wrapped at 80 columns in the middle of the path (a test failed on a
    longer pytest tmp folder)."""
    out = tmp_path / ("deep" * 12) / "t"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text("earlier: run\n")
    res = runner.invoke(app, ["train", f"out={out}", "total_timesteps=64"])
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and str(out) in lines[0], res.output


def test_train_refuses_an_earlier_run_without_pointing_at_run_resume(tmp_path):
    """``takeover train`` into a folder holding an earlier (takeover-made) run is refused, and
    the message does not suggest ``takeover run --resume``: a training cannot be resumed."""
    from takeover.folders import claimed

    out = tmp_path / "t"
    with claimed(out):  # an earlier run: marked by takeover, not empty
        (out / "config.yaml").write_text("earlier: run\n")
    res = runner.invoke(app, ["train", f"out={out}", "total_timesteps=64"])
    assert res.exit_code == 2 and "earlier run" in res.output, res.output
    assert "--resume" not in res.output and "out=NEW_FOLDER" in res.output


# --- logs the reviewer cannot replay ----------------------------------------------------------
def test_review_finds_the_seed_of_the_experiment_runner_episodes():
    """``takeover review runs/<run>/logs/supervised`` raised ReplayError (a traceback) on
    every episode the runner wrote: it names them ``<condition>-<scenario>-<seed>``."""
    from takeover.commands.review import _seed_resolver
    from takeover.records import RunMeta

    meta = RunMeta(run_id="tiny-eval-supervised", seed=3,
                   config={"seed": 3, "env": {"scenarios": ["cut_in", "sudden_brake"]}})
    seed_of = _seed_resolver(meta)
    assert seed_of("supervised-cut_in-301") == 301
    assert seed_of("human_expert-sudden_brake-1000004") == 1000004
    assert seed_of("s7-e2") == 7  # the engine's default names still work


def test_an_unreplayable_log_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from takeover.supervisor.review import ReplayError

    run = tmp_path / "log"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({}))

    def cannot(*_a, **_k):
        raise ReplayError("cannot tell the seed of episode 'x'")

    monkeypatch.setattr("takeover.commands.review.session", cannot)
    code, err = _main(["review", str(run)], capsys)
    assert code == 2 and err.strip() == "error: cannot tell the seed of episode 'x'"


def test_a_folder_error_is_still_refused_before_any_write(tmp_path):
    """Regression guard for the claim changes: a non-empty user folder stays untouched."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(FolderError, match="not empty"):
        claim(out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert Path(out / "notes.txt").read_text() == "keep"


# --- signals ------------------------------------------------------------------------------------
def test_a_signal_during_a_fork_is_remembered_not_printed_as_a_traceback(monkeypatch):
    """Found from outside: SIGTERM arriving while the evaluation forked its workers raised
    inside the standard library's fork hook ("Exception ignored ... Traceback") and was lost;
    now it is only remembered there, and the next safe point stops the run."""
    from takeover import interrupt

    monkeypatch.setattr(interrupt, "_received", None)
    interrupt._fork_begins()
    try:
        interrupt._handler(15, None)  # no raise while forking
    finally:
        interrupt._fork_ends()
    assert interrupt.received() == 15
    with pytest.raises(KeyboardInterrupt):
        interrupt.check()


class _SlowRollouts:
    """Two jobs that take longer than the test: only a stop signal ends the wait."""

    def gate(self, _condition):
        return object()

    def run_batch(self, *_job):
        import time

        time.sleep(30)
        return []


def test_waiting_for_worker_processes_stops_on_a_swallowed_signal(monkeypatch):
    """The run hung for good when the signal was swallowed while its workers ran: the
    parent waited on them without ever reaching a safe point."""
    from takeover import interrupt
    from takeover.experiments.episodes import run_jobs

    monkeypatch.setattr(interrupt, "_received", 15)
    with pytest.raises(KeyboardInterrupt):
        next(run_jobs(_SlowRollouts(), [("a",), ("b",)], processes=2))


class _MixedRollouts(_SlowRollouts):
    """Job ``"fast"`` returns at once, ``"boom"`` raises, any other sleeps 30 s."""

    def run_batch(self, *job):
        if job[0] == "fast":
            return ["fast"]
        if job[0] == "boom":
            raise ValueError("bad job")
        return super().run_batch(*job)


def test_stopping_while_a_worker_is_idle_kills_the_workers_and_returns():
    """An interrupted run once printed "interrupted" and never exited (one loaded
    full-suite run, session 5; not reproduced). Closing the stream while one worker is
    idle and the other mid-job must end both workers, not wait out the 30 s job."""
    import multiprocessing as mp

    from takeover.experiments.episodes import run_jobs

    jobs = run_jobs(_MixedRollouts(), [("fast",), ("slow",)], processes=2)
    assert next(jobs) == ["fast"]
    jobs.close()
    assert mp.active_children() == []


def test_an_error_in_a_worker_reaches_the_caller_with_its_type():
    from takeover.experiments.episodes import run_jobs

    with pytest.raises(ValueError, match="bad job"):
        list(run_jobs(_MixedRollouts(), [("fast",), ("boom",), ("fast",)], processes=2))


class _MaskRollouts(_SlowRollouts):
    """Each job returns the stop signals its worker blocks."""

    def run_batch(self, *job):
        import signal

        return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])
                      if s in (signal.SIGINT, signal.SIGTERM))


def test_workers_take_stop_signals_and_the_parent_mask_is_restored():
    """Workers are forked with SIGINT / SIGTERM blocked (a stop signal between the fork and
    the worker's own handlers would run the parent's handler in the child) and unblock
    them once set up; the parent's signal mask is the same after the run as before."""
    import signal

    from takeover.experiments.episodes import run_jobs

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert list(run_jobs(_MaskRollouts(), [("a",), ("b",)], processes=2)) == [[], []]
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


# --- config files ---------------------------------------------------------------------------
def test_a_key_given_twice_in_a_config_is_refused_naming_it(tmp_path):
    """Found from outside: ``name: a`` then ``name: b`` ran silently with the last value."""
    from takeover.config import ConfigError, load_yaml

    p = tmp_path / "c.yaml"
    p.write_text("name: a\ntrain:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"line 4.*'lr' is given twice"):
        load_yaml(p)
    p.write_text("name: a\ntrain: {lr: 0.1, epochs: 2}\n")
    assert load_yaml(p) == {"name": "a", "train": {"lr": 0.1, "epochs": 2}}


def test_a_yaml_syntax_error_is_one_line_with_its_position(tmp_path):
    from takeover.config import ConfigError, load_yaml

    p = tmp_path / "c.yaml"
    p.write_text("name:\t[\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    assert "\n" not in str(e.value) and "line 1, column 6" in str(e.value)


def test_eval_refuses_a_negative_first_seed_before_loading_anything():
    """Found from outside: ``--seed0 -5`` was a numpy traceback from the first reset."""
    res = runner.invoke(app, ["eval", "novice", "--seed0", "-5", "--seeds", "1"])
    assert res.exit_code == 2 and "--seed0=-5" in res.output, res.output


def test_a_checkpoint_manifest_that_is_a_directory_says_so(tmp_path):
    from takeover.agents.checkpoint import CheckpointError, read_manifest

    (tmp_path / "manifest.json").mkdir()
    with pytest.raises(CheckpointError, match="is a directory, not a file"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("bound", [[None, []], [[1.0], [1.0, 2.0]], [[]]])
def test_a_ragged_space_bound_in_a_manifest_is_a_checkpoint_error(tmp_path, bound):
    """Found by test_checkpoint's hypothesis run: ``observation_space.high = [None, []]``
    raised numpy's ValueError instead of a CheckpointError naming the field."""
    import json

    from helpers import tiny_checkpoint

    from takeover.agents.checkpoint import CheckpointError, read_manifest

    ck = tiny_checkpoint(tmp_path / "agent")
    m = json.loads((ck / "manifest.json").read_text())
    m["observation_space"]["high"] = bound
    (ck / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="observation_space.high"):
        read_manifest(ck)


def test_the_progress_bar_says_what_runs_after_the_last_item():
    """The report was built (bootstrap, figures: tens of seconds) under a bar standing at
    N/N with the last episode's name; the bar now says so."""
    import io

    from rich.console import Console

    from takeover.commands import progress_bar

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress_bar(console, False, "starting", 36, last="building the report") as progress:
        tick = progress(2)
        tick("eval a")
        tick("eval b")
        console.print("")  # a refresh with the last description
    assert "building the report" in out.getvalue() and "2/2" in out.getvalue()
    with progress_bar(console, True, "starting", 36, last="x") as progress:  # quiet: no bar
        progress(1)("eval a")
