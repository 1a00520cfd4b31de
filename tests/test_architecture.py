"""The shape of the code: autoaccel/ is a house of subpackages on floors that follow the flow of a run; nothing
imports a floor above its own, there is no import cycle, a plugin (built-in or third-party) imports only the SDK,
and the core never names a built-in technique (each technique is one room under autoaccel/plugins/, which the
core reaches only through the Strategy hooks)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "autoaccel"
BUILTINS = CORE / "plugins"
# The floors, lowest first: a module may import its own floor's units and those below. The ground holds the shared
# words and errors; task/ is the user's side; then the clock, the SDK, one trial, the finish, the outputs, and the
# search that drives them; the entry points on top.
FLOORS = (("errors", "vocab", "markers", "pids"), ("options", "scratch", "fork_server"), ("task",), ("measure",), ("plugin",),
          ("trial",), ("finish",), ("outputs",), ("search",), ("api", "confirm"), ("cli", "__init__"))
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}
# The contract suite runs real studies of a strategy under test: it drives the whole product from inside the SDK,
# and nothing in the core imports it.
DRIVERS = {"autoaccel.plugin.testing"}
# What the core must not spell in code (comments and docstrings may explain): the built-in techniques, their
# vocabulary, and the plugin package. task/_task.py alone may: Task.student is a field the user writes.
FORBIDDEN = ("quantiz", "prun", "distill", "ensembl", "student", "teacher", "cuda_graph", "cudagraph", "ortmodule",
             "onnxruntime_session", "autoaccel.plugins")
ALLOWED = {"task/_task.py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The top-level room of a module: ``autoaccel.search.team._claims`` is in ``search``."""
    return module.split(".")[1] if "." in module else "__init__"


def core_files() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if BUILTINS not in p.parents)


def imports(path: Path) -> set[str]:
    """autoaccel modules ``path`` imports anywhere: module level, inside functions, and under TYPE_CHECKING (a
    cycle of type annotations is still two modules that cannot be understood one without the other)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("autoaccel"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("autoaccel"):
            found.add(node.module)
            # `from autoaccel.trial import _record as record` imports the submodule.
            found.update(f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
    return found


def test_the_flows_rooms_exist_and_the_top_level_stays_small() -> None:
    rooms = {p.name for p in CORE.iterdir() if (p / "__init__.py").exists()}
    assert {"plugin", "task", "search", "trial", "measure", "finish", "outputs", "plugins"} <= rooms
    assert (CORE / "search" / "team" / "__init__.py").exists()
    top = sorted(p.name for p in CORE.glob("*.py"))
    assert len(top) <= 12, top
    assert {unit(module_name(p)) for p in core_files()} <= set(FLOOR) | {"plugins"}, "a module on no floor"


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(CORE)))
def test_nothing_imports_a_floor_above_its_own(path: Path) -> None:
    me = module_name(path)
    if me in DRIVERS:
        return
    up = sorted(m for m in imports(path) if unit(m) != "plugins" and FLOOR[unit(m)] > FLOOR[unit(me)])
    assert not up, f"{me} (floor {FLOOR[unit(me)]}) imports from a floor above: {up}"


def test_no_import_cycles_inside_autoaccel() -> None:
    # A package's __init__ is imported by every module below it (Python does it); only edges between modules count.
    graph = {module_name(p): {m for m in imports(p) if m != "autoaccel"} for p in core_files() if p.stem != "__init__"}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle inside autoaccel/: {' -> '.join(exc.args[1])}")
    rooms: dict[str, set[str]] = {}
    for me, targets in graph.items():
        if me not in DRIVERS:
            rooms.setdefault(unit(me), set()).update(unit(t) for t in targets if unit(t) not in (unit(me), "plugins"))
    try:
        graphlib.TopologicalSorter(rooms).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle between subpackages: {' -> '.join(exc.args[1])}")


def plugin_files() -> list[Path]:
    third_party = ROOT / "examples" / "plugins"
    return sorted(BUILTINS.rglob("*.py")) + sorted(p for p in third_party.rglob("*.py")
                                                   if "tests" not in p.parts and "build" not in p.parts)


@pytest.mark.parametrize("path", plugin_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_plugin_imports_only_the_sdk(path: Path) -> None:
    """A plugin is written against autoaccel.plugin alone (and its own package): the core's private modules may
    change in any release."""
    own = path.relative_to(BUILTINS).parts[0] if BUILTINS in path.parents else None
    wrong = []
    for m in imports(path):
        if m.startswith("autoaccel.plugins."):
            if m.split(".")[2] != own and any(part.startswith("_") for part in m.split(".")):
                wrong.append(m)
        elif m != "autoaccel.plugin":
            wrong.append(m)
    assert not wrong, f"{path.name} imports beyond the SDK: {sorted(wrong)}"


def test_the_architecture_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    """The checks above read real code: each one must see a violation when there is one."""
    bad = tmp_path / "bad.py"
    bad.write_text("from autoaccel.search._study import open_storage\nfrom autoaccel.trial import _record as record\n")
    assert imports(bad) == {"autoaccel.search._study", "autoaccel.trial", "autoaccel.trial._record"}
    assert FLOOR[unit("autoaccel.search._study")] > FLOOR[unit("autoaccel.task._task")]
    assert unit("autoaccel.search.team._claims") == "search" and unit("autoaccel") == "__init__"


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


@pytest.mark.parametrize("path", [p for p in core_files() if str(p.relative_to(CORE)) not in ALLOWED],
                         ids=lambda p: str(p.relative_to(CORE)))
def test_the_core_never_names_a_builtin_technique(path: Path) -> None:
    hits = [f"{path.relative_to(CORE)}:{line}: {text[:70]!r}" for line, text in names_in_code(path)
            if any(word in text.lower().replace(" ", "_") for word in FORBIDDEN)]
    assert not hits, "the core names a built-in technique (move it into its plugin):\n" + "\n".join(hits)


def test_packaging_follows_the_tree() -> None:
    """No package list to keep in step with the folders: setuptools finds them, and each space ships beside its code
    (tests/plugins/test_removable.py installs a copy with four built-ins deleted)."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "packages" in setuptools and "find" in setuptools["packages"], "expected [tool.setuptools.packages.find]"
    assert setuptools["package-data"] == {"*": ["space.yaml"]}


def test_no_type_ignore_in_plugins() -> None:
    """Strategy is generic over its section type: a plugin's hooks are typed as they are, with nothing silenced."""
    found = [f"{p.relative_to(ROOT)}:{i}" for p in plugin_files()
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "type: ignore" in line]
    assert not found, found
