"""The package as a user installs it: build the wheel from this checkout, install it into a
private folder and import every layer from there, from the repo root (where the local
``takeover/`` folder shadows an installed package) and from elsewhere; the shipped agents
and configs must come along as package data."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_imports import ROOT, source_modules

CODE = """
import sys, takeover
import takeover.envs, takeover.agents, takeover.supervisor, takeover.experiments
import takeover.experiments.benchmarks, takeover.commands, takeover.cli
from takeover.agents import load_agent
from takeover.experiments.config import load_config
agent = load_agent("novice")
cfg, _ = load_config("default")
print(takeover.envs.__file__)
print(agent.metadata["path"])
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("wheel")
    # setuptools builds in the checkout's own build/ folder: two pytest-xdist workers that
    # each run this fixture at once collide there ("File exists: build/bdist..."), so the
    # builds take turns on a lock in the folder the workers' temporary folders share
    lock = tmp_path_factory.getbasetemp().parent / "takeover-wheel-build.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                              "--no-build-isolation", "-q", "-w", str(out / "dist"),
                              str(ROOT)], capture_output=True, text=True, cwd=out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "warning" not in res.stderr.lower(), res.stderr[-3000:]  # e.g. undeclared data
    (whl,) = (out / "dist").glob("takeover-*.whl")
    target = out / "site"
    with zipfile.ZipFile(whl) as z:
        z.extractall(target)  # what `pip install --target` lays out, minus the scripts
    return whl, target


def test_the_wheel_holds_every_module_and_the_package_data(wheel):
    whl, _ = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    missing = [m for m, p in source_modules().items()
               if (m.replace(".", "/") + ("/__init__.py" if p.name == "__init__.py" else ".py"))
               not in names]
    assert not missing, f"modules left out of the wheel (add them to pyproject): {missing}"
    for shipped in (ROOT / "agents" / "pretrained").iterdir():
        for f in shipped.iterdir():
            assert f"takeover/agents/pretrained/{shipped.name}/{f.name}" in names
    for cfg in (ROOT / "experiments" / "configs").glob("*.yaml"):
        assert f"takeover/experiments/configs/{cfg.name}" in names
    assert "takeover/py.typed" in names


@pytest.mark.parametrize("where", ["repo_root", "elsewhere"])
def test_the_installed_wheel_imports_from_any_folder(wheel, where, tmp_path):
    _, target = wheel
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    cwd = ROOT if where == "repo_root" else tmp_path
    res = subprocess.run([sys.executable, "-c", CODE], cwd=cwd, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    envs_file, agent_path = res.stdout.split()
    if where == "elsewhere":  # nothing shadows the install: every file comes from it
        assert Path(envs_file).is_relative_to(target) and Path(agent_path).is_relative_to(target)
    # from the repo root, Python puts the cwd first, so the checkout's own takeover/ wins
    # and resolves the layers from the checkout; either way every layer imports
    res = subprocess.run([sys.executable, "-m", "takeover", "--version"], cwd=cwd, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("takeover "), res.stderr[-2000:]
