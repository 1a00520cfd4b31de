"""The rest of the user's recipe (Task.grad_clip, scheduler, scheduler_interval, accumulate, shuffle, on_epoch):
the baseline trains exactly as the user does. Real training of the tiny digits MLP."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from autoaccel import AutoaccelError, Task
from autoaccel.plugins.dataloader import CachedBatches, whole
from autoaccel.task._data import train_batches
from autoaccel.task._task import validate_task
from autoaccel.trial._train import train
from tiny_digits import base_plan


def _batches(task: Task) -> int:
    return -(-len(task.train_data) // task.batch_size)


def _train(task: Task) -> Any:
    return train(task.model(), task, base_plan(task), seed=0)


def test_the_users_scheduler_steps_once_an_epoch_or_once_a_step_as_they_say(tiny_task: Task) -> None:
    made: list[Any] = []

    def step_lr(optimizer: torch.optim.Optimizer) -> Any:
        made.append(torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5))
        return made[-1]

    task = dataclasses.replace(tiny_task, epochs=3, scheduler=step_lr)
    _train(task)
    assert made[-1].last_epoch == 3 and made[-1].get_last_lr()[0] == pytest.approx(task.lr * 0.125)
    _train(dataclasses.replace(task, scheduler_interval="step"))
    assert made[-1].last_epoch == 3 * _batches(task)


def test_a_plateau_schedule_gets_the_epochs_loss(tiny_task: Task) -> None:
    made: list[Any] = []

    def plateau(optimizer: torch.optim.Optimizer) -> Any:
        made.append(torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.25))
        return made[-1]

    _train(dataclasses.replace(tiny_task, epochs=2, scheduler=plateau))
    assert made[-1].last_epoch == 2 and made[-1].best < float("inf")


def test_gradient_accumulation_steps_the_optimizer_every_n_batches(tiny_task: Task) -> None:
    steps: list[int] = []

    def counting_sgd(params: Any, lr: float) -> torch.optim.Optimizer:
        optimizer = torch.optim.SGD(params, lr=lr)
        optimizer.register_step_post_hook(lambda *_: steps.append(1))
        return optimizer

    task = dataclasses.replace(tiny_task, epochs=2, optimizer=counting_sgd, accumulate=3)
    stats = _train(task)
    assert stats.steps == 2 * _batches(task)  # every batch still runs forward and backward
    assert len(steps) == 2 * -(-_batches(task) // 3)


def test_clipping_bounds_every_update(tiny_task: Task) -> None:
    torch.manual_seed(0)
    model = tiny_task.model()
    before = [p.detach().clone() for p in model.parameters()]
    task = dataclasses.replace(tiny_task, grad_clip=1e-9)
    train(model, task, base_plan(task), seed=0)
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before))
    # lr 0.1 x norm <= 1e-9 per step: the weights cannot move more than steps x 1e-10
    assert moved <= _batches(task) * 1e-10 * 10


def test_in_order_batches_and_the_per_epoch_hook(tiny_task: Task) -> None:
    seen: list[int] = []
    task = dataclasses.replace(tiny_task, epochs=2, shuffle=False, on_epoch=lambda model, epoch: seen.append(epoch))
    _train(task)
    assert seen == [0, 1]
    first = next(iter(train_batches(task.train_data, 8, seed=0, shuffle=False)))
    assert torch.equal(first[0], torch.stack([task.train_data[i][0] for i in range(8)]))
    cached = next(iter(CachedBatches(whole(task.train_data), task.batch_size, seed=0, shuffle=False)))
    assert torch.equal(cached[0], torch.stack([task.train_data[i][0] for i in range(task.batch_size)]))


@pytest.mark.parametrize(("changes", "message"), [
    ({"grad_clip": 0}, r"^Task\.grad_clip: expected a positive max gradient norm"),
    ({"scheduler": "cosine"}, r"^Task\.scheduler: expected a callable optimizer -> LR scheduler"),
    ({"scheduler_interval": "batch"}, r"^Task\.scheduler_interval: expected 'epoch' or 'step', but got 'batch'"),
    ({"accumulate": 0}, r"^Task\.accumulate: must be a positive integer"),
    ({"shuffle": "no"}, r"^Task\.shuffle: expected True or False"),
    ({"on_epoch": 3}, r"^Task\.on_epoch: expected a callable \(model, epoch\) -> None"),
])
def test_a_bad_recipe_field_is_one_line_naming_it(tiny_task: Task, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AutoaccelError, match=message) as err:
        validate_task(dataclasses.replace(tiny_task, **changes))
    assert "\n" not in str(err.value)


def test_the_recipe_keys_the_cache_only_when_set(tiny_task: Task) -> None:
    assert dataclasses.replace(tiny_task, grad_clip=None).fingerprint() == tiny_task.fingerprint()
    assert dataclasses.replace(tiny_task, grad_clip=0.25).fingerprint() != tiny_task.fingerprint()
    assert dataclasses.replace(tiny_task, accumulate=2).fingerprint() != tiny_task.fingerprint()
