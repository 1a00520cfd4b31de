"""Built-in strategies come in through the `autoaccel` entry-point group, like any third-party plugin, and
`autoaccel plugins` lists them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

import autoaccel
import autoaccel.plugins
from autoaccel.cli import main

BUILTINS = ("precision", "batch_size", "dataloader", "scheduler")


def test_builtins_are_declared_as_entry_points_of_group_autoaccel() -> None:
    eps = {ep.name: ep for ep in entry_points(group="autoaccel")}
    for name in BUILTINS:
        assert name in eps, f"no entry point for {name}"
        assert eps[name].value == f"autoaccel.plugins.{name}"
        assert eps[name].dist is not None and eps[name].dist.name == "autoaccel"
        module = eps[name].load()
        assert module.__name__ == f"autoaccel.plugins.{name}"
        assert hasattr(module, "autoaccel_register_strategies")


def source_files() -> list[Path]:
    files = list(Path(autoaccel.__file__).parent.rglob("*.py"))  # the core and the built-ins under it
    assert len(files) > 10
    return files


def test_nothing_imports_the_top_level_name_plugins() -> None:
    offenders = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path}:{node.lineno}" for n in names if n == "plugins" or n.startswith("plugins.")]
    assert offenders == []


def test_the_core_does_not_import_builtins_by_name() -> None:
    # The core finds them through entry points only (the way flake8 ships its own checkers).
    core = Path(autoaccel.__file__).parent
    for path in (p for p in core.rglob("*.py") if "plugins" not in p.relative_to(core).parts):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+autoaccel\.plugins\b", text, re.M), path


def test_loading_the_registry_outside_the_source_tree_never_imports_plugins(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from autoaccel.plugin._registry import default_registry\n"
        "reg = default_registry()\n"
        "assert 'plugins' not in sys.modules, 'top-level plugins was imported'\n"
        "print(sorted((n, type(s).__module__) for n, s in reg.strategies.items()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in BUILTINS:
        assert f"('{name}', 'autoaccel.plugins.{name}')" in out.stdout


def test_each_builtin_ships_its_space_beside_its_code() -> None:
    from importlib import resources

    for name in BUILTINS:
        assert resources.files(f"autoaccel.plugins.{name}").joinpath("space.yaml").is_file()


def test_plugins_command_lists_the_builtins_from_autoaccel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--target", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    # Table rows as cells: strategy, phase, distribution, supported, notes.
    rows = [[c.strip() for c in re.split(r"[│┃]", line)[1:-1]] for line in out.splitlines() if line.startswith("│")]
    table = {cells[0]: cells for cells in rows if cells and cells[0]}
    for name in BUILTINS:
        assert name in table, f"{name} missing from:\n{out}"
        assert table[name][2] == "autoaccel" and table[name][3] == "yes"
    assert table["precision"][1] == "train" and table["batch_size"][1] == "data"
    # Listed in phase order: data (batch_size, dataloader) before train (precision, scheduler).
    names = [cells[0] for cells in rows if cells and cells[0]]
    assert names.index("batch_size") < names.index("precision") and names.index("dataloader") < names.index("scheduler")


def test_plugins_command_with_a_bad_target_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--target", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("autoaccel: error: --target: unknown target 'tpu'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer for a target this machine lacks")
def test_plugins_lists_what_would_run_on_a_target_this_machine_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--target", "cuda"]) == 0
    captured = capsys.readouterr()
    assert "not present here" in captured.out and "cuda_graphs" in captured.out
    rows = {line.split("│")[1].strip(): line for line in captured.out.splitlines() if line.count("│") > 4}
    assert "yes" in rows["cuda_graphs"] and "yes" in rows["cudnn_benchmark"]  # CUDA-only techniques run there
    assert captured.err.count("\n") == 1 and "no CUDA device is available here" in captured.err
