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


CONFORMANCE = {"gate": _gate, "estimator": _estimator, "human model": _human}
"""Behaviour checks by registry kind; a kind not listed gets the common checks above."""
