"""What a finished search records beside its answers: the environment it measured in, and Optuna's parameter
importances where there is nothing to ablate."""

from __future__ import annotations

import platform
import sys
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import optuna

from autoaccel.errors import describe


def environment() -> dict[str, str]:
    """Versions of what shapes the measurements, for the report."""
    env = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("autoaccel", "torch", "optuna", "onnx", "onnxruntime", "numpy", "scikit-learn", "torchao", "torchvision"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return env


def _objective(index: int) -> Callable[[optuna.trial.FrozenTrial], float]:
    """The value of objective ``index`` of a trial, as an importance evaluator's target."""

    def value(trial: optuna.trial.FrozenTrial) -> float:
        assert trial.values is not None  # importances are computed over completed trials: they have values
        return trial.values[index]

    return value


def importances(study: optuna.Study, objectives: tuple[str, ...]) -> dict[str, Any]:
    """fANOVA importances of each parameter for each objective, when the study has enough variety."""
    result: dict[str, Any] = {"method": "importance", "importances": {}}
    for i, objective in enumerate(objectives):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=_objective(i))
        except Exception as exc:  # noqa: BLE001 - too few trials or no variation: say so rather than fail
            result["note"] = f"parameter importances not available: {describe(exc)}"
            continue
        result["importances"][objective] = {k: float(v) for k, v in imp.items()}
    return result


__all__ = ["environment", "importances"]
