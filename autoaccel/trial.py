"""One trial, in whatever process runs it: build, train, transform, evaluate, time."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from autoaccel.errors import TrialFailure
from autoaccel.evaluate import latency_input, peak_memory_mb, predict, reset_peak_memory, score, time_inference
from autoaccel.data import sample_batch
from autoaccel.metrics import accuracy
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
    metric = task.metric_fn()
    acc = score(outputs, targets, metric, seed)
    metrics["accuracy"], ci["accuracy"] = acc.value, acc.ci95
    if metric is accuracy:
        # Per-sample correctness lets the accuracy drop against the baseline get a *paired* interval.
        correct = (outputs.argmax(dim=1) == targets).numpy().astype(np.uint8)
        details["correct"] = np.packbits(correct).tobytes().hex()
        details["correct_n"] = len(correct)
    lat = time_inference(model, latency_input(task.val_data, task.example_input), plan, timing_budget_s)
    metrics["latency"] = lat.median * 1000.0
    ci["latency"] = (lat.ci95[0] * 1000.0, lat.ci95[1] * 1000.0)
    batch = min(plan.eval_batch_size, max(len(task.val_data), 1))
    thr = time_inference(model, sample_batch(task.val_data, batch), plan, timing_budget_s)
    metrics["throughput"], ci["throughput"] = thr.rate(batch)
    metrics["memory"] = peak_memory_mb(plan.device)
    details.update(latency_first_call_ms=lat.first_call * 1000.0, latency_noisy=lat.noisy, throughput_noisy=thr.noisy)
    return TrialResult(metrics, ci, details)


REMEASURED = ("train_time", "latency", "throughput")


def remeasure_plans(task: Task, plans: list[Pipeline], objectives: tuple[str, ...], rounds: int, seed: int = 0,
                    budget_s: float = 0.2, train_samples: int = 4096) -> dict[str, list[list[float]]]:
    """Seconds per fixed amount of work, per objective, per plan, per round, measured interleaved.

    Training is timed over the same number of samples for every plan (a whole epoch for small data), so a
    larger batch is credited with exactly the speed it brings; inference on the same inputs for every plan.
    """
    from autoaccel.remeasure import interleave

    wanted = [o for o in objectives if o in REMEASURED and (o != "train_time" or plans[0].train)]
    samples = min(train_samples, len(task.train_data))
    trainees = {}
    served = {}
    for i, plan in enumerate(plans):
        seed_everything(seed)
        if "train_time" in wanted:
            trainees[i] = task.model().to(plan.device)
        model = task.model().to(plan.device)
        for transform in plan.model_transforms:
            model = transform(model)
        served[i] = model
    one = latency_input(task.val_data, task.example_input)
    batch = sample_batch(task.val_data, min(plans[0].eval_batch_size, max(len(task.val_data), 1)))

    def measure_once(objective: str, i: int) -> float:
        plan = plans[i]
        if objective == "train_time":
            return train(trainees[i], task, plan, seed, max_samples=samples).seconds
        inputs = one if objective == "latency" else batch
        return time_inference(served[i], inputs, plan, budget_s).median

    out: dict[str, list[list[float]]] = {}
    # One warm-up pass per plan first: the first round would otherwise pay lazy initialisation for some plans.
    for objective in wanted:
        for i in range(len(plans)):
            measure_once(objective, i)
        out[objective] = interleave(len(plans), rounds, lambda i, o=objective: measure_once(o, i))
    return out
