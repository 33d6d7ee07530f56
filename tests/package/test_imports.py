"""Imports follow the data flow: every module of the package sits in a layer, and imports only
its own layer and the layers below. The order is that of the work: the foundations (errors,
config, atomic files, provenance) under the physics (solver), coarse-graining, the datasets
and the metrics; the score model under the samplers that run it, the samplers under the
rollouts that use them as closures, plots above what they draw; the stages (command lines
around the library) and the CLI on top. So the solver knows nothing of datasets or models,
and the library never reaches up into a stage. Read from the source with ast, so that imports
inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "workflow" / "diffclosure"
ROOT = "diffclosure"  # the package's own __init__ (__version__)
# Bottom to top.
LAYERS = (
    ROOT, "errors", "config", "atomic", "provenance", "progress", "devices",
    "solver", "coarse", "data", "metrics",
    "model", "sampling", "rollout", "plots",
    "stages", "cli", "__main__",
)


def imported(path) -> set[str]:
    """Every diffclosure module a package file imports (see :func:`imports_of`)."""
    package = (ROOT, *path.relative_to(PACKAGE).parent.parts)
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
    return {m for m in out if m == ROOT or m.startswith(ROOT + ".")}


def top_level_names() -> set[str]:
    """The package's modules and subpackages (the names a layer can have)."""
    return ({p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
            | {p.parent.name for p in PACKAGE.glob("*/__init__.py")})


def layer_of(module: str) -> str:
    """The layer of a dotted module name; a name that is no module of its own (diffclosure.
    __version__) belongs to the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in top_level_names() else ROOT


def layer_of_file(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return ROOT if rel.stem == "__init__" else rel.stem


def upward(layer: str, modules) -> list[str]:
    """The modules among `modules` in a layer above `layer`."""
    own = LAYERS.index(layer)
    return sorted(m for m in modules if LAYERS.index(layer_of(m)) > own)


def violations() -> set[tuple[str, str]]:
    """(package file, layer it reaches up to) for every upward import in the package."""
    out = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for m in upward(layer_of_file(path), imported(path)):
            out.add((path.relative_to(PACKAGE).as_posix(), layer_of(m)))
    return out


def test_every_module_has_a_layer():
    assert top_level_names() == set(LAYERS) - {ROOT}


def test_no_module_imports_a_layer_above_its_own():
    bad = violations()
    assert not bad, sorted(bad)


def test_a_stage_imports_no_other_stage():
    """Stages run one after another in the pipeline; what two of them share lives in the
    library below them, so a stage can be read, changed and rerun alone."""
    bad = []
    for path in sorted((PACKAGE / "stages").glob("*.py")):
        for m in sorted(imported(path)):
            parts = m.split(".")
            if (len(parts) > 2 and parts[1] == "stages" and parts[2] != path.stem
                    and (PACKAGE / "stages" / f"{parts[2]}.py").exists()):
                bad.append(f"stages/{path.name} imports {m}")
    assert not bad, bad


def test_the_check_sees_a_violation():
    """The reader is not blind: both spellings of an upward import, inside a function, count,
    and the verdict names them while passing an import from below."""
    source = ("def f():\n    from diffclosure import stages\n    from ..rollout import registry\n"
              "    from diffclosure.atomic import atomic_path\n")
    got = imports_of(source, (ROOT, "solver"))
    assert "diffclosure.stages" in got and "diffclosure.rollout.registry" in got
    assert upward("solver", got) == ["diffclosure.rollout", "diffclosure.rollout.registry",
                                      "diffclosure.stages"]
    assert upward("stages", got) == []
    assert layer_of("diffclosure.__version__") == ROOT
