"""Imports point down the layers: the library never reaches up into a stage (a stage is a
command line around it), and the solver stands on its own (the physics knows nothing of
datasets, coarse-graining, closures or models). Read from the source with ast, so that imports
inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "diffclosure"
LIBRARY = ("solver", "coarse", "data", "metrics", "model", "sampling", "rollout", "plots")
ABOVE_SOLVER = ("data", "coarse", "rollout", "model", "sampling")


def imported(path) -> set[str]:
    """Every diffclosure module a package file imports (see :func:`imports_of`)."""
    package = ("diffclosure", *path.relative_to(PACKAGE).parent.parts)
    return imports_of(path.read_text(), package)


def imports_of(source: str, package: tuple[str, ...]) -> set[str]:
    """The diffclosure modules `source` (a module of `package`) imports, with `from a import b`
    also read as a.b (b may be a module) and relative imports resolved against the package."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in out if m == "diffclosure" or m.startswith("diffclosure.")}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def files(layer: str):
    found = sorted((PACKAGE / layer).rglob("*.py"))
    assert found, f"no modules under {layer}/"
    return found


@pytest.mark.parametrize("layer", LIBRARY)
def test_library_does_not_import_stages(layer):
    bad = [f"{p.relative_to(PACKAGE)} imports {m}" for p in files(layer)
           for m in sorted(imported(p)) if layer_of(m) == "stages"]
    assert not bad, bad


def test_solver_imports_nothing_above_it():
    bad = [f"{p.relative_to(PACKAGE)} imports {m}" for p in files("solver")
           for m in sorted(imported(p)) if layer_of(m) in ABOVE_SOLVER]
    assert not bad, bad


def test_the_check_sees_a_violation():
    """The reader is not blind: both spellings of an upward import, inside a function, count."""
    source = "def f():\n    from diffclosure import stages\n    from ..rollout import registry\n"
    got = imports_of(source, ("diffclosure", "solver"))
    assert "diffclosure.stages" in got and "diffclosure.rollout.registry" in got
    assert layer_of("diffclosure.stages") == "stages"
