"""The scheduler strategy: LR schedule kind, warm-up, and the peak LR as a factor of the user's."""

from __future__ import annotations

import pytest

from autoaccel import Pipeline, Task
from autoaccel.plugin._space import FloatRange
from autoaccel.plugin.testing import CPU, StrategyContract
from autoaccel.plugins.scheduler import SchedulerStrategy, ScheduleSection
from tiny_digits import base_plan, train_with


class TestSchedulerContract(StrategyContract):
    strategy_class = SchedulerStrategy


def test_space_searches_the_peak_lr_around_the_users() -> None:
    space = SchedulerStrategy().effective_space(CPU)
    assert space["lr_factor"] == FloatRange(0.25, 4.0, 1.0, log=True)
    assert set(space) == {"kind", "warmup", "lr_factor"}


@pytest.mark.parametrize(("factor", "lr"), [(1.0, 0.1), (2.0, 0.2), (0.25, 0.025), (4.0, 0.4)])
def test_apply_multiplies_the_lr(factor: float, lr: float) -> None:
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    plan = SchedulerStrategy().apply(base, {"kind": "cosine", "warmup": 0.05, "lr_factor": factor})
    assert plan.lr == pytest.approx(lr)
    assert plan.section("scheduler") == ScheduleSection(kind="cosine", warmup=0.05)
    assert plan.replace(lr=0.1, steps=()) == base


def test_trains_with_onecycle(tiny_task: Task) -> None:
    plan = SchedulerStrategy().apply(base_plan(tiny_task), {"kind": "onecycle", "warmup": 0.0, "lr_factor": 2.0})
    assert plan.section("scheduler") == ScheduleSection(kind="onecycle") and plan.lr == pytest.approx(2 * tiny_task.lr)
    assert train_with(tiny_task, plan).metrics["accuracy"] > 0.5


def test_trains_with_step_decay_and_warmup(tiny_task: Task) -> None:
    plan = SchedulerStrategy().apply(base_plan(tiny_task), {"kind": "step", "warmup": 0.1, "lr_factor": 1.0})
    train_with(tiny_task, plan)
