"""task.py: validate_task() names the field and what was expected, and dry-runs one forward/loss/metric."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import IterableDataset, TensorDataset

from autoaccel import AutoaccelError, Task
from autoaccel.task._task import validate_task
from tiny_digits import make_task


class Stream(IterableDataset):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        yield torch.zeros(64), 0


class Exploding:
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> Any:
        raise KeyError(i)


def bad_factory() -> nn.Module:
    raise RuntimeError("width must be even")


def test_the_tiny_task_is_valid(tiny_task: Task) -> None:
    assert validate_task(tiny_task) is tiny_task


def test_not_a_task_names_the_source() -> None:
    with pytest.raises(AutoaccelError, match=r"^model\.py: `task` must be an autoaccel\.Task .*but got dict"):
        validate_task({"model": None}, source="model.py")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "resnet"}, r"^Task\.model: expected a callable returning a fresh nn\.Module, but got str"),
        ({"epochs": 0}, r"^Task\.epochs: must be a positive integer, but got 0"),
        ({"epochs": 2.0}, r"^Task\.epochs: must be a positive integer, but got 2\.0"),
        ({"epochs": True}, r"^Task\.epochs: must be a positive integer, but got True"),
        ({"batch_size": -32}, r"^Task\.batch_size: must be a positive integer, but got -32"),
        ({"lr": 0}, r"^Task\.lr: must be a positive number, but got 0"),
        ({"lr": "0.1"}, r"^Task\.lr: must be a positive number, but got '0\.1'"),
        ({"lr": float("nan")}, r"^Task\.lr: must be a positive number, but got nan"),
        ({"optimizer": "adam"}, r"^Task\.optimizer: expected a callable \(params, lr\) -> Optimizer, but got str"),
        ({"loss": "ce"}, r"^Task\.loss: expected a callable \(outputs, targets\) -> loss tensor, but got str"),
        ({"student": 3}, r"^Task\.student: expected a callable returning an nn\.Module, but got int"),
        ({"weights": 3}, r"^Task\.weights: expected a file path \(str\), but got int"),
        ({"name": "  "}, r"^Task\.name: expected a non-empty string"),
        ({"train_data": 42}, r"^Task\.train_data: expected a map-style dataset .*but got int"),
        ({"val_data": Stream()}, r"^Task\.val_data: expected a map-style dataset .*but got Stream"),
        ({"train_data": []}, r"^Task\.train_data: the dataset is empty"),
        ({"val_data": [1, 2, 3]}, r"^Task\.val_data: each item must be an \(input, target\) pair, a dict of model inputs or an input tensor, but item 0 is int"),
        ({"train_data": Exploding()}, r"^Task\.train_data: reading item 0 failed: KeyError: 0"),
        ({"metric": "acuracy"}, r"^Task\.metric: unknown metric 'acuracy'; did you mean 'accuracy'\?"),
        ({"model": bad_factory}, r"^Task\.model: calling the factory failed: RuntimeError: width must be even"),
        ({"model": lambda: "not a module"}, r"^Task\.model: the factory must return a torch\.nn\.Module, but returned str"),
    ],
)
def test_each_bad_field_is_one_line_naming_it(changes: dict[str, Any], message: str) -> None:
    task = make_task(**changes)
    with pytest.raises(AutoaccelError, match=message) as info:
        validate_task(task)
    assert "\n" not in str(info.value)


def test_forward_failure_reports_the_input_shape() -> None:
    task = make_task(model=lambda: nn.Linear(10, 5))
    with pytest.raises(AutoaccelError, match=r"^Task\.model: forward failed on a batch of train_data with input shape \(3, 64\): RuntimeError"):
        validate_task(task)


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_loss_failure_reports_output_and_target_shapes() -> None:
    task = make_task(loss=nn.MSELoss())  # (2, 10) outputs against (2,) integer targets
    with pytest.raises(AutoaccelError, match=r"^Task\.loss: failed on model outputs of shape \(3, 10\) and targets of shape \(3,\)"):
        validate_task(task)


def test_metric_failure_is_reported() -> None:
    def broken(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        raise ZeroDivisionError("no samples")

    with pytest.raises(AutoaccelError, match=r"^Task\.metric: failed on model outputs .*: ZeroDivisionError: no samples"):
        validate_task(make_task(metric=broken))


def test_unbatchable_items_are_reported() -> None:
    ragged = [(torch.zeros(64), 0), (torch.zeros(63), 1)]
    with pytest.raises(AutoaccelError, match=r"^Task\.train_data: items cannot be batched together"):
        validate_task(make_task(train_data=ragged))


def test_dry_run_leaves_the_user_factory_alone_and_uses_no_grad(tiny_task: Task) -> None:
    built: list[nn.Module] = []

    def factory() -> nn.Module:
        model = tiny_task.model()
        built.append(model)
        return model

    validate_task(dataclasses.replace(tiny_task, model=factory))
    assert len(built) == 1
    assert all(p.grad is None for p in built[0].parameters())


def test_fingerprint_is_stable_and_tracks_the_recipe(tiny_task: Task) -> None:
    same = make_task()
    assert tiny_task.fingerprint() == same.fingerprint()
    assert len(tiny_task.fingerprint()) == 16
    assert make_task(epochs=2).fingerprint() != tiny_task.fingerprint()
    assert make_task(lr=0.2).fingerprint() != tiny_task.fingerprint()
    small = TensorDataset(torch.zeros(10, 64), torch.zeros(10, dtype=torch.long))
    assert make_task(train_data=small).fingerprint() != tiny_task.fingerprint()
