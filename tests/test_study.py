"""The user-study mode, headless: a participant's whole session driven by posted key events
(consent, practice, counterbalanced trials, TLX and trust answered with keys), the Latin
square, and the report's per-condition rows and takeover-time fits."""

from __future__ import annotations

import json
from collections import Counter
from itertools import permutations

import pygame
import pytest
import yaml

from takeover.config import ConfigError
from takeover.logio import read_log
from takeover.supervisor.study import (
    latin_square,
    load_study,
    participant_index,
    report,
    run_study,
    trial_plan,
    trust_score,
)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_latin_square_is_balanced(n):
    rows = latin_square(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    for row in rows:
        assert sorted(row) == list(range(n))
    reps = len(rows) // n
    for pos in range(n):  # every condition in every position equally often
        assert Counter(r[pos] for r in rows) == {c: reps for c in range(n)}
    pairs = Counter((r[i], r[i + 1]) for r in rows for i in range(n - 1))
    assert set(pairs) == set(permutations(range(n), 2))  # every condition follows every other
    assert len(set(pairs.values())) == 1


def _study_file(tmp_path, **over):
    data = {"name": "t", "practice": [{"scenario": "Plain-v2", "seed": 11}],
            "conditions": [{"name": "a", "scenario": "Plain-v2", "seeds": [21]},
                           {"name": "b", "scenario": "SuddenBrake-v2", "seeds": [31]}],
            "settings": {"agent": "idm", "gate": "always", "env": {"duration": 3.0}},
            "scripted": ["expert"], "scripted_repeats": 2}
    data.update(over)
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_order_follows_the_participant_number(tmp_path):
    cfg = load_study(_study_file(tmp_path))
    assert participant_index("P07") == 7
    with pytest.raises(ConfigError, match="--order"):
        participant_index("anna")
    p0 = [t.condition for t in trial_plan(cfg, 0)]
    p1 = [t.condition for t in trial_plan(cfg, 1)]
    assert p0 == ["", "a", "b"] and p1 == ["", "b", "a"]  # practice first, then counterbalanced


def test_bad_study_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="conditon"):
        load_study(_study_file(tmp_path, conditon=[]))
    with pytest.raises(ConfigError, match="Valid scenarios"):
        load_study(_study_file(tmp_path, conditions=[{"name": "x", "scenario": "Nope",
                                                      "seeds": [1]}]))
    with pytest.raises(ConfigError, match="questionnaire"):
        load_study(_study_file(tmp_path, questionnaires=["sus"]))


K = pygame


def _stream(items):
    """Post one scripted key per frame; ``("wait", n)`` idles n frames."""
    queue = list(items)
    state = {"wait": 0}

    def hook(frame):
        if state["wait"] > 0:
            state["wait"] -= 1
            return
        if not queue:
            return
        item = queue.pop(0)
        if isinstance(item, tuple):
            state["wait"] = item[1]
            return
        for key in item if isinstance(item, list) else [item]:  # a list: typed in one frame
            for kind in (K.KEYDOWN, K.KEYUP):
                pygame.event.post(pygame.event.Event(kind, key=key, mod=0, unicode="",
                                                     scancode=0))

    return hook, queue


def test_a_participant_session_logs_episodes_answers_and_timings(tmp_path):
    cfg = load_study(_study_file(tmp_path))
    keys = [K.K_y, K.K_SPACE, ("wait", 200), K.K_SPACE,  # consent, practice (3 s = 180 frames)
            K.K_SPACE, ("wait", 40), K.K_SPACE, ("wait", 200),  # trial 1: take over at ~0.7 s
            K.K_SPACE, *[K.K_RIGHT, K.K_RIGHT, K.K_RETURN] * 6, *[K.K_5] * 12,
            K.K_SPACE, ("wait", 200),  # trial 2: no takeover
            K.K_SPACE, *[K.K_LEFT, K.K_RETURN] * 6, [K.K_2] * 12, K.K_SPACE]  # 12 keys, 1 frame
    hook, left = _stream(keys)
    data = run_study(cfg, "P01", tmp_path / "run", fixed_clock=True, sound=False,
                     before_frame=hook)
    assert not left, "the session did not consume every scripted key"
    assert data["consent"]["given"] and data["order"] == ["b", "a"]
    practice, t1, t2 = data["trials"]
    assert practice["practice"] and practice["answers"] == {}
    assert [t1["condition"], t2["condition"]] == ["b", "a"]
    tlx1 = [a["value"] for a in t1["answers"]["tlx"]]
    assert tlx1 == [60] * 6 and [a["value"] for a in t2["answers"]["tlx"]] == [45] * 6
    assert [a["value"] for a in t2["answers"]["trust"]] == [2] * 12  # fast typing kept
    assert trust_score(t1["answers"]["trust"]) == pytest.approx((5 * 3 + 7 * 5) / 12)
    # response times on the 60 fps fixed clock: RIGHT, RIGHT, ENTER on consecutive frames
    # (the first item also waited out the end of the scripted pause)
    rts = [a["rt_s"] for a in t1["answers"]["tlx"]]
    assert rts == pytest.approx([3 / 60] * 6)
    assert all(a["rt_s"] >= 0 for a in t1["answers"]["trust"])
    assert t1["takeover_s"] == pytest.approx(0.7, abs=0.15)  # SPACE 40 frames into the drive
    on_disk = json.loads((tmp_path / "run" / "study.json").read_text())
    assert on_disk["trials"] == json.loads(json.dumps(data["trials"]))
    log = read_log(tmp_path / "run")
    assert sorted(log.episodes) == sorted(t["episode"] for t in data["trials"])
    # the report: one row per condition, the person's fit and the scripted human's
    res = report([tmp_path / "run"], _study_file(tmp_path), repeats=2)
    rows = {r["condition"]: r for r in res["rows"]}
    assert set(rows) == {"a", "b"} and rows["b"]["takeovers"] == 1
    assert rows["b"]["tlx_raw"] == 60 and rows["a"]["tlx_raw"] == 45
    assert res["participants"]["P01"]["n"] == 1
    assert res["participants"]["P01"]["median"] == pytest.approx(t1["takeover_s"])
    assert "expert" in res["scripted"]


def test_declined_consent_runs_nothing(tmp_path):
    cfg = load_study(_study_file(tmp_path))
    hook, _ = _stream([K.K_ESCAPE])
    data = run_study(cfg, "P02", tmp_path / "run", fixed_clock=True, sound=False,
                     before_frame=hook)
    assert data["consent"]["given"] is False and data["trials"] == []


def test_cli_refuses_bad_input_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from takeover.cli import app

    run = CliRunner().invoke
    res = run(app, ["study", str(tmp_path / "nope.yaml"), "--participant", "P1"])
    assert res.exit_code == 2 and "nope.yaml" in res.output and "Traceback" not in res.output
    res = run(app, ["study", str(_study_file(tmp_path))])
    assert res.exit_code == 2 and "--participant" in res.output
    res = run(app, ["study", "report", str(tmp_path)])
    assert res.exit_code == 2 and "study.json" in res.output
