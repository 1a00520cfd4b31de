"""The shape of the code: no import cycles inside autoaccel/, and a core that never names a built-in technique
(each technique is one room under plugins/, which the core reaches only through the Strategy hooks)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "autoaccel"
# What the core must not spell in code (comments and docstrings may explain): the built-in techniques, their
# vocabulary, and the plugin package. task.py alone may: Task.student is a field the user writes.
FORBIDDEN = ("quantiz", "prun", "distill", "ensembl", "student", "teacher", "cuda_graph", "cudagraph", "ortmodule",
             "onnxruntime_session", "autoaccel.plugins")
ALLOWED = {"task.py"}


def imports(path: Path) -> set[str]:
    """autoaccel modules ``path`` imports anywhere: module level, inside functions, and under TYPE_CHECKING (a
    cycle of type annotations is still two modules that cannot be understood one without the other)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("autoaccel"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autoaccel") and node.level == 0:
            found.add(node.module)
            # `from autoaccel import lifecycle` imports the submodule.
            found.update(f"{node.module}.{a.name}" for a in node.names if (CORE / f"{a.name}.py").exists() and node.module == "autoaccel")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if (CORE / f"{m.split('.', 1)[1] if '.' in m else '__init__'}.py").exists() or m == "autoaccel"}


def module_name(path: Path) -> str:
    return "autoaccel" if path.stem == "__init__" else f"autoaccel.{path.stem}"


def test_no_import_cycles_inside_autoaccel() -> None:
    # The package's __init__ is imported by every submodule (Python does it); only edges between modules count.
    graph = {module_name(p): {m for m in imports(p) if m != "autoaccel"} for p in sorted(CORE.glob("*.py")) if p.stem != "__init__"}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle inside autoaccel/: {' -> '.join(exc.args[1])}")


def names_in_code(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every identifier, attribute and string literal of ``path``, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add(id(first.value))
    out = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            text = node.name
        elif isinstance(node, ast.arg):
            text = node.arg
        elif isinstance(node, ast.keyword) and node.arg:
            text = node.arg
        elif isinstance(node, ast.alias):
            text = node.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            text = node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        if text is not None:
            out.append((getattr(node, "lineno", 0), text))
    return out


@pytest.mark.parametrize("path", sorted(p for p in CORE.glob("*.py") if p.name not in ALLOWED), ids=lambda p: p.name)
def test_the_core_never_names_a_builtin_technique(path: Path) -> None:
    hits = [f"{path.name}:{line}: {text[:70]!r}" for line, text in names_in_code(path)
            if any(word in text.lower().replace(" ", "_") for word in FORBIDDEN)]
    assert not hits, "the core names a built-in technique (move it into its plugin):\n" + "\n".join(hits)


def test_every_plugin_package_ships_in_the_wheel() -> None:
    """A package under plugins/ that pyproject does not list installs from a checkout (editable) and is missing
    from a wheel: every command would then fail to import it."""
    import tomllib

    listed = set(tomllib.loads((CORE.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {"autoaccel.plugins." + ".".join(p.parent.relative_to(CORE.parent / "plugins").parts)
             for p in (CORE.parent / "plugins").rglob("__init__.py") if p.parent != CORE.parent / "plugins"}
    assert found <= listed, f"pyproject.toml [tool.setuptools] packages lacks {sorted(found - listed)}"
