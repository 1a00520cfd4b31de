"""The recommended model written for the user: exported in the worker that trained it (a state dict always,
ONNX where the graph exports), with a note when it was trained on a share of the schedule only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from autoaccel.errors import TrialFailure
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.trial import InProcessRunner, IsolatedRunner, share


def export_recommended(plan: Pipeline, runner: IsolatedRunner | InProcessRunner, seed: int, out: Path,
                       say: Callable[[str], None]) -> dict[str, Any]:
    """Write the primary answer's model, trained by ``plan`` (state dict always, ONNX where it exports), into
    ``out``, in the worker; what could not be exported is said and noted."""
    try:
        report = runner.export(plan, out, seed)
    except TrialFailure as failure:
        say(f"[yellow]could not export the recommended model ({failure.kind}): {escape(failure.reason)}[/]")
        return {"files": {}, "notes": [failure.reason]}
    if plan.fraction < 1.0:
        # A checkpoint of the search, trained on a compressed schedule (the search's rung, or the rung its serving
        # trials served from): right for checking the export and its latency, not a model to deploy; `autoaccel apply`
        # trains the recipe whole.
        report = {**report, "notes": [*report.get("notes", []), f"the exported model was trained on {share(plan.fraction)} "
                                      "of your schedule (a compressed run of the search); `autoaccel apply recipe.yaml "
                                      "MODEL.py --goal ...` trains it whole"], "fraction": plan.fraction}
    for note in report.get("notes", []):
        say(f"export: {escape(note)}")
    return report
