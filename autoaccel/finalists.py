"""After the trials: the finalists re-measured against the baseline, an ablation of the recommendation, the
recommended model exported. Each step records what it found in the study, so `autoaccel report` can rebuild
everything from storage alone."""

from __future__ import annotations

import platform
import sys
import warnings
from importlib import metadata
from typing import TYPE_CHECKING, Any

import optuna
from rich.markup import escape

from autoaccel.errors import TrialFailure, describe
from autoaccel.remeasure import composite, ratio_from_rounds
from autoaccel.results import Summary, summarize_study
from autoaccel.strategy import apply_all
from autoaccel.trial import REMEASURED, TRAINING_OBJECTIVES

if TYPE_CHECKING:
    from autoaccel.search import Search
    from autoaccel.worker import InProcessRunner, IsolatedRunner

    Runner = IsolatedRunner | InProcessRunner


def environment() -> dict[str, str]:
    """Versions of what shapes the measurements, for the report."""
    env = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("autoaccel", "torch", "optuna", "onnx", "onnxruntime", "numpy", "scikit-learn", "torchao", "torchvision"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return env


def timed_objectives(search: "Search") -> list[str]:
    return [o for o in search.objectives if o in REMEASURED and (o not in TRAINING_OBJECTIVES or search.plan.base.train)]


def _ratios(samples: dict[str, list[list[float]]], timed: list[str], ref: int, i: int) -> dict[str, list[float]]:
    """Per-round speedups of config ``i`` over config ``ref`` for each timed objective; both training objectives
    read the one training timing (seconds for the same samples)."""
    out = {}
    for o in timed:
        s = samples["train_time" if o in TRAINING_OBJECTIVES else o]
        out[o] = [b / c for b, c in zip(s[ref], s[i])]
    return out


def remeasure_front(search: "Search", study: optuna.Study, runner: "Runner") -> None:
    """Time the baseline and the front's candidates again, interleaved in one process; store paired ratios."""
    rounds = search.options.remeasure_rounds
    summary = summarize_study(study, search.objectives, search.options.max_accuracy_drop)
    finalists = [p for p in summary.pareto if p is not summary.baseline][: search.options.max_finalists]
    timed = timed_objectives(search)
    if rounds == 0 or not finalists or not timed:
        return
    search.progress.info(f"re-measuring the baseline and {len(finalists)} finalist(s) interleaved, {rounds} rounds ...")
    plans = [apply_all(search.plan.strategies, search.plan.base, p.params) for p in (summary.baseline, *finalists)]
    try:
        samples = runner.remeasure(plans, tuple(timed), rounds, search.task.seed)
    except TrialFailure as failure:
        search.progress.info(f"[yellow]re-measurement failed ({failure.kind}): {escape(failure.reason)}; "
                             "speedups rest on single measurements[/]")
        return
    entries = {}
    for i, point in enumerate(finalists, start=1):
        per_round = _ratios(samples, timed, 0, i)
        entries[str(point.trial)] = {
            "objectives": {o: ratio_from_rounds(r).to_json() for o, r in per_round.items()},
            "composite": ratio_from_rounds(composite(list(per_round.values()))).to_json(),
        }
    study.set_user_attr("remeasure", {"baseline": summary.baseline.trial, "rounds": rounds, "trials": entries})


def ablate(search: "Search", study: optuna.Study, runner: "Runner", summary: Summary) -> None:
    """Drop one technique of the recommendation at a time, run it, and time it against the recommendation.

    A row's speedup is how much faster the recommendation is *with* the technique than without it (> 1: the
    technique pulls its weight). Where there is nothing to ablate, Optuna's parameter importances stand in.
    """
    rec = summary.recommended
    defaults = search.plan.defaults
    changed = [s for s in search.plan.strategies
               if any(k.startswith(f"{s.name}.") and rec.params.get(k) != v for k, v in defaults.items())]
    timed = timed_objectives(search)
    if rec is summary.baseline or not changed or not timed or search.options.remeasure_rounds == 0:
        study.set_user_attr("ablation", importances(study, search.objectives))
        return
    search.progress.info(f"ablation: dropping each of {', '.join(s.name for s in changed)} from trial {rec.trial} ...")
    rec_plan = apply_all(search.plan.strategies, search.plan.base, rec.params)
    variants, rows = [], []
    for s in changed:
        params = {k: (defaults[k] if k.startswith(f"{s.name}.") else v) for k, v in rec.params.items()}
        plan = apply_all(search.plan.strategies, search.plan.base, params)
        row: dict[str, Any] = {"technique": s.name, "dropped": {k: v for k, v in rec.params.items() if k.startswith(f"{s.name}.")}}
        try:
            result = runner.run(plan, search.task.seed, search.options.timing_budget_s)
            row["accuracy"] = result.metrics["accuracy"]
            row["accuracy_change"] = rec.metrics["accuracy"] - result.metrics["accuracy"]
            variants.append((row, plan))
        except TrialFailure as failure:
            row["error"] = failure.reason
        rows.append(row)
    if variants:
        try:
            samples = runner.remeasure([rec_plan] + [p for _, p in variants], tuple(timed), search.options.remeasure_rounds,
                                       search.task.seed)
            for i, (row, _) in enumerate(variants, start=1):
                # Ratio of the variant's time to the recommendation's: the technique's own contribution.
                row["speedup"] = {o: ratio_from_rounds(r).to_json() for o, r in _ratios(samples, timed, i, 0).items()}
        except TrialFailure as failure:
            for row, _ in variants:
                row["error"] = f"re-measurement failed: {failure.reason}"
    study.set_user_attr("ablation", {"method": "ablation", "trial": rec.trial, "rows": rows})


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


def export_recommended(search: "Search", summary: Summary, runner: "Runner") -> dict[str, Any]:
    """Write the recommended model (state dict always, ONNX where it exports) under OUT/model/."""
    plan = apply_all(search.plan.strategies, search.plan.base, summary.recommended.params)
    try:
        report = runner.export(plan, search.out_dir / "model", search.task.seed)
    except TrialFailure as failure:
        search.progress.info(f"[yellow]could not export the recommended model ({failure.kind}): {escape(failure.reason)}[/]")
        return {"files": {}, "notes": [failure.reason]}
    for note in report.get("notes", []):
        search.progress.info(f"export: {escape(note)}")
    return report


__all__ = ["ablate", "environment", "export_recommended", "importances", "remeasure_front"]
