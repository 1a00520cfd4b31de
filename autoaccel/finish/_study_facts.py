"""What a finished search records beside its answers: the environment, Optuna's parameter importances where
there is nothing to ablate, and the primary answer's model exported."""

from __future__ import annotations

import platform
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from rich.markup import escape

from autoaccel.errors import TrialFailure, describe
from autoaccel.finish._summary import Summary
from autoaccel.trial import share

if TYPE_CHECKING:
    from autoaccel.options import Options
    from autoaccel.outputs import Progress
    from autoaccel.plugin._pipeline import Pipeline
    from autoaccel.task import Task
    from autoaccel.trial import Fidelity, InProcessRunner, IsolatedRunner

    Runner = IsolatedRunner | InProcessRunner


class Searching(Protocol):
    """What the end of a search needs of the search that ran it (``autoaccel.search._search.Search`` is one): written as
    a protocol so the finish depends on these few names, not on the search module that calls it."""

    task: "Task"
    options: "Options"
    objectives: tuple[str, ...]
    progress: "Progress"
    fidelity: "Fidelity"  # the shares of the schedule the search and the answer train

    @property
    def base(self) -> "Pipeline": ...

    def factors(self) -> tuple[str, ...]: ...

    def max_drop(self, study: optuna.Study, baseline_value: float | None = None) -> float: ...

    def plan_of(self, study: optuna.Study, trial: int) -> "Pipeline": ...

    def run_fixed(self, study: optuna.Study, runner: "Runner", config: dict[str, Any],
                  role: str, fraction: float | None = None) -> optuna.trial.FrozenTrial | None: ...


def environment() -> dict[str, str]:
    """Versions of what shapes the measurements, for the report."""
    env = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("autoaccel", "torch", "optuna", "onnx", "onnxruntime", "numpy", "scikit-learn", "torchao", "torchvision"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return env


def importances(study: optuna.Study, objectives: tuple[str, ...]) -> dict[str, Any]:
    """fANOVA importances of each parameter for each objective, when the study has enough variety."""
    result: dict[str, Any] = {"method": "importance", "importances": {}}
    for i, objective in enumerate(objectives):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=lambda t, i=i: t.values[i])
        except Exception as exc:  # noqa: BLE001 - too few trials or no variation: say so rather than fail
            result["note"] = f"parameter importances not available: {describe(exc)}"
            continue
        result["importances"][objective] = {k: float(v) for k, v in imp.items()}
    return result


def export_recommended(search: Searching, study: optuna.Study, summary: Summary, runner: "Runner", out: Path) -> dict[str, Any]:
    """Write the primary answer's model (state dict always, ONNX where it exports) into ``out``."""
    plan = search.plan_of(study, summary.recommended.trial)
    try:
        report = runner.export(plan, out, search.task.seed)
    except TrialFailure as failure:
        search.progress.info(f"[yellow]could not export the recommended model ({failure.kind}): {escape(failure.reason)}[/]")
        return {"files": {}, "notes": [failure.reason]}
    if plan.fraction < 1.0:
        # The search's own checkpoint, trained on the compressed schedule: right for checking the export and its
        # latency, not a model to deploy; `autoaccel apply` trains the recipe whole.
        report = {**report, "notes": [*report.get("notes", []), f"the exported model was trained on {share(plan.fraction)} "
                                      "of your schedule (the search's fidelity); `autoaccel apply recipe.yaml MODEL.py "
                                      "--goal ...` trains it whole"], "fraction": plan.fraction}
    for note in report.get("notes", []):
        search.progress.info(f"export: {escape(note)}")
    return report


__all__ = ["environment", "export_recommended", "importances"]
