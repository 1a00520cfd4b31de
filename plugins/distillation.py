"""Knowledge distillation: train Task.student(size) against the baseline's trained model (or Task.weights)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import Phase, Pipeline, Strategy, Task, hookimpl
from autoaccel.pipeline import DistillPlan


class DistillationStrategy(Strategy):
    name = "distillation"
    phase = Phase.TRAIN
    description = "Knowledge distillation into Task.student(size); temperature, mixing weight and size searched."

    def unavailable(self, task: Task | None) -> str | None:
        if task is not None and task.student is None:
            return "Task.student is not set (a factory taking a size, for the smaller model)"
        return None

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        if not params.get("enabled", False):
            return pipeline
        return pipeline.replace(distill=DistillPlan(temperature=float(params.get("temperature", 4.0)),
                                                    alpha=float(params.get("alpha", 0.5)),
                                                    student_size=float(params.get("student_size", 0.5))))


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(DistillationStrategy())
