"""Conformance of every registered plugin, found automatically: every ``Registry`` in the
package (estimators, gates, humans, hazards, allocation policies, and any kind added later)
and every entry in it. A new plugin is one class and one registry line; this file picks it up
with no edit. Checks common to all kinds: the entry builds with its defaults, its keyword
arguments are introspectable and typed (so configs are checked at load), an unknown keyword
is refused naming the valid ones, and the entry is documented. Kinds with a Protocol in the
package are checked against it, with a short behavioural check where the interface allows.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_imports import source_modules

from takeover.config import ConfigError, check_kwargs, plugin_params
from takeover.registry import Registry

SKIP = ("takeover.__main__", "takeover.cli", "takeover.commands", "takeover.experiments.benchmarks")
"""Entry points and benchmarks: they register nothing and some start work on import."""


def registries() -> dict[str, Registry[Any]]:
    """``module.attr -> Registry`` for every registry defined in the package."""
    found: dict[str, Registry[Any]] = {}
    for name in sorted(source_modules()):
        if name.startswith(SKIP):
            continue
        mod = importlib.import_module(name)
        for attr, value in vars(mod).items():
            if isinstance(value, Registry):
                key = next((k for k, v in found.items() if v is value), None)
                if key is None:
                    found[f"{name}.{attr}"] = value
    return found


REGISTRIES = registries()
KNOWN_GAPS: dict[tuple[str, str], str] = {}
"""Plugins in other branches' files that fail a check today. Strict xfails: the entry must
be deleted here when its fix lands."""
ENTRIES = [pytest.param(key, entry, id=f"{key.rsplit('.', 1)[-1]}:{entry}",
                        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[
                            (reg.what, entry)])] if (reg.what, entry) in KNOWN_GAPS else [])
           for key, reg in REGISTRIES.items() for entry in reg.names()]


def _doc(factory: Any) -> str:
    import functools

    while isinstance(factory, functools.partial):
        factory = factory.func
    return inspect.getdoc(factory) or ""


def test_registries_are_found():
    kinds = {reg.what for reg in REGISTRIES.values()}
    # the harness must see the kinds that exist today; new kinds only add to this
    assert {"gate", "estimator", "human model"} <= kinds, kinds
    assert len(ENTRIES) >= 15


@pytest.mark.parametrize("key,entry", ENTRIES)
def test_plugin_builds_documents_and_types_its_kwargs(key, entry):
    reg = REGISTRIES[key]
    factory = reg.get(entry)
    assert _doc(factory).strip(), f"{reg.what} {entry!r} has no docstring: say what it does"
    params, _open = plugin_params(factory)
    required = [n for n, (_, d) in params.items() if d is inspect.Parameter.empty]
    assert not required, f"{reg.what} {entry!r} needs {required}: give every keyword a default"
    for name, (tp, default) in params.items():
        assert tp is not Any or default is None, (
            f"{reg.what} {entry!r}: keyword {name!r} has no annotation, so a config cannot "
            "be checked at load")
    obj = reg.make(entry, **check_kwargs(factory, {}, "kwargs", f"{reg.what} {entry!r}"))
    assert obj is not None
    if not _open:
        with pytest.raises(ConfigError, match="takes no keyword 'no_such_kwarg'"):
            check_kwargs(factory, {"no_such_kwarg": 1}, "kwargs", reg.what)
    conform = CONFORMANCE.get(reg.what)
    if conform is not None:
        conform(entry, obj)


# --- per-kind behaviour (only what every plugin of the kind must do) ------------------------
def _gate(entry: str, gate: Any) -> None:
    """Every gate decides for N worlds at once: ``(N,)`` arrays in, ``(N,)`` arrays out,
    whatever the scores (NaN and +inf included: the engine sends +inf for non-finite)."""
    from takeover.supervisor.gates import Gate, GateContext, GateDecision
    from takeover.types import AgentOutputs

    assert isinstance(gate, Gate), f"gate {entry!r} does not implement the Gate protocol"
    n = 3
    gate.bind(n)
    gate.reset(np.arange(n), [0, 1, 2])
    out = AgentOutputs(action=np.zeros(n, dtype=np.int64), risk=np.full(n, 0.5))
    for t, score in enumerate([0.0, 0.2, 0.9, 0.95, 0.1, 0.0, math.inf, 1.0]):
        scores = np.array([score, 1.0 - score if math.isfinite(score) else score, 0.5])
        ctx = GateContext(time=np.full(n, 0.1 * t), phase=np.zeros(n, dtype=np.int8),
                          info={"ttc": np.full(n, 5.0)}, out=out,
                          human_action=np.full((n, 1), np.nan),
                          scores={"q_risk": scores, "ensemble": scores})
        d = gate.decide(scores, ctx)
        assert isinstance(d, GateDecision)
        for field in (d.request, d.threshold, d.release):
            assert np.shape(field) == (n,), f"gate {entry!r} must answer one value per world"
        assert np.asarray(d.request).dtype == bool
    gate.end_episode(np.arange(n))


def _estimator(entry: str, est: Any) -> None:
    from takeover.supervisor.estimators import Estimator

    assert isinstance(est, Estimator), f"estimator {entry!r} does not implement Estimator"
    assert isinstance(getattr(est, "name", None), str) and est.name


def _human(entry: str, human: Any) -> None:
    from takeover.types import Human, Humans

    assert isinstance(human, (Human, Humans)), (
        f"human model {entry!r} implements neither Human nor the batched Humans protocol")


def _allocation(entry: str, policy: Any) -> None:
    """Every allocation policy ranks N waiting worlds: one ``(N,)`` key per criterion, NaN
    and +inf scores included, and ``rank`` turns them into a permutation of the worlds."""
    from takeover.supervisor.allocation import FleetState, rank

    n = 4
    scores = np.array([0.1, math.inf, math.nan, 0.7])
    state = FleetState(waiting=np.array([True, True, False, True]),
                       constraint=np.array([False, True, False, False]),
                       waited=np.array([0.0, 2.5, 0.0, 1.0]), urgency=np.array([0.2, 1.0, 0, 0.5]),
                       scores={k: scores for k in ("q_risk", "entropy", "ensemble", "novelty")},
                       last_served=np.array([-math.inf, 3.0, 1.0, 0.0]),
                       rng=np.random.default_rng(0))
    keys = policy.keys(state)
    assert isinstance(keys, tuple) and keys, f"allocation {entry!r}: keys() returns a tuple"
    order = rank(policy, state, keys)
    assert sorted(order.tolist()) == list(range(n)), f"allocation {entry!r} loses a world"


CONFORMANCE = {"gate": _gate, "estimator": _estimator, "human model": _human,
               "allocation policy": _allocation}
"""Behaviour checks by registry kind; a kind not listed gets the common checks above."""


# --- hazards: the world's plugin kind, registered in ``takeover.envs.hazards.HAZARDS`` ----
def _hazards() -> list[str]:
    from takeover.envs.hazards import HAZARDS

    return list(HAZARDS)


@pytest.mark.parametrize("name", _hazards())
def test_hazard_is_registered_documented_placed_and_fires(name):
    """A hazard class gets its env id and scenario name from the registry, is placed by the
    compiled reset (the dispatch is built from the registry) and fires for a careful driver
    on every seed tried, at its onset time when timed. The mixed world's list stays pinned."""
    import gymnasium as gym

    from takeover.envs import ENV_IDS, VERSION
    from takeover.envs import layout as L
    from takeover.envs.config import HighwayConfig
    from takeover.envs.drivers import IDMDriver
    from takeover.envs.hazards import BY_CODE, HAZARDS, MIXED

    h = HAZARDS[name]
    assert h.summary.strip() and h.code > 0 and BY_CODE[h.code] is h, name
    assert h.trigger in (L.TRIGGER_TIME, L.TRIGGER_RANGE), name
    env_id = f"takeover/{h.env_name}-{VERSION}"
    assert ENV_IDS[env_id] == name
    assert MIXED == ("sudden_brake", "cut_in", "stalled_car", "merge", "lane_closure")
    lo, hi = HighwayConfig().onset
    for seed in range(3):
        env = gym.make(env_id).unwrapped
        env.reset(seed=seed)
        assert env.world[L.HZ_KIND] == h.code and env.hazard == name
        hazard_slots = env.vehicles[1 + env.config.vehicles:, L.KIND]  # after the traffic
        assert (hazard_slots != L.EMPTY).any(), f"hazard {name!r} placed nothing"
        driver = IDMDriver()
        while True:
            *_, term, trunc, info = env.step(driver(env))
            if info["hazard_fired"] or term or trunc:
                break
        assert info["hazard_fired"], f"hazard {name!r} never fired on seed {seed}"
        if h.trigger == L.TRIGGER_TIME:  # fired within a step of its onset, in cfg.onset
            assert lo <= info["hazard_onset"] <= hi + 0.05
            assert info["time"] - 0.1 - 1e-9 <= info["hazard_onset"] < info["time"]


# --- extension: a plugin of every kind is one new file plus its registry line ---------------
SCRATCH_PLUGINS = {
    # kind: (new file, its source, registry module, lines added there [, after this line])
    "estimator": ("supervisor/speed_risk.py", '''
"""A scratch estimator: the ego's speed as risk."""
import numpy as np

from takeover.supervisor.estimators import ESTIMATORS, BaseEstimator


@ESTIMATORS.register("speed_risk")
class SpeedRisk(BaseEstimator):
    """The ego's speed over ``v_max`` m/s, clipped to [0, 1]."""

    def __init__(self, v_max: float = 40.0, name: str = "speed_risk") -> None:
        self.name, self.v_max = name, v_max

    def score_batch(self, obs, out, info):
        speed = np.asarray(info.get("speed", np.zeros(len(obs))), np.float64)
        return np.clip(speed / self.v_max, 0.0, 1.0)
''', "supervisor/estimators.py", ["from takeover.supervisor import speed_risk  # noqa: E402,F401"]),
    "gate": ("supervisor/level_gate.py", '''
"""A scratch gate: asks while the score is above a level."""
import numpy as np

from takeover.supervisor.gates import GATES, BaseGate
from takeover.types import GateDecision


@GATES.register("above_level")
class LevelGate(BaseGate):
    """Requests the human while the score exceeds ``level``; allows the hand-back below."""

    name = "above_level"

    def __init__(self, level: float = 0.5) -> None:
        self.level = level
        super().__init__()

    def decide(self, score, ctx):
        high = np.asarray(score, np.float64) > self.level
        return GateDecision(high, np.full(self.n, self.level), ~high)
''', "supervisor/gates.py", ["from takeover.supervisor import level_gate  # noqa: E402,F401"]),
    "human model": ("supervisor/humans/bystander.py", '''
"""A scratch human model: N humans who watch and never act."""
import numpy as np

from takeover.supervisor.humans import HUMANS
from takeover.types import HumanInputs


@HUMANS.register("bystander")
class Bystanders:
    """``num_worlds`` humans who never take over and never answer a request."""

    def __init__(self, num_worlds: int = 1) -> None:
        self.n = num_worlds

    def reset(self, worlds, seeds) -> None:
        pass

    def act(self, obs, info, world, views):
        no = np.zeros(self.n, dtype=bool)
        return HumanInputs(action=np.zeros((self.n, 2), np.float32), has_action=no,
                           wants_control=no.copy(), releases=no.copy())
''', "supervisor/humans/__init__.py",
        ["from takeover.supervisor.humans import bystander  # noqa: E402,F401"]),
    "allocation policy": ("supervisor/newest_first.py", '''
"""A scratch allocation policy: the newest request first."""
from takeover.supervisor.allocation import ALLOCATIONS


@ALLOCATIONS.register("newest")
class NewestFirst:
    """The most recent request first (a stack)."""

    def keys(self, s):
        return (-s.waited,)
''', "supervisor/allocation.py", ["from takeover.supervisor import newest_first  # noqa: E402,F401"]),
    "hazard": ("envs/hazards/debris.py", '''
"""A scratch hazard: a fallen load lying in the ego's lane."""
from numba import njit

from takeover.envs import layout as L
from takeover.envs.hazards.base import R_LANE_W, Hazard, keep_lane_clear, place_vehicle


@njit(cache=True)
def place(veh, wld, rp, st, slot, ego_lane, v_ego, onset, s, keep):
    x = v_ego * onset
    place_vehicle(veh, slot, L.STALLED, x, ego_lane, 0.0, rp[R_LANE_W], 1.5, 1.0 + s, L.STATIC)
    wld[L.HZ_X], wld[L.HZ_XEND] = x - 0.75, x + 0.75
    return keep_lane_clear(keep, ego_lane, x + 15.0)


class Debris(Hazard):
    name = "debris"
    env_name = "Debris"
    code = 6
    trigger = L.TRIGGER_RANGE
    summary = "a 1.5 m fallen load, 1 + s m wide, in the ego's lane where it is at the onset"
    place = staticmethod(place)
''', "envs/hazards/__init__.py", ['    "debris",'], '    "lane_closure",'),
}
"""The registry line of a kind whose plugins register themselves (``@REGISTRY.register``)
is the import that loads the new file; a hazard's is its module's name in ``MODULES``."""


def _scratch_copy(dst: Path) -> None:
    from test_imports import ROOT

    skip = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", ".hypothesis")
    for top in ("takeover", "envs", "agents", "supervisor", "experiments", "tests"):
        shutil.copytree(ROOT / top, dst / top, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")


def _add_lines(text: str, lines: list[str], after: str | None) -> str:
    """A self-registering plugin's import goes at the end of its registry module (the
    registry exists by then); a listed one's entry goes after the line ``after``."""
    if after is None:
        return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    assert after in text, after
    return text.replace(after, after + "\n" + "\n".join(lines), 1)


KERNEL_CASES = [f"tests/test_kernel_regression.py::test_trajectories_equal_the_reference_kernel_"
                f"bit_for_bit[{c}]" for c in ("mixed-continuous", "cut_in-discrete",
                                              "single-continuous")]


def _pytest(root: Path, env: dict[str, str], *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0",
                          "-q", "-rA", *args], cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return res.stdout


@pytest.mark.slow
def test_a_plugin_of_every_kind_is_one_file_and_one_registry_line(tmp_path):
    """In a scratch copy of the package whose numba cache is warm (as on a user's machine):
    write one file per kind and add its registry line, touching nothing else. Every new
    plugin then passes its kind's conformance test (the stale compiled reset is dropped,
    so the new hazard is placed), and the kernel's digests of old seeds, the mixed world's
    included, stay bit-exact."""
    root = tmp_path / "pkg"
    _scratch_copy(root)
    env = {**os.environ, "PYTHONPATH": str(root), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    assert "3 passed" in _pytest(root, env, *KERNEL_CASES)  # compiles and caches the kernel
    for kind, (new, source, registry, lines, *after) in SCRATCH_PLUGINS.items():
        assert not (root / new).exists(), kind
        (root / new).write_text(source.lstrip("\n"))
        reg = root / registry
        reg.write_text(_add_lines(reg.read_text(), lines, after[0] if after else None))
    names = ["speed_risk", "above_level", "bystander", "newest", "debris"]
    out = _pytest(root, env, "tests/test_plugins.py", "-k", " or ".join(names))
    passed = [ln for ln in out.splitlines() if ln.startswith("PASSED")]
    for n in names:
        assert any(n in ln for ln in passed), f"no conformance test ran for {n!r}:\n{out}"
    assert "3 passed" in _pytest(root, env, *KERNEL_CASES)
