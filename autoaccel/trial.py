"""One trial, in whatever process runs it: build, train, transform, evaluate, time."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from autoaccel.errors import TrialFailure
from autoaccel.evaluate import latency_input, peak_memory_mb, predict, reset_peak_memory, score, time_inference
from autoaccel.data import sample_batch
from autoaccel.pipeline import Pipeline
from autoaccel.task import Task
from autoaccel.train import train

# Metrics every trial reports; the objectives are chosen among them. True = higher is better.
METRICS: dict[str, bool] = {
    "accuracy": True,
    "train_time": False,
    "latency": False,
    "throughput": True,
    "memory": False,
}
OBJECTIVES = tuple(METRICS)
SPEED_OBJECTIVES = ("train_time", "latency", "throughput", "memory")


@dataclass
class TrialResult:
    metrics: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    details: dict[str, float | bool | str] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def run_trial(task: Task, plan: Pipeline, seed: int = 0, timing_budget_s: float = 1.0) -> TrialResult:
    """Run one plan end to end and return its metrics; any failure becomes a TrialFailure with a reason."""
    try:
        return _run(task, plan, seed, timing_budget_s)
    except TrialFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's model may raise anything; the study must go on
        if _is_oom(exc):
            raise TrialFailure(f"out of memory at batch size {plan.batch_size} (infeasible): {exc}".splitlines()[0], kind="oom") from exc
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TrialFailure(f"{type(exc).__name__}: {first}", kind="error") from exc


def _run(task: Task, plan: Pipeline, seed: int, timing_budget_s: float) -> TrialResult:
    reset_peak_memory(plan.device)
    seed_everything(seed)
    model = task.model().to(plan.device)
    details: dict[str, float | bool | str] = {}
    metrics: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    if plan.train:
        stats = train(model, task, plan, seed)
        metrics["train_time"] = stats.seconds
        rate, rate_ci = stats.step_time.rate(plan.batch_size)
        details.update(train_steps=stats.steps, train_samples_per_s=rate, train_loss=stats.final_loss,
                       train_step_noisy=stats.step_time.noisy)
        ci["train_samples_per_s"] = rate_ci
    elif task.weights:
        model.load_state_dict(torch.load(task.weights, map_location=plan.device, weights_only=True))
        metrics["train_time"] = 0.0
    for transform in plan.model_transforms:
        model = transform(model)
    outputs, targets = predict(model, task.val_data, plan)
    acc = score(outputs, targets, task.metric_fn(), seed)
    metrics["accuracy"], ci["accuracy"] = acc.value, acc.ci95
    lat = time_inference(model, latency_input(task.val_data, task.example_input), plan, timing_budget_s)
    metrics["latency"] = lat.median * 1000.0
    ci["latency"] = (lat.ci95[0] * 1000.0, lat.ci95[1] * 1000.0)
    batch = min(plan.eval_batch_size, max(len(task.val_data), 1))
    thr = time_inference(model, sample_batch(task.val_data, batch), plan, timing_budget_s)
    metrics["throughput"], ci["throughput"] = thr.rate(batch)
    metrics["memory"] = peak_memory_mb(plan.device)
    details.update(latency_first_call_ms=lat.first_call * 1000.0, latency_noisy=lat.noisy, throughput_noisy=thr.noisy)
    return TrialResult(metrics, ci, details)
