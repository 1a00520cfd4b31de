"""Every built-in strategy is a room that can be taken out: deleting its folder and its entry point is all it
takes. A copy of the project without four built-ins installs with pip and runs a study; and each built-in left
out alone leaves the others loading and ordering themselves."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "autoaccel" / "plugins"
BUILTINS = sorted(p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists()
                  and "autoaccel_register_strategies" in (p / "__init__.py").read_text(encoding="utf-8"))
# Four rooms with the most reach into the rest (post-training transforms, a teacher, members of a study).
REMOVED = ("quantization", "pruning", "distillation", "ensembling")


def test_every_builtin_is_found() -> None:
    assert len(BUILTINS) >= 13 and set(REMOVED) <= set(BUILTINS)


def copy_without(dest: Path, removed: tuple[str, ...]) -> Path:
    """The project's source as a fresh checkout has it, minus ``removed``: their folders and entry points."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "pyproject.toml",
                            "README.md", "autoaccel"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        parts = Path(rel).parts
        if parts[:2] == ("autoaccel", "plugins") and len(parts) > 3 and parts[2] in removed:
            continue
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    for name in removed:
        text, n = re.subn(rf'^{name} = "autoaccel\.plugins\.{name}"\n', "", text, flags=re.M)
        assert n == 1, f"pyproject.toml: no entry point for {name}"
    pyproject.write_text(text, encoding="utf-8")
    return dest


@pytest.mark.slow
def test_a_copy_without_four_builtins_installs_and_runs_a_study(tmp_path: Path) -> None:
    source = copy_without(tmp_path / "src", REMOVED)
    site = tmp_path / "site"
    # A real install of the copy (a wheel built from its tree, not an editable link), beside the dependencies this
    # environment already has; no network: the build uses this environment's setuptools.
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(source)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert not any((site / "autoaccel" / "plugins" / name).exists() for name in REMOVED)
    assert (site / "autoaccel" / "plugins" / "precision" / "space.yaml").is_file()

    from tiny_digits import task_source, write_model

    model = write_model(tmp_path, task_source())
    # The installed copy comes first on the path (its package and its entry points shadow this checkout's), and the
    # worker processes inherit it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "tests")])}
    script = textwrap.dedent("""
        import sys
        import autoaccel
        from autoaccel.plugin._registry import default_registry
        names = sorted(default_registry().strategies)
        print("from", autoaccel.__file__)
        print("strategies:", ",".join(names))
        from autoaccel.cli import main
        sys.exit(main(["optimize", sys.argv[1], "--trials", "4", "--out", sys.argv[2], "--remeasure-rounds", "0",
                       "--no-ablation", "--quiet"]))
    """)
    run = subprocess.run([sys.executable, "-c", script, str(model), str(tmp_path / "out")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-2500:]
    assert f"from {site}" in run.stdout
    listed = set(re.search(r"strategies: (.*)", run.stdout).group(1).split(","))  # type: ignore[union-attr]
    assert listed and not listed & set(REMOVED) and {"precision", "batch_size", "runtime"} <= listed
    assert (tmp_path / "out" / "pareto.json").is_file() and (tmp_path / "out" / "report.html").is_file()


def module_level_imports(package: Path) -> set[str]:
    """autoaccel.plugins.<name> modules a plugin package imports when it is imported (not inside functions)."""
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autoaccel.plugins."):
                found.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("autoaccel.plugins."))
    return found - {package.name}


@pytest.mark.parametrize("name", BUILTINS)
def test_each_builtin_left_out_alone_leaves_the_others_loading_in_order(name: str) -> None:
    """With one built-in gone, no other imports it, and the rest register, validate their spaces and order
    themselves (that a study runs without some is the copy test's job)."""
    import importlib

    import pluggy

    from autoaccel.plugin._registry import collect_strategies, plugin_manager
    from autoaccel.plugin._strategy import ordered

    others = [n for n in BUILTINS if n != name]
    assert not [n for n in others if name in module_level_imports(PLUGINS / n)], f"a built-in imports {name}"
    pm: pluggy.PluginManager = plugin_manager(load_entrypoints=False)
    for other in others:
        pm.register(importlib.import_module(f"autoaccel.plugins.{other}"), name=other)
    names = [s.name for s in ordered(list(collect_strategies(pm).strategies.values()))]
    assert sorted(names) == others


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "plugins").rglob("test_*.py")), ids=lambda p: p.name)
def test_a_strategys_tests_import_no_other_builtin(path: Path) -> None:
    """So removing one built-in leaves the other strategies' tests importable and passing."""
    own = path.parent.name
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    # A strategy's own module; a helper module of another (runtime's ORT session, which quantization serves with)
    # is a library, not a strategy.
    others = {m.split(".")[2] for m in modules if m.startswith("autoaccel.plugins.") and len(m.split(".")) == 3}
    assert others <= {own}, f"{path.name} imports other built-in strategies: {sorted(others - {own})}"
