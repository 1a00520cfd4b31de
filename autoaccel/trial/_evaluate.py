"""The task's metric (with an interval), inference latency at batch 1, inference throughput, and peak memory."""

from __future__ import annotations

import math
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from autoaccel.errors import TrialFailure
from autoaccel.measure import Measurement, measure
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import Metric, call, eval_batches, evaluation_batch, map_tensors, prediction, sample_batch
from autoaccel.task import size as batch_size
from autoaccel.trial._lifecycle import inference, prepare_input

BOOTSTRAP_RESAMPLES = 200
PER_BATCH_ROWS = 20  # batches a per-batch metric is evaluated in (fewer when the validation set is smaller)
BOOTSTRAP_CELLS = 20_000_000  # floats a bootstrap slice may hold at once (160 MB)


@dataclass(frozen=True)
class Score:
    value: float
    ci95: tuple[float, float]


# Two-sided 95% normal quantile (1.959964...).
Z95 = float(stats.norm.ppf(0.975))


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion: honest near 0 and 1, where the normal interval is not."""
    if n == 0:
        return 0.0, 1.0  # no samples: nothing is known (scipy's binomtest refuses n = 0)
    # scipy takes a confidence level, not z: the two-sided level whose normal quantile is z.
    level = 1.0 - 2.0 * float(stats.norm.sf(z))
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def metric_rows(model: Callable[..., Any], task: Any, plan: Pipeline, metric: Metric) -> np.ndarray:
    """A metric of rows (metrics.Metric) over the validation set, batch by batch under the plan's inference
    contexts (autocast, ...): only rows of sums are kept, never all the outputs at once (quality.py evaluates
    the other kinds)."""
    rows: list[np.ndarray] = []
    if hasattr(model, "eval"):
        model.eval()
    size = plan.eval_batch_size
    if metric.per_batch:
        # A metric of whole batches is resampled over batches: at least PER_BATCH_ROWS of them for its interval.
        size = max(1, min(size, -(-len(task.val_data) // PER_BATCH_ROWS)))
    with inference(plan):
        for batch in eval_batches(task.val_data, size):
            one = evaluation_batch(task, model, batch, lambda inputs: prepare_input(inputs, plan), metric.needs_loss)
            if one.value is not None:  # the user's evaluation_step gave the batch's metric value: weighted by its size
                n = batch_size(batch)
                rows.append(np.array([[one.value * n, n]], dtype=np.float64))
                continue
            targets = map_tensors(lambda t: t.cpu(), one.targets)
            loss = None if one.loss is None else one.loss.float().cpu()
            rows.append(metric.rows(prediction(one.outputs).float().cpu(), targets, loss))
    return np.concatenate(rows) if rows else np.zeros((0, 2))


def score(rows: np.ndarray, metric: Metric, seed: int = 0) -> Score:
    """The metric with a 95% interval from its rows: Wilson for a proportion over independent samples, else a
    percentile bootstrap over the rows (samples, or batches for per-batch metrics)."""
    value = metric.value(rows.sum(axis=0))
    if not math.isfinite(value):
        # A NaN or infinite score cannot be compared with anything: the trial fails, saying which field did it.
        raise TrialFailure(f"Task.metric ({metric.name}) was {value} on the validation set; it must be a finite number",
                           kind="error")
    n = len(rows)
    if metric.proportion and n and np.all(rows[:, 1] == 1):
        return Score(value, wilson(round(rows[:, 0].sum()), n))
    if n < 2:
        # Every resample of one row is that row (scipy's bootstrap refuses fewer than two).
        return Score(value, (value, value))

    def resampled(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        # Resampled row indices (resamples x n): each resample's column totals, finished into its value.
        return metric.finish(rows[idx.astype(np.intp)].sum(axis=-2))

    # Vectorised over resamples, in slices that bound memory to about BOOTSTRAP_CELLS floats at a time.
    chunk = max(1, BOOTSTRAP_CELLS // max(1, n * rows.shape[1]))
    res = stats.bootstrap((np.arange(n),), resampled, n_resamples=BOOTSTRAP_RESAMPLES, batch=chunk, vectorized=True,
                          confidence_level=0.95, method="percentile", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Score(value, (min(low, value), max(high, value)))


def hits(rows: np.ndarray, metric: Metric) -> np.ndarray | None:
    """Per-sample correctness (0/1) when the metric is a proportion over single samples: what a paired interval
    of the drop against the baseline needs."""
    if metric.proportion and len(rows) and np.all(rows[:, 1] == 1):
        return rows[:, 0].astype(np.uint8)
    return None


def time_inference(model: nn.Module, inputs: Any, plan: Pipeline, budget_s: float) -> Measurement:
    model.eval()
    inputs = prepare_input(inputs, plan)

    def once() -> object:
        with inference(plan):
            return call(model, inputs)

    return measure(once, plan.device, budget_s=budget_s)


def latency_input(dataset: object, example: Any) -> Any:
    """One input of batch 1 for latency timing, export and serving: ``Task.example_input`` (a tensor gains a
    batch axis if it lacks one; a tuple or dict is taken as it is), else the first validation item's inputs."""
    if isinstance(example, torch.Tensor):
        return example if example.ndim > 0 and example.shape[0] == 1 else example.unsqueeze(0)
    if example is not None:
        return example
    return sample_batch(dataset, 1)


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        # A fresh trial worker has not touched CUDA yet, and the caching allocator refuses a reset before CUDA's
        # lazy initialisation ("Invalid device argument"): initialise it first.
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
        return
    # Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM), so a long-lived worker can report
    # each trial's own peak.
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
