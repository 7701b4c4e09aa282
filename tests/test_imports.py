"""The package's import graph, read from the source with ``ast`` (nothing is imported):
the shared base imports no layer, no layer imports a later one, and no module imports
itself round a cycle. Plus: importing the record schema stays light.

Layers, in the order data flows: base (``takeover/``) < envs < agents < supervisor <
experiments < the CLI (``takeover.cli``, ``takeover.commands``, ``takeover.__main__``), which
may import everything. Every import counts, lazy ones inside functions too (a lazy import is
still a dependency); only imports under ``if TYPE_CHECKING:`` are ignored for cycles (they
never run) but still obey the layer order.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"envs": 1, "agents": 2, "supervisor": 3, "experiments": 4}
"""Top-level source folder -> rank; the base (``takeover/``) is 0 and the CLI 5."""
CLI = 5

PENDING = {
}
"""Known violations in files other branches own, each with its fix's owner. Strict: the
stale-entry test fails once a fix lands, so the entry is deleted at that merge."""


def _pending(m: str, dep: str) -> bool:
    return (m, dep) in PENDING or (dep, m) in PENDING


def source_modules() -> dict[str, Path]:
    """Module name -> file, mapping the source folders as the wheel installs them."""
    mods: dict[str, Path] = {}
    for folder, prefix in [("takeover", "takeover"), *((f, f"takeover.{f}") for f in LAYERS)]:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([prefix, *parts])] = path
    return mods


def rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS[parts[1]]
    if len(parts) > 1 and parts[1] in ("cli", "commands", "__main__"):
        return CLI
    return 0


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """``(imported takeover module, line, runs)`` for every import in ``path``; ``runs`` is
    False under ``if TYPE_CHECKING:``. ``from pkg import name`` resolves to ``pkg.name`` when
    that is a module, else to ``pkg``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, runs: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for n in child.body:
                    visit_one(n, False)
                for n in child.orelse:
                    visit_one(n, runs)
                continue
            visit_one(child, runs)

    def visit_one(node: ast.AST, runs: bool) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "takeover":
                    out.append((_known(a.name), node.lineno, runs))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, *([base] if base else [])])
            if base.split(".")[0] == "takeover":
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    out.append((sub if sub in mods else _known(base), node.lineno, runs))
        visit(node, runs)

    def _known(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    visit(tree, True)
    return out


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    mods = source_modules()
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def test_the_graph_sees_the_package():
    g = graph()
    # a broken walker would pass every rule below vacuously
    assert {"takeover.records", "takeover.envs", "takeover.agents.checkpoint",
            "takeover.supervisor.gates", "takeover.experiments.runner", "takeover.cli"} <= set(g)
    assert sum(len(v) for v in g.values()) > 100


def test_no_module_imports_a_later_layer():
    bad = [f"{m} (line {line}) imports {dep}"
           for m, deps in graph().items() for dep, line, _ in deps
           if rank(dep) > rank(m) and not _pending(m, dep)]
    assert not bad, "imports against the data flow (base < envs < agents < supervisor < " \
                    "experiments < cli):\n" + "\n".join(bad)


def test_no_import_cycles():
    edges = {m: sorted({d for d, _, runs in deps if runs and d != m})
             for m, deps in graph().items()}
    # a package's __init__ re-exports its submodules; a submodule importing its own package
    # back is the cycle to catch, so keep those edges
    cycles, state, stack = [], {}, []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in edges.get(m, ()):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                if not any(_pending(a, b) for a, b in zip(cycle, cycle[1:])):
                    cycles.append(cycle)
            elif d not in state:
                dfs(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_pending_exceptions_are_still_needed():
    g = graph()
    stale = [f"{a} -> {b} ({who})" for (a, b), who in PENDING.items()
             if not any(d == b for d, _, _ in g.get(a, ()))]
    assert not stale, "fixed: delete from PENDING:\n" + "\n".join(stale)


@pytest.mark.parametrize("module", ["takeover.records", "takeover.logio", "takeover.config",
                                    "takeover.registry", "takeover.types", "takeover.atomic"])
def test_base_module_loads_no_heavy_dependency(module):
    code = (f"import sys, {module}; "
            "heavy = [m for m in ('gymnasium', 'numba', 'torch', 'stable_baselines3', "
            "'pygame', 'takeover.envs', 'takeover.agents', 'takeover.supervisor', "
            "'takeover.experiments') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", f"import {module} loads {out.stdout.strip()}"
