"""LR schedule: constant, step, cosine or one-cycle, with optional warm-up and a peak LR around the user's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import Phase, Pipeline, SchedulePlan, Strategy, hookimpl


class SchedulerStrategy(Strategy):
    name = "scheduler"
    phase = Phase.TRAIN
    description = "LR schedule (constant, step, cosine, one-cycle) with warm-up and the peak LR searched around yours."

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        schedule = SchedulePlan(kind=str(params.get("kind", "constant")), warmup=float(params.get("warmup", 0.0)))
        return pipeline.replace(schedule=schedule, lr=pipeline.lr * float(params.get("lr_factor", 1.0)))


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(SchedulerStrategy())
