"""How a batch becomes a loss in training and outputs in evaluation (task/_steps.py): the task's kind and default
metric, the kind's loss, the Task's loss, and the user's own training_step / evaluation_step, on real digits
batches through the tiny MLP."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from autoaccel.task import Task
from autoaccel.task._batches import Arguments, collate
from autoaccel.task._metrics import IGNORE_INDEX
from autoaccel.task._steps import (
    BaseLoss,
    default_metric,
    evaluation_batch,
    infer_kind,
    kind_loss,
    task_loss,
    training_loss,
    watching,
)
from tiny_digits import digits_datasets, make_mlp


def as_is(batch: Any) -> Any:
    return batch


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight real digits and their labels."""
    return collate(digits_datasets()[0], range(8))


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return make_mlp()


def test_the_kind_is_read_from_the_targets_and_the_prediction() -> None:
    logits = torch.zeros(4, 10)
    assert infer_kind(logits, torch.tensor([1, 2, 3, 4])) == "classification"
    assert infer_kind(torch.zeros(4, 1), torch.tensor([[0.5], [1.0], [2.0], [3.0]])) == "regression"
    assert infer_kind(torch.zeros(4, 7, 100), torch.zeros(4, 7, dtype=torch.long)) == "sequence"  # a class per token
    assert infer_kind(torch.zeros(4, 7), torch.zeros(4, 7, dtype=torch.long)) == "classification"  # multi-label ids
    assert infer_kind(logits, None) == "generative"
    assert infer_kind(logits, [1, 2, 3, 4]) == "generative"  # not a tensor: nothing to compare with


@pytest.mark.parametrize("kind, own, metric", [
    ("classification", True, "accuracy"), ("classification", False, "accuracy"),
    ("regression", True, "mse"), ("regression", False, "mse"),
    ("sequence", True, "perplexity"), ("sequence", False, "loss"),  # perplexity only of a cross-entropy loss
    ("generative", True, "loss"), ("generative", False, "loss"),
])
def test_each_kind_is_judged_by_its_own_default_metric(kind: str, own: bool, metric: str) -> None:
    assert default_metric(kind, own) == metric


def test_a_model_that_computed_its_loss_is_trained_on_it() -> None:
    own = torch.tensor(1.25)
    assert kind_loss({"logits": torch.zeros(2, 3), "loss": own}, torch.tensor([0, 1])) is own
    assert kind_loss({"logits": torch.zeros(2, 3), "loss": own}, None) is own


def test_data_without_a_target_and_a_model_without_a_loss_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="the model computed no loss and the data has no target: set Task.loss"):
        kind_loss(torch.zeros(2, 3), None)


def test_class_targets_take_cross_entropy_and_real_valued_ones_mean_squared_error(
        batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> None:
    inputs, labels = batch
    logits = model(inputs)
    assert torch.allclose(kind_loss(logits, labels), nn.functional.cross_entropy(logits, labels))
    prediction = torch.tensor([[1.0], [2.0], [4.0]])
    targets = torch.tensor([1.0, 2.0, 3.0])  # one value per sample: the prediction's (n, 1) is read as (n,)
    assert kind_loss(prediction, targets).item() == pytest.approx(1.0 / 3.0)


def test_padded_token_positions_do_not_count_in_the_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    tokens = torch.randint(0, 11, (2, 5))
    padded = tokens.clone()
    padded[:, 3:] = IGNORE_INDEX
    expected = nn.functional.cross_entropy(logits[:, :3].reshape(-1, 11), tokens[:, :3].reshape(-1))
    assert torch.allclose(kind_loss(logits, padded), expected)
    # A model's (output, hidden) tuple: its first item is the prediction.
    assert torch.allclose(kind_loss((logits, torch.zeros(1)), padded), expected)


def test_the_tasks_loss_compares_outputs_with_targets_or_with_inputs_when_there_are_none() -> None:
    seen: list[tuple[Any, Any]] = []

    def loss(outputs: Any, reference: Any) -> torch.Tensor:
        seen.append((outputs, reference))
        return torch.tensor(0.5)

    task = Task(model=make_mlp, train_data=[], val_data=[], loss=loss)
    outputs, targets, inputs = torch.ones(2), torch.zeros(2), torch.full((2,), 3.0)
    task_loss(task, outputs, targets, inputs)
    task_loss(task, outputs, None, inputs)  # an autoencoder compares with its input
    assert seen[0][1] is targets and seen[1][1] is inputs
    plain = Task(model=make_mlp, train_data=[], val_data=[])
    assert torch.allclose(task_loss(plain, torch.zeros(2, 3), torch.tensor([0, 2]), None),
                          nn.functional.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 2])))


def test_the_base_loss_is_the_tasks_unless_the_users_step_gave_one() -> None:
    task = Task(model=make_mlp, train_data=[], val_data=[])
    base = BaseLoss(task)
    logits, labels = torch.zeros(2, 3), torch.tensor([0, 1])
    assert torch.allclose(base(logits, labels, None), nn.functional.cross_entropy(logits, labels))
    base.given = torch.tensor(7.0)
    assert base(logits, labels, None) is base.given


def test_watching_sees_the_last_call_of_the_model_and_stops_at_the_end_of_the_block(model: nn.Module) -> None:
    first, last = torch.zeros(1, 64), torch.ones(3, 64)
    with watching(model) as seen:
        model(first)
        out = model(input=last)  # keyword arguments are seen too
    assert isinstance(seen.inputs, Arguments) and seen.inputs.args == () and seen.inputs.kwargs["input"] is last
    assert seen.outputs is out
    model(first)  # after the block: not watched any more
    assert seen.inputs.kwargs["input"] is last and seen.outputs is out
    assert not model._forward_hooks


def test_the_default_training_step_splits_prepares_and_calls_the_model(
        batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> None:
    task = Task(model=make_mlp, train_data=[], val_data=[])
    base = BaseLoss(task)
    prepared: list[torch.Tensor] = []

    def prepare(inputs: torch.Tensor) -> torch.Tensor:
        prepared.append(inputs)
        return inputs * 0.5

    loss = training_loss(task, base, base, model, batch, prepare)
    inputs, labels = batch
    assert len(prepared) == 1 and prepared[0] is inputs  # only the inputs are prepared, not the labels
    assert torch.allclose(loss, nn.functional.cross_entropy(model(inputs * 0.5), labels))


def test_the_users_training_step_gives_the_loss(batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> None:
    def step(m: nn.Module, b: Any) -> torch.Tensor:
        x, y = b
        return nn.functional.cross_entropy(m(x), y) * 2.0

    task = dataclasses.replace(Task(model=make_mlp, train_data=[], val_data=[]), training_step=step)
    base = BaseLoss(task)
    loss = training_loss(task, base, base, model, batch, as_is)
    assert torch.allclose(loss, step(model, batch))
    loss.backward()  # a loss that trains the model
    assert all(p.grad is not None for p in model.parameters())


def test_a_strategy_that_changes_the_loss_sees_the_outputs_and_inputs_of_the_users_step(
        batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> None:
    def step(m: nn.Module, b: Any) -> torch.Tensor:
        x, y = b
        return nn.functional.cross_entropy(m(x), y)

    task = dataclasses.replace(Task(model=make_mlp, train_data=[], val_data=[]), training_step=step)
    base = BaseLoss(task)
    seen: dict[str, Any] = {}

    def wrapped(outputs: Any, targets: Any, inputs: Any) -> torch.Tensor:
        # As distillation does: the task's part, plus a term of its own on the step's outputs.
        seen.update(outputs=outputs, targets=targets, inputs=inputs)
        return base(outputs, targets, inputs) + 10.0

    loss = training_loss(task, wrapped, base, model, batch, as_is)
    assert torch.allclose(loss, step(model, batch) + 10.0)
    assert seen["targets"] is None and seen["inputs"].args[0] is batch[0]
    assert torch.allclose(seen["outputs"], model(batch[0]))
    assert base.given is None  # the step's loss is not left behind for the next batch


def test_a_changed_loss_needs_a_users_step_that_calls_the_model(batch: tuple[torch.Tensor, torch.Tensor],
                                                               model: nn.Module) -> None:
    task = dataclasses.replace(Task(model=make_mlp, train_data=[], val_data=[]),
                               training_step=lambda m, b: torch.tensor(1.0, requires_grad=True))
    base = BaseLoss(task)
    with pytest.raises(RuntimeError, match="the training_step never called the model it was given"):
        training_loss(task, lambda o, t, i: base(o, t, i) * 2, base, model, batch, as_is)


def test_the_default_evaluation_step_returns_outputs_targets_and_the_loss_when_asked(
        batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> None:
    task = Task(model=make_mlp, train_data=[], val_data=[])
    inputs, labels = batch
    with torch.no_grad():
        got = evaluation_batch(task, model, batch, as_is, with_loss=True)
        plain = evaluation_batch(task, model, batch, as_is, with_loss=False)
    assert torch.allclose(got.outputs, model(inputs)) and got.targets is labels and got.reference is labels
    assert got.loss is not None and torch.allclose(got.loss, nn.functional.cross_entropy(model(inputs), labels))
    assert plain.loss is None and plain.value is None


def test_a_batch_without_targets_is_compared_with_its_inputs(model: nn.Module) -> None:
    inputs = torch.rand(4, 64)
    autoencoder = nn.Linear(64, 64)
    task = Task(model=make_mlp, train_data=[], val_data=[], loss=nn.functional.mse_loss)
    got = evaluation_batch(task, autoencoder, inputs, as_is, with_loss=True)
    assert got.targets is None and got.reference is inputs
    assert got.loss is not None and torch.allclose(got.loss, nn.functional.mse_loss(autoencoder(inputs), inputs))
    assert not got.loss.requires_grad  # evaluation keeps no graph


@pytest.mark.parametrize("value", [0.75, torch.tensor(0.75)])
def test_a_users_evaluation_step_may_return_the_batchs_metric_value(batch: tuple[torch.Tensor, torch.Tensor],
                                                                   model: nn.Module, value: Any) -> None:
    task = dataclasses.replace(Task(model=make_mlp, train_data=[], val_data=[]), evaluation_step=lambda m, b: value)
    got = evaluation_batch(task, model, batch, as_is, with_loss=True)
    assert got.value == pytest.approx(0.75) and got.outputs is None and got.loss is None


def test_a_users_evaluation_step_returning_outputs_and_targets_is_scored_like_the_default(
        batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> None:
    def step(m: nn.Module, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = b
        return m(x), y

    task = dataclasses.replace(Task(model=make_mlp, train_data=[], val_data=[]), evaluation_step=step)
    prepared: list[Any] = []

    def prepare(b: Any) -> Any:
        prepared.append(b)
        return b

    with torch.no_grad():
        got = evaluation_batch(task, model, batch, prepare, with_loss=True)
    assert prepared == [batch]  # the user's step is given the whole batch, prepared
    assert got.targets is batch[1] and got.loss is not None
    assert torch.allclose(got.loss, nn.functional.cross_entropy(model(batch[0]), batch[1]))


def test_a_users_evaluation_step_returning_anything_else_is_a_clear_error(batch: tuple[torch.Tensor, torch.Tensor],
                                                                          model: nn.Module) -> None:
    task = dataclasses.replace(Task(model=make_mlp, train_data=[], val_data=[]),
                               evaluation_step=lambda m, b: {"outputs": m(b[0])})
    with pytest.raises(TypeError, match=r"must return \(outputs, targets\) or a number, but returned dict"):
        evaluation_batch(task, model, batch, as_is, with_loss=False)
