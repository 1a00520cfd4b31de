"""Every built-in strategy is a room that can be taken out: with its module and its entry point gone, the other
strategies still load and order themselves, and `autoaccel optimize` still runs (on the tiny digits task: what is
checked is the loading and planning, not the training)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILTINS = sorted(p.stem for p in (ROOT / "plugins").iterdir()
                  if (p.suffix == ".py" or (p / "__init__.py").exists()) and "autoaccel_register_strategies" in
                  (p.read_text() if p.suffix == ".py" else (p / "__init__.py").read_text()))

# Runs in a fresh interpreter: the module made unimportable, its entry point filtered out of the metadata, then
# the real command line with the strategies that remain.
SCRIPT = textwrap.dedent("""
    import sys
    import importlib.metadata as metadata
    removed, out, model = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.modules["autoaccel.plugins." + removed] = None  # import autoaccel.plugins.<removed> now fails
    import autoaccel.registry as registry
    everything = metadata.entry_points
    registry.entry_points = lambda **kw: [ep for ep in everything(**kw) if ep.value != "autoaccel.plugins." + removed]
    names = sorted(registry.default_registry().strategies)
    assert removed not in names and names, names
    from autoaccel.cli import main
    # One trial, the user's recipe: every remaining strategy is still checked, spaced and planned, and the run
    # goes through training, the finish and the export. (Sampled trials would only add minutes of fp16 on a CPU.)
    code = main(["optimize", model, "--trials", "1", "--out", out, "--no-isolation",
                 "--remeasure-rounds", "0", "--no-ablation", "--quiet"])
    print("strategies:", ",".join(names))
    sys.exit(code)
""")


def test_every_builtin_is_found() -> None:
    assert len(BUILTINS) >= 13 and "pruning" in BUILTINS and "quantization" in BUILTINS


def test_each_builtin_can_be_removed(tmp_path: Path) -> None:
    from tiny_digits import task_source, write_model

    model = write_model(tmp_path, task_source())

    def run(name: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        return name, subprocess.run([sys.executable, "-c", SCRIPT, name, str(tmp_path / name), str(model)], cwd=ROOT,
                                    capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, BUILTINS))
    broken = [f"without {name}: exit {p.returncode}\n{p.stderr[-1500:]}" for name, p in results if p.returncode != 0]
    assert not broken, "\n\n".join(broken)


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "strategies").glob("test_*.py")), ids=lambda p: p.name)
def test_a_strategys_tests_import_no_other_builtin(path: Path) -> None:
    """So removing one built-in leaves the other strategies' tests importable and passing."""
    own = path.stem.removeprefix("test_")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    others = {m.split(".")[2] for m in modules if m.startswith("autoaccel.plugins.") and m.split(".")[2] != own}
    helpers = {"onnxruntime_session", "ensemble_models"}  # helper modules, not strategies
    assert not (others - helpers), f"{path.name} imports other built-in strategies: {sorted(others - helpers)}"
