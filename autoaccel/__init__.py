"""autoaccel: an acceleration advisor for PyTorch.

The public API is what this module exports; everything else is internal and may change.
"""

import os
from typing import TYPE_CHECKING

# ONNX Runtime (1.29 on) collects telemetry: importing it writes a session file `.ses` into the temp dir and a
# device id and usage database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/. Off unless the user opts
# back in (AUTOACCEL_ORT_TELEMETRY=1); set before anything imports onnxruntime, inherited by trial workers.
if os.environ.get("AUTOACCEL_ORT_TELEMETRY") != "1":
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from autoaccel.errors import AutoaccelError, TaskWarning, TrialFailure
from autoaccel.markers import hookimpl

__version__ = "0.1.0"

if TYPE_CHECKING:
    from autoaccel.api import Result
    from autoaccel.plugin._pipeline import Pipeline, Section
    from autoaccel.plugin._strategy import Capability, Phase, Strategy
    from autoaccel.task import Metric, Target, Task

# The public classes, imported on first use: `import autoaccel` (and `autoaccel --help`) does not pay for torch,
# while `from autoaccel import Task` works as always (PEP 562).
_LAZY = {"Metric": "autoaccel.task._metrics", "Pipeline": "autoaccel.plugin._pipeline", "Section": "autoaccel.plugin._pipeline",
         "Capability": "autoaccel.plugin._strategy", "Phase": "autoaccel.plugin._strategy", "Strategy": "autoaccel.plugin._strategy",
         "Target": "autoaccel.task._target", "Task": "autoaccel.task._task", "Result": "autoaccel.api"}


def optimize(task: "Task | str", **options: object) -> "Result":
    """Search acceleration techniques for ``task`` (a Task or the path of a model.py); see :func:`autoaccel.api.optimize`."""
    from autoaccel.api import optimize as _optimize

    return _optimize(task, **options)  # type: ignore[arg-type]


def apply(model_or_task: object, recipe: object, **options: object) -> object:
    """Apply a recipe (recipe.yaml path or dict) to a trained model or a Task; see :func:`autoaccel.outputs._recipe.apply`."""
    from autoaccel.outputs import apply as _apply

    return _apply(model_or_task, recipe, **options)  # type: ignore[arg-type]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later lookups find it directly
        return value
    raise AttributeError(f"module 'autoaccel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AutoaccelError",
    "Capability",
    "Metric",
    "Phase",
    "Pipeline",
    "Result",
    "Section",
    "Strategy",
    "Target",
    "Task",
    "TaskWarning",
    "TrialFailure",
    "apply",
    "hookimpl",
    "optimize",
]
