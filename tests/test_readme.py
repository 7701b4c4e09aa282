"""The README's Python snippets, run as a newcomer would paste them: each in a fresh
interpreter, twice in a row in the same folder (a snippet that writes files must not fail
the second time, e.g. on an existing log folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"),
                      re.S)


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 2  # the extraction itself must find the tutorial's code


@pytest.mark.slow  # ~40 s per run of the supervisor snippet on 2 cores; CI runs it
@pytest.mark.parametrize("i", range(len(SNIPPETS)))
def test_a_readme_snippet_runs_twice(i, tmp_path):
    script = tmp_path / f"snippet{i}.py"
    script.write_text(SNIPPETS[i], encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SDL_VIDEODRIVER": "dummy",
           "SDL_AUDIODRIVER": "dummy", "MPLBACKEND": "Agg"}
    for attempt in (1, 2):
        res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"snippet {i}, run {attempt}:\n{SNIPPETS[i]}\n" \
                                    f"{res.stderr[-3000:]}"


_SPANS = re.findall(r"`((?:takeover|envs|agents|supervisor|experiments)\.[A-Za-z_][\w.]*)",
                    (ROOT / "README.md").read_text(encoding="utf-8"))
DOTTED = sorted({n if n.startswith("takeover.") else f"takeover.{n}" for n in _SPANS
                 if n.startswith("takeover.") or n.count(".") >= 2})
"""Every ``takeover.x.y`` the README names in code spans (modules, classes, functions), and
every ``layer.module.name`` (two-part ``supervisor.gate`` is an attribute of the snippet's
``supervisor`` object)."""


def test_every_name_the_readme_gives_exists():
    import importlib

    missing = []
    for name in DOTTED:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ImportError:
                continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            missing.append(name)
    assert len(DOTTED) >= 20, DOTTED  # the extraction itself finds the manual's names
    assert not missing, f"the README names what does not exist: {missing}"
