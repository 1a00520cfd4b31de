"""Accuracy (with an interval), inference latency at batch 1, inference throughput, and peak memory."""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn

from autoaccel.data import eval_batches, sample_batch
from autoaccel.errors import TrialFailure
from autoaccel.lifecycle import inference, prepare_input
from autoaccel.measure import Measurement, measure
from autoaccel.metrics import MetricFn, accuracy
from autoaccel.pipeline import Pipeline

BOOTSTRAP_RESAMPLES = 200


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


def predict(model: nn.Module, dataset: object, plan: Pipeline) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs (as float32 on the CPU) and targets for the whole dataset, under the plan's inference contexts (autocast, ...)."""
    outputs, targets = [], []
    model.eval()
    with inference(plan):
        for inputs, target in eval_batches(dataset, plan.eval_batch_size):
            out = model(prepare_input(inputs, plan))
            outputs.append(out.float().cpu())
            targets.append(torch.as_tensor(target))
    return torch.cat(outputs), torch.cat(targets)


def score(outputs: torch.Tensor, targets: torch.Tensor, metric: MetricFn, seed: int = 0) -> Score:
    """The metric with a 95% interval: Wilson for accuracy, a percentile bootstrap for any other metric."""
    value = float(metric(outputs, targets))
    if not math.isfinite(value):
        # A NaN or infinite score cannot be compared with anything: the trial fails, saying which field did it.
        raise TrialFailure(f"Task.metric returned {value} on the validation set; it must return a finite number", kind="error")
    n = len(targets)
    if metric is accuracy:
        return Score(value, wilson(round(value * n), n))
    if n < 2:
        # Every resample of one sample is that sample (scipy's bootstrap refuses fewer than two).
        return Score(value, (value, value))

    def resampled(idx: np.ndarray) -> float:
        # Resampling indices keeps each output with its own target (a paired bootstrap).
        rows = torch.as_tensor(idx)
        return float(metric(outputs[rows], targets[rows]))

    # batch=1: one resample's indices at a time, not a BOOTSTRAP_RESAMPLES x n matrix of them.
    res = stats.bootstrap((np.arange(n),), resampled, n_resamples=BOOTSTRAP_RESAMPLES, batch=1, vectorized=False,
                          confidence_level=0.95, method="percentile", rng=np.random.default_rng(seed))
    return Score(value, (float(res.confidence_interval.low), float(res.confidence_interval.high)))


def time_inference(model: nn.Module, inputs: torch.Tensor, plan: Pipeline, budget_s: float) -> Measurement:
    model.eval()
    inputs = prepare_input(inputs, plan)

    def call() -> object:
        with inference(plan):
            return model(inputs)

    return measure(call, plan.device, budget_s=budget_s)


def latency_input(dataset: object, example: torch.Tensor | None) -> torch.Tensor:
    if example is not None:
        return example if example.ndim > 0 and example.shape[0] == 1 else example.unsqueeze(0)
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
