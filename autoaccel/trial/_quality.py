"""A trial's quality over the validation set, whatever kind of metric the Task gives, with what pairs it.

- Built-in metrics of sums (accuracy, mse, loss, perplexity, ...) stay streamed as rows (metrics.py); their
  drop between two trials is paired per sample (correctness) or per row.
- A callable, or a named whole-set scorer (f1, balanced_accuracy, auroc, ...), is computed once on the whole
  set's outputs (whole_set.py); ``Task.metric_reduction="mean"`` says a callable is a batch average instead.
- A torchmetrics Metric is updated batch by batch and computed at the end (torchmetric.py).
A whole-set or torchmetrics metric stores its value on the bootstrap's fixed resamples (``metric_replicates``):
the paired interval of a drop is the spread of the replicates' differences (results.accuracy_drop).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autoaccel.errors import TrialFailure
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import (
    JoinError,
    Metric,
    TorchMetric,
    WholeSetMetric,
    check_batched,
    eval_batches,
    evaluation_batch,
    join,
    map_tensors,
    prediction,
)
from autoaccel.task import size as batch_size
from autoaccel.trial._evaluate import hits, metric_rows, score
from autoaccel.trial._lifecycle import inference, prepare_input

MAX_STORED_ROWS = 4_000  # metric row cells kept in a trial's record for paired intervals (under 100 kB of JSON)
AnyMetric = Metric | WholeSetMetric | TorchMetric


@dataclass(frozen=True)
class Quality:
    """The metric's value over the validation set, its 95% interval, and the details a paired drop needs."""

    value: float
    ci95: tuple[float, float]
    pairing: dict[str, Any] = field(default_factory=dict)


def _finite(value: float, metric: AnyMetric) -> float:
    if not math.isfinite(value):
        # A NaN or infinite score cannot be compared with anything: the trial fails, saying which field did it.
        raise TrialFailure(f"Task.metric ({metric.name}) was {value} on the validation set; it must be a finite number",
                           kind="error")
    return value


def from_rows(rows: np.ndarray, metric: Metric, seed: int = 0) -> Quality:
    """A rows metric's quality: its score, and per-sample correctness or the rows themselves for pairing."""
    got = score(rows, metric, seed)
    correct = hits(rows, metric)
    if correct is not None:
        pairing: dict[str, Any] = {"correct": np.packbits(correct).tobytes().hex(), "correct_n": len(correct)}
    elif rows.size <= MAX_STORED_ROWS:
        pairing = {"metric_rows": rows.tolist()}
    else:
        pairing = {}
    return Quality(got.value, got.ci95, pairing)


def from_replicates(value: float, replicates: np.ndarray, metric: AnyMetric) -> Quality:
    """A whole-set or torchmetrics quality: the percentile interval of its bootstrap replicates."""
    value = _finite(value, metric)
    finite = replicates[np.isfinite(replicates)]
    if len(finite) < 2:
        return Quality(value, (value, value), {"metric_replicates": replicates.tolist()})
    low, high = (float(v) for v in np.percentile(finite, [2.5, 97.5]))
    return Quality(value, (min(low, value), max(high, value)), {"metric_replicates": replicates.tolist()})


def of_outputs(outputs: Any, targets: Any, metric: AnyMetric, seed: int = 0) -> Quality:
    """The quality of outputs made outside the model (a stacking ensemble's out-of-fold predictions)."""
    if isinstance(metric, WholeSetMetric):
        return from_replicates(metric(outputs, targets), metric.replicates(outputs, targets), metric)
    if isinstance(metric, TorchMetric):
        acc = metric.accumulator(len(targets))
        acc.add(outputs, targets)
        return from_replicates(acc.value(), acc.replicates(), metric)
    return from_rows(metric.rows(prediction(outputs).float(), targets, None), metric, seed)


def _join_error(metric: AnyMetric, exc: JoinError) -> TrialFailure:
    return TrialFailure(f"Task.metric ({metric.name}) is computed on the whole validation set, but {exc}: return "
                        "(outputs, targets) with the batch first from Task.evaluation_step, or set "
                        "Task.metric_reduction='mean' to average it over batches", kind="error")


def evaluate(model: Callable[..., Any], task: Any, plan: Pipeline, metric: AnyMetric, seed: int = 0) -> Quality:
    """The metric over the validation set, batch by batch under the plan's inference contexts (autocast, ...)."""
    if isinstance(metric, Metric):
        return from_rows(metric_rows(model, task, plan, metric), metric, seed)
    if hasattr(model, "eval"):
        model.eval()
    values: list[np.ndarray] = []  # per-batch values the user's evaluation_step gave
    outputs: list[Any] = []
    targets: list[Any] = []
    streamed = metric.accumulator(len(task.val_data)) if isinstance(metric, TorchMetric) else None
    with inference(plan):
        for batch in eval_batches(task.val_data, plan.eval_batch_size):
            one = evaluation_batch(task, model, batch, lambda inputs: prepare_input(inputs, plan), False)
            if one.value is not None:  # the user's evaluation_step gave the batch's value: averaged, weighted by its size
                n = batch_size(batch)
                values.append(np.array([[one.value * n, n]], dtype=np.float64))
                continue
            # Half-precision outputs (autocast) as float32: what a user's numpy or scikit-learn code can take.
            got = map_tensors(_cpu_float, one.outputs)
            # Compared with what the loss compares them with: the targets, else the inputs (an autoencoder's).
            target = map_tensors(_cpu_float, one.reference)
            if streamed is not None:
                streamed.add(got, target)
                continue
            try:
                check_batched(got, batch_size(target) if isinstance(target, torch.Tensor) else batch_size(got))
            except (JoinError, ValueError) as exc:
                raise _join_error(metric, JoinError(str(exc))) from None
            outputs.append(got)
            targets.append(target)
    if values and (outputs or (streamed is not None and streamed.offset)):
        raise TrialFailure("Task.evaluation_step returned a number for some batches and (outputs, targets) for others",
                           kind="error")
    if values:
        return from_rows(np.concatenate(values), _mean_of(metric), seed)
    if streamed is not None:
        return from_replicates(streamed.value(), streamed.replicates(), metric)
    assert isinstance(metric, WholeSetMetric)
    joined, joined_targets = join(outputs), join(targets) if targets and targets[0] is not None else None
    return from_replicates(metric(joined, joined_targets), metric.replicates(joined, joined_targets), metric)


def _cpu_float(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu()
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _mean_of(metric: AnyMetric) -> Metric:
    """The batch mean of the values a user's evaluation_step returned, under the metric's name and direction."""
    from autoaccel.task import ratio_of_sums

    return Metric(metric.name, metric.direction, lambda *_: np.zeros((0, 2)), ratio_of_sums, per_batch=True)
