"""The zoo matrix: every installed technique, at each of its probes (the settings the search tries it with first),
on one model: works (with its speedup over the recipe on its goal's metric, from one measurement, and for a serving
change whether its outputs agree with the eager model's), ruled out and why, or failed (a bug: a raw exception, a
crash, a timeout). tests/plugins/test_zoo.py asserts on it for the transformers families; bench/zoo.py prints it for timm's and
torchvision's models too."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from autoaccel.errors import TrialFailure
from autoaccel.plugin._configuration import goal_of
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._registry import Registry
from autoaccel.task import Task, call, prediction, sample_batch
from autoaccel.task._target import autoaccel_detect_target
from autoaccel.trial import run_trial
from autoaccel.trial._checkpoints import training_key
from autoaccel.trial._run import serve

# Served outputs that keep the model's float32 math (an engine, a layout, a compiler) agree with eager within this,
# relative to the logits' scale; lossy ones (int8, half precision, pruning) are judged on quality by the search.
SAME_MATH = 1e-3
LOSSY = ("quantization", "pruning", "precision", "distillation")
# Failures that are a technique's honest "not here", with a reason; any other kind is a bug to fix.
HONEST = frozenset({"unsupported", "infeasible", "too_slow"})
GOAL_METRIC = {"train": "train_time", "serve": "latency"}


@dataclass
class Cell:
    technique: str
    params: dict[str, Any]
    status: str  # works, ruled out, failed
    reason: str = ""
    where: str = ""
    speedup: float | None = None  # the recipe's time over the technique's, on its goal's metric (one measurement)
    agrees: bool | None = None  # a serving change's outputs against the eager model's (None: not compared)

    @property
    def label(self) -> str:
        return f"{self.technique} {' '.join(f'{k}={v}' for k, v in self.params.items())}".strip()

    def said(self) -> str:
        if self.status == "works":
            speed = f"{self.speedup:.2f}x" if self.speedup is not None else "works"
            return speed + (" (outputs differ)" if self.agrees is False else "")
        return f"{self.status}: {self.reason}" + (f" [{self.where}]" if self.status == "failed" and self.where else "")


def matrix(task: Task, registry: Registry, only: set[str] | None = None, first_only: set[str] = frozenset(),
           timing_budget_s: float = 0.05) -> list[Cell]:
    """Every technique of ``registry`` (``only`` these, when given) on ``task``, each probe a trial against the
    recipe's (trained once; serving changes reuse its training); ``first_only``: techniques tried at their first
    probe only (their every trial pays seconds of fixed cost)."""
    target = autoaccel_detect_target("cpu")
    assert target is not None
    model = task.model()
    base = Pipeline(device="cpu", batch_size=task.batch_size, lr=task.lr, epochs=task.epochs)
    base = base.replace(baseline_key=training_key(task, base))
    example = sample_batch(task.val_data, 4)
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory() as cache:
        # The recipe twice, the second as the reference: the first trial in a process pays one-off costs (kernel
        # selection, allocations) that made even speed-neutral changes read 1.6x faster (a schedule, on ResNet-18).
        run_trial(task, base, 0, timing_budget_s)  # not cached: the reference trains again
        recipe = run_trial(task, base, 0, timing_budget_s, cache)
        for name, s in sorted(registry.strategies.items()):
            if only is not None and name not in only:
                continue
            cap = s.capability(target, task, model)
            if not cap.supported:
                cells.append(Cell(name, {}, "ruled out", cap.reason))
                continue
            probes = s.probes(s.effective_space(target, task, model))
            for params in probes[:1] if name in first_only else probes:
                plan = s.apply(base, {**s.defaults(task), **params})
                if plan == base or plan.members:
                    continue  # changes nothing here, or needs other trained models (searched jointly)
                try:
                    result = run_trial(task, plan, 0, timing_budget_s, cache)
                except TrialFailure as exc:
                    status = "ruled out" if exc.kind in HONEST else "failed"
                    cells.append(Cell(name, params, status, f"{exc.kind}: {exc.reason}", exc.where))
                    continue
                goal = goal_of({f"{name}.{k}": v for k, v in params.items()}, [s], "both")
                metric = GOAL_METRIC.get(goal, "latency")
                mine = result.metrics.get(metric, 0.0)
                cell = Cell(name, params, "works", speedup=recipe.metrics[metric] / mine if mine > 0 else None)
                if goal == "serve":
                    cell.agrees = agrees(task, plan, example, lossy=name in LOSSY)
                cells.append(cell)
    return cells


def agrees(task: Task, plan: Pipeline, inputs: Any, lossy: bool) -> bool:
    """The served model's outputs against the eager model's, on the same weights (in eval mode, as a trial serves
    it): within SAME_MATH of the logits' scale for a change that keeps the math, finite and shaped alike for a
    lossy one."""
    model = task.model().eval()
    with torch.no_grad():
        eager = prediction(call(model, inputs)).float()
    served = serve(task, plan, model, sample_batch(task.val_data, 1), 0)
    with torch.no_grad():
        got = prediction(call(served, inputs)).float()
    if got.shape != eager.shape or not bool(torch.isfinite(got).all()):
        return False
    return lossy or float((got - eager).abs().max()) <= SAME_MATH * (1.0 + float(eager.abs().max()))
