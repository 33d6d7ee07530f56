"""No function or method of the package is longer than 60 lines (issue 13): a long function
is split into one helper per step of its work. Read from the source with ast, so nested
functions and methods count on their own."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "workflow" / "diffclosure"
LIMIT = 60


def long_functions(source: str, limit: int = LIMIT) -> dict[str, int]:
    """Qualified name -> length in lines (decorators excluded, docstring included) of every
    function in `source` longer than `limit`."""
    found = {}

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > limit:
                        found[name] = length
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def package_offenders() -> dict[str, int]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for name, length in long_functions(path.read_text()).items():
            out[f"{module}:{name}"] = length
    return out


def test_no_function_is_longer_than_the_limit():
    offenders = package_offenders()
    assert not offenders, (
        f"functions over {LIMIT} lines (split them into a helper per step):\n"
        + "\n".join(f"  {name}: {length} lines" for name, length in sorted(offenders.items()))
    )


def test_the_walk_finds_methods_and_nested_functions():
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    source = (f"class A:\n  def m(self):\n{body}\n\n"
              f"def outer():\n    def inner():\n{body.replace('    ', '        ')}\n"
              f"def short():\n    return 1\n")
    assert long_functions(source) == {"A.m": LIMIT + 1, "outer": LIMIT + 2,
                                      "outer.inner": LIMIT + 1}


def test_the_package_is_walked():
    assert len(list(PACKAGE.rglob("*.py"))) > 20
