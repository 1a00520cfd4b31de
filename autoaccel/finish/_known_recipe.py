"""The user's recipe at full length without training it again, for `autoaccel confirm`.

A user whose training takes hours has usually trained their recipe already. Two ways save its whole training:
- ``Task.weights``: the recipe's trained weights, evaluated here on the same validation rows as every trial
  (seconds). Its per-sample results keep the quality drop paired, and a serve answer is evaluated on these
  weights too, so it needs no training at all.
- ``--baseline-metric VALUE``: the metric the user measured after their own whole training. The drop is then
  judged by value against it (no paired interval: the samples it was measured on are not known here).

Either way the recipe's whole-training *time* is the one the search projected from its steady step time (its
trial at the search's share of the schedule), and a confirmed answer's ratio says so.
"""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState

from autoaccel.task import Shown
from autoaccel.trial import TrialRecord, TrialResult

WEIGHTS = "Task.weights"
STATED = "--baseline-metric"
SERVED = "Task.weights, served"


def _record(number: int, metrics: dict[str, float], ci95: dict[str, Any], details: dict[str, Any], role: str,
            params: dict[str, Any] | None = None) -> TrialRecord:
    return TrialRecord(number=number, state=TrialState.COMPLETE, params=dict(params or {}), role=role, metrics=metrics,
                       ci95={k: list(v) for k, v in ci95.items()}, details=details)


def from_weights(result: TrialResult, searched: TrialRecord) -> TrialRecord:
    """The recipe as its trained weights measure it: their quality, and the training time the search projected."""
    metrics = {**result.metrics, "train_time": float(searched.metrics["train_time"])}
    return _record(-1, metrics, result.ci95, {**result.details, "known_from": WEIGHTS}, "baseline")


def stated(value: float, searched: TrialRecord) -> TrialRecord:
    """The recipe as the user stated its metric (in the metric's own units and direction)."""
    shown = Shown.of(searched.details.get("metric"))
    metrics = {"accuracy": shown.sign * float(value), "train_time": float(searched.metrics["train_time"])}
    return _record(-1, metrics, {}, {"metric": shown.to_json(), "known_from": STATED}, "baseline")


def served(result: TrialResult, params: dict[str, Any]) -> TrialRecord:
    """A serve answer evaluated on the recipe's trained weights (nothing trained)."""
    return _record(-2, dict(result.metrics), result.ci95, {**result.details, "known_from": SERVED}, "confirm", params)


def label(record: TrialRecord) -> str:
    """How a figure names where it came from: a trial of the study, or the user's weights or stated value."""
    source = record.details.get("known_from")
    if source == WEIGHTS:
        return "your trained weights (Task.weights)"
    if source == SERVED:
        return "the answer served from your trained weights"
    if source == STATED:
        return "the value you stated (--baseline-metric)"
    return f"trial {record.number}"
