"""How a batch becomes a loss in training and outputs in evaluation: the defaults, or the user's own steps.

By default a batch is split into inputs and target (``batches.split``), the model is called on the inputs, and
the loss is the Task's, else the one the model computed (a Hugging Face model given ``labels``), else the kind's
own (cross-entropy for class or token targets, mean squared error for real-valued ones). A Task may instead
give ``training_step(model, batch) -> loss`` and ``evaluation_step(model, batch) -> (outputs, targets)`` (or a
metric value of the batch), in the spirit of Lightning's steps: a model called with carried state, a
(seq, batch) layout, several losses. Strategies still act around them: the core runs a user step under the
plan's autocast and loss scaling, and a strategy that changes the loss (distillation) sees the outputs and
inputs of the step's model call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoaccel.task._batches import Arguments, Batch, call, own_loss, prediction, split
from autoaccel.task._metrics import IGNORE_INDEX

KINDS = ("classification", "regression", "sequence", "generative")
TrainingStep = Callable[[nn.Module, Batch], torch.Tensor]
# Given the model as evaluation runs it (evaluation_batch's ``model``: a Module, or a callable wrapping one).
EvaluationStep = Callable[[Callable[..., Any], Batch], Any]


def infer_kind(predicted: torch.Tensor, targets: Any) -> str:
    """The task's kind from its targets and the model's prediction: no target is generative (unsupervised);
    real-valued targets are regression; integer ones are per-token (sequence) when the prediction has a class
    axis beyond targets of two or more dimensions, else classification."""
    if targets is None or not isinstance(targets, torch.Tensor):
        return "generative"
    if targets.is_floating_point():
        return "regression"
    if targets.ndim >= 2 and predicted.ndim == targets.ndim + 1:
        return "sequence"
    return "classification"


def default_metric(kind: str, own_loss_used: bool) -> str:
    """The metric a kind is judged by unless the Task names one: a sequence model's perplexity when its loss is
    the default cross-entropy (or the model's own, which for a language model is), its loss otherwise."""
    return {"classification": "accuracy", "regression": "mse",
            "sequence": "perplexity" if own_loss_used else "loss"}.get(kind, "loss")


def kind_loss(outputs: Any, targets: Any) -> torch.Tensor:
    """The loss of a kind when the Task gives none: the model's own, else cross-entropy (class or token
    targets, padding at IGNORE_INDEX skipped) or mean squared error (real-valued targets)."""
    own = own_loss(outputs)
    if own is not None:
        return own
    if targets is None:
        raise ValueError("the model computed no loss and the data has no target: set Task.loss (called with "
                         "(outputs, inputs)) or Task.training_step")
    pred = prediction(outputs)
    if targets.is_floating_point():
        return nn.functional.mse_loss(pred.float().reshape(targets.shape) if pred.numel() == targets.numel() else pred.float(),
                                      targets.float())
    if pred.ndim >= 2 and pred.shape[:-1] == targets.shape and pred.ndim > 2:
        return nn.functional.cross_entropy(pred.float().reshape(-1, pred.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    return nn.functional.cross_entropy(pred.float(), targets, ignore_index=IGNORE_INDEX)


def task_loss(task: Any, outputs: Any, targets: Any, inputs: Any) -> torch.Tensor:
    """The Task's loss of a batch: ``Task.loss(outputs, targets)`` (``(outputs, inputs)`` for data without a
    target, as an autoencoder compares with its input), else the kind's (``kind_loss``)."""
    if task.loss is not None:
        return task.loss(outputs, targets if targets is not None else inputs)
    return kind_loss(outputs, targets)


class BaseLoss:
    """The loss a training step starts from, as ``TrainingSetup.loss``: the Task's loss of (outputs, targets,
    inputs), or, under the user's training_step, the loss that step returned (``given``). A strategy that changes
    the loss wraps this and calls it for the task's part."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.given: torch.Tensor | None = None

    def __call__(self, outputs: Any, targets: Any, inputs: Any) -> torch.Tensor:
        if self.given is not None:
            return self.given
        return task_loss(self.task, outputs, targets, inputs)


@dataclass
class Seen:
    """The last call of a model during a user's step: its arguments and outputs."""

    inputs: Arguments | None = None
    outputs: Any = None


@contextlib.contextmanager
def watching(model: nn.Module) -> Iterator[Seen]:
    """Record the arguments and outputs of ``model``'s calls while the block runs (a forward hook)."""
    seen = Seen()

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        seen.inputs, seen.outputs = Arguments(tuple(args), dict(kwargs)), output

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def training_loss(task: Any, loss: Callable[[Any, Any, Any], torch.Tensor], base: BaseLoss, model: nn.Module,
                  batch: Batch, prepare: Callable[[Batch], Batch]) -> torch.Tensor:
    """One training batch's loss: the default step (split, call, ``loss``), or the user's step. When a strategy
    wrapped the ``base`` loss (``loss`` is not ``base``), the step's loss goes through the wrapper as the task's
    part, with the outputs and inputs of the step's last model call."""
    step: TrainingStep | None = getattr(task, "training_step", None)
    if step is None:
        inputs, targets = split(batch)
        inputs = prepare(inputs)
        return loss(call(model, inputs), targets, inputs)
    if loss is base:
        return step(model, prepare(batch))
    with watching(model) as seen:
        given = step(model, prepare(batch))
    if seen.outputs is None:
        raise RuntimeError("the training_step never called the model it was given, so this plan's change of the loss "
                           "has no outputs to act on")
    base.given = given
    try:
        return loss(seen.outputs, None, seen.inputs)
    finally:
        base.given = None


@dataclass
class EvaluatedBatch:
    """One validation batch evaluated: the model's outputs as it returned them (a tensor, tuple, dict or
    ModelOutput), the targets (None for data without one), the loss when asked for, and ``value`` when the user's
    evaluation_step returned the batch's metric value instead of outputs."""

    outputs: Any = None
    targets: Any = None
    loss: torch.Tensor | None = None
    value: float | None = None
    inputs: Any = None

    @property
    def reference(self) -> Any:
        """What the outputs are compared with, as the loss receives it: the targets, else the inputs (an
        autoencoder's, a VAE's)."""
        return self.targets if self.targets is not None else self.inputs


def evaluation_batch(task: Any, model: Callable[..., Any], batch: Batch, prepare: Callable[[Batch], Batch],
                     with_loss: bool) -> EvaluatedBatch:
    """One validation batch through the default step or the user's evaluation_step."""
    step: EvaluationStep | None = getattr(task, "evaluation_step", None)
    if step is None:
        inputs, targets = split(batch)
        inputs = prepare(inputs)
        outputs = call(model, inputs)
    else:
        got = step(model, prepare(batch))
        if isinstance(got, (int, float)) or (isinstance(got, torch.Tensor) and got.ndim == 0):
            return EvaluatedBatch(value=float(got))
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise TypeError(f"Task.evaluation_step must return (outputs, targets) or a number, but returned {type(got).__name__}")
        outputs, targets = got
        inputs = None
    loss = task_loss(task, outputs, targets, inputs).detach() if with_loss else None
    return EvaluatedBatch(outputs, targets, loss, None, inputs)
