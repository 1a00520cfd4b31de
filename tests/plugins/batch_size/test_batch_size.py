"""The batch_size strategy: powers of two (plus the user's own size) with linear or sqrt LR scaling."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from autoaccel import Pipeline, Task
from autoaccel.plugin._space import Categorical
from autoaccel.plugin.testing import CPU, StrategyContract
from autoaccel.plugins.batch_size import BatchSizeStrategy
from tiny_digits import base_plan, make_task, train_with


class TestBatchSizeContract(StrategyContract):
    strategy_class = BatchSizeStrategy


def sizes(task: Task | None) -> tuple[int, ...]:
    param = BatchSizeStrategy().effective_space(CPU, task)["size"]
    assert isinstance(param, Categorical)
    return param.choices


def test_space_is_powers_of_two_including_the_task_batch_size(tiny_task: Task) -> None:
    assert sizes(tiny_task) == (8, 16, 32, 64, 128, 256, 512, 1024)
    assert BatchSizeStrategy().space(tiny_task)["size"].default == 32


def test_an_odd_user_batch_size_is_added_and_is_the_default() -> None:
    task = make_task(batch_size=48)
    assert sizes(task) == (8, 16, 32, 48, 64, 128, 256, 512, 1024)
    assert BatchSizeStrategy().defaults(task) == {"size": 48, "lr_scaling": "none"}


def test_sizes_are_capped_at_the_training_set() -> None:
    small = TensorDataset(torch.zeros(100, 64), torch.zeros(100, dtype=torch.long))
    assert sizes(make_task(train_data=small, batch_size=16)) == (8, 16, 32, 64)


def test_every_size_but_the_users_is_a_power_of_two() -> None:
    task = make_task(batch_size=24)
    for size in sizes(task):
        assert size == 24 or size & (size - 1) == 0


def test_without_a_task_the_yaml_default_is_used() -> None:
    assert BatchSizeStrategy().defaults() == {"size": 32, "lr_scaling": "none"}


@pytest.mark.parametrize(
    ("size", "rule", "lr"),
    [
        (64, "none", 0.1),
        (64, "linear", 0.2),
        (128, "linear", 0.4),
        (16, "linear", 0.05),
        (128, "sqrt", 0.2),
        (64, "sqrt", 0.1 * math.sqrt(2)),
        (8, "sqrt", 0.05),
    ],
)
def test_lr_scaling_rules(size: int, rule: str, lr: float) -> None:
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    plan = BatchSizeStrategy().apply(base, {"size": size, "lr_scaling": rule})
    assert plan.batch_size == size
    assert plan.lr == pytest.approx(lr)


def test_trains_with_a_larger_batch_and_linear_scaling(tiny_task: Task) -> None:
    plan = BatchSizeStrategy().apply(base_plan(tiny_task), {"size": 64, "lr_scaling": "linear"})
    assert (plan.batch_size, plan.lr) == (64, pytest.approx(2 * tiny_task.lr))
    result = train_with(tiny_task, plan)
    assert result.details["train_steps"] == 23  # ceil(1437 / 64)
