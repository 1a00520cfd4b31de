"""The command line answers `--help` without importing torch, and the shared vocabulary agrees with the code that
acts on it."""

from __future__ import annotations

import subprocess
import sys


def test_help_imports_no_torch_and_no_trial_runner() -> None:
    code = ("import sys; from autoaccel.cli import build_parser; build_parser().format_help(); "
            "heavy = [m for m in ('torch', 'optuna', 'autoaccel.trial._run', 'onnxruntime') if m in sys.modules]; "
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_public_classes_still_import_from_the_package() -> None:
    import autoaccel
    from autoaccel import Pipeline, Strategy, Task  # noqa: F401  (PEP 562: imported on first use)

    assert autoaccel.Task is Task and "Task" in dir(autoaccel)


def test_mode_names_are_the_modes_strategies_act_in() -> None:
    from autoaccel.plugin._strategy import MODES
    from autoaccel.vocab import MODE_NAMES

    assert tuple(MODES) == MODE_NAMES
