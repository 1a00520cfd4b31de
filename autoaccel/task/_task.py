"""The user's Task: model factory, data, loss, metric, optimizer and baseline recipe."""

from __future__ import annotations

import hashlib
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from autoaccel.errors import AutoaccelError, TaskWarning, describe
from autoaccel.task._batches import call, collate, map_tensors, prediction, size, split
from autoaccel.task._batches import describe as describe_batch
from autoaccel.task._metrics import Metric, resolve_metric
from autoaccel.task._steps import KINDS, default_metric, evaluation_batch, infer_kind, task_loss

OptimizerFactory = Callable[[Any, float], torch.optim.Optimizer]


def sgd_momentum(params: Any, lr: float) -> torch.optim.Optimizer:
    """The default optimizer: SGD with momentum 0.9, the most common baseline recipe."""
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


@dataclass
class Task:
    """Everything autoaccel needs to train, evaluate and time a model.

    ``model`` is a factory: each trial builds a fresh model. Datasets are map-style datasets whose items are
    ``(input, target)`` pairs, dicts of the model's keyword arguments (``labels`` the target), or lone inputs
    (no target); see autoaccel.task._batches. ``epochs``, ``batch_size`` and ``lr`` are the user's own recipe: the
    baseline every candidate is compared against.

    ``loss`` (None: the model's own loss, else cross-entropy for class or token targets, MSE for real-valued
    ones), ``metric`` (None: by the task's kind) with ``direction`` for a callable, and ``kind`` (None: inferred
    from the data and outputs) say what the task is; ``training_step`` and ``evaluation_step`` replace the
    default steps for models called in their own way (autoaccel.task._steps).
    """

    model: Callable[..., nn.Module]
    train_data: Any
    val_data: Any
    loss: Callable[[Any, Any], torch.Tensor] | None = None
    metric: Any = None  # a name, a callable (outputs, targets) -> float, or a torchmetrics Metric
    optimizer: OptimizerFactory = sgd_momentum
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    student: Callable[..., nn.Module] | None = None
    weights: str | None = None
    example_input: Any = None  # one input of batch 1 (a tensor, a tuple of model arguments or a dict of them)
    name: str = "task"
    seed: int = 0
    # The rest of the user's recipe, when they use it (the baseline trial runs exactly that recipe):
    grad_clip: float | None = None  # clip the gradients' global norm to this before every optimizer step
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None  # the user's LR scheduler, built on the optimizer
    scheduler_interval: str = "epoch"  # when the user's scheduler steps: after every "epoch" or every optimizer "step"
    accumulate: int = 1  # gradient accumulation: an optimizer step every this many batches
    shuffle: bool = True  # False: training batches in dataset order (a model that carries state between batches)
    on_epoch: Callable[[nn.Module, int], None] | None = None  # called with (model, epoch) before each epoch
    # What the task is and how its model is called, when the defaults do not say it (fields added last, so a Task
    # built positionally keeps its meaning):
    direction: str | None = None  # of a callable metric: "maximize" (the default) or "minimize"
    kind: str | None = None  # classification, regression, sequence or generative; None: inferred by validate_task
    training_step: Callable[[nn.Module, Any], torch.Tensor] | None = None  # (model, batch) -> loss
    evaluation_step: Callable[[nn.Module, Any], Any] | None = None  # (model, batch) -> (outputs, targets) | value
    # How a callable metric is reduced: "whole" (None, the default: called once on the whole validation set's
    # outputs, as scikit-learn's scorers are) or "mean" (called per batch and averaged, weighted by batch size).
    metric_reduction: str | None = None

    def metric_fn(self) -> Any:
        """The task's metric (metrics.resolve_metric): the one it names, else its kind's (steps.default_metric)."""
        if self.metric is None:
            return resolve_metric(default_metric(self.resolved_kind(), self.loss is None and self.training_step is None))
        return resolve_metric(self.metric, self.direction, self.metric_reduction)

    def _default_part(self, value: Any, classification: str) -> str:
        if value is None:
            return classification if self.resolved_kind() == "classification" else f"auto:{self.resolved_kind()}"
        return value if isinstance(value, str) else value.name if isinstance(value, Metric) else _qualname(value)

    def resolved_kind(self) -> str:
        """``kind``, or the kind inferred from one small batch through a fresh model (then remembered on the
        Task: a worker that re-imports the user's file infers it again, the same way)."""
        if self.kind is None:
            model = self.model()
            model.eval()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                batch = collate(self.train_data, range(min(2, len(self.train_data))))
                got = evaluation_batch(self, model, batch, lambda inputs: inputs, with_loss=False)
            # A metric value per batch from the user's evaluation_step leaves nothing to tell the kind from.
            self.kind = "generative" if got.value is not None or got.outputs is None else \
                infer_kind(prediction(got.outputs), got.targets)
        return self.kind

    def fingerprint(self) -> str:
        """A short hash of what defines the task's training (used to key caches and studies)."""
        parts = [
            self.name,
            _qualname(self.model),
            # The default spelled by its public name: keys stay what they were before the modules moved.
            "autoaccel.task.sgd_momentum" if self.optimizer is sgd_momentum else _qualname(self.optimizer),
            # The defaults are spelled as the classification defaults they are (cross-entropy, accuracy), so a
            # classifier keeps the key it had when those were the Task's explicit defaults.
            self._default_part(self.loss, "torch.nn.modules.loss.CrossEntropyLoss"),
            self._default_part(self.metric, "accuracy"),
            *([f"direction={self.direction}"] if self.direction is not None else []),
            # A callable metric means the whole set's value unless reduced by batch mean (before: a batch mean).
            *([f"reduction={self.metric_reduction or 'whole'}"] if callable(self.metric) else []),
            str(self.epochs),
            str(self.batch_size),
            repr(self.lr),
            str(len(self.train_data)),
            str(len(self.val_data)),
            str(self.seed),
            # The rest of the recipe, only when set: a task without them keeps the key it always had.
            *([f"clip={self.grad_clip!r}"] if self.grad_clip is not None else []),
            *([f"sched={_qualname(self.scheduler)}@{self.scheduler_interval}"] if self.scheduler is not None else []),
            *([f"accumulate={self.accumulate}"] if self.accumulate != 1 else []),
            *(["in-order"] if not self.shuffle else []),
            *([f"on_epoch={_qualname(self.on_epoch)}"] if self.on_epoch is not None else []),
            *([f"steps={_qualname(self.training_step)},{_qualname(self.evaluation_step)}"]
              if self.training_step is not None or self.evaluation_step is not None else []),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# Names a user's own file is imported under: they depend on how it was loaded (``autoaccel optimize`` imports
# model.py under a generated name, a script runs as __main__, a spawned worker as __mp_main__), not on the task.
USER_MODULES = ("autoaccel_user_", "__main__", "__mp_main__")
DRY_RUN_VAL = 256  # validation samples a whole-set metric is tried on when the dry run's few samples do not suffice


def _qualname(obj: Any) -> str:
    """``module.qualname`` of a function, class or callable object; the module is left out for the user's own
    file, so the same task fingerprints alike whether it is run by the CLI, a script or a resumed study."""
    target = obj if (inspect.isfunction(obj) or inspect.isclass(obj)) else type(obj)
    module = str(getattr(target, "__module__", "?"))
    name = str(getattr(target, "__qualname__", repr(target)))
    return name if module.startswith(USER_MODULES) else f"{module}.{name}"


def _check_dataset(value: Any, field: str) -> None:
    if isinstance(value, torch.utils.data.IterableDataset) or not (
        hasattr(value, "__getitem__") and hasattr(value, "__len__")
    ):
        raise AutoaccelError(
            f"Task.{field}: expected a map-style dataset (with __getitem__ and __len__) of (input, target) pairs, "
            f"dicts or inputs, but got {type(value).__name__}"
        )
    if len(value) == 0:
        raise AutoaccelError(f"Task.{field}: the dataset is empty; it needs at least one item")
    try:
        sample = value[0]
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as one line
        raise AutoaccelError(f"Task.{field}: reading item 0 failed: {describe(exc)}") from exc
    if not (isinstance(sample, (torch.Tensor, np.ndarray, Mapping)) or (isinstance(sample, (tuple, list)) and 1 <= len(sample) <= 2)):
        raise AutoaccelError(f"Task.{field}: each item must be an (input, target) pair, a dict of model inputs or an input "
                             f"tensor, but item 0 is {type(sample).__name__}")


def _check_recipe(task: Task) -> None:
    clip = task.grad_clip
    if clip is not None and (not isinstance(clip, (int, float)) or isinstance(clip, bool) or not clip > 0):
        raise AutoaccelError(f"Task.grad_clip: expected a positive max gradient norm (e.g. 0.25) or None, but got {clip!r}")
    if task.scheduler is not None and not callable(task.scheduler):
        raise AutoaccelError("Task.scheduler: expected a callable optimizer -> LR scheduler (e.g. lambda opt: "
                             f"torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.7)), but got {type(task.scheduler).__name__}")
    if task.scheduler_interval not in ("epoch", "step"):
        raise AutoaccelError(f"Task.scheduler_interval: expected 'epoch' or 'step', but got {task.scheduler_interval!r}")
    if not isinstance(task.accumulate, int) or isinstance(task.accumulate, bool) or task.accumulate < 1:
        raise AutoaccelError(f"Task.accumulate: must be a positive integer (batches per optimizer step), but got {task.accumulate!r}")
    if not isinstance(task.shuffle, bool):
        raise AutoaccelError(f"Task.shuffle: expected True or False, but got {task.shuffle!r}")
    for field, signature in (("on_epoch", "(model, epoch) -> None"), ("training_step", "(model, batch) -> loss"),
                             ("evaluation_step", "(model, batch) -> (outputs, targets) or a number")):
        value = getattr(task, field)
        if value is not None and not callable(value):
            raise AutoaccelError(f"Task.{field}: expected a callable {signature}, but got {type(value).__name__}")
    if task.kind is not None and task.kind not in KINDS:
        raise AutoaccelError(f"Task.kind: expected one of {', '.join(KINDS)} (or None to infer it), but got {task.kind!r}")


def validate_task(task: Any, source: str = "task") -> Task:
    """Check every field of ``task`` and run one tiny forward and loss; raise one clear line on the first fault,
    warn (TaskWarning) on what runs but looks wrong."""
    if not isinstance(task, Task):
        raise AutoaccelError(
            f"{source}: `task` must be an autoaccel.Task (or a function returning one), but got {type(task).__name__}"
        )
    if not callable(task.model):
        raise AutoaccelError(f"Task.model: expected a callable returning a fresh nn.Module, but got {type(task.model).__name__}")
    for field in ("epochs", "batch_size"):
        value = getattr(task, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise AutoaccelError(f"Task.{field}: must be a positive integer, but got {value!r}")
    if not isinstance(task.lr, (int, float)) or isinstance(task.lr, bool) or not task.lr > 0:
        raise AutoaccelError(f"Task.lr: must be a positive number, but got {task.lr!r}")
    if not callable(task.optimizer):
        raise AutoaccelError(f"Task.optimizer: expected a callable (params, lr) -> Optimizer, but got {type(task.optimizer).__name__}")
    if task.loss is not None and not callable(task.loss):
        raise AutoaccelError(f"Task.loss: expected a callable (outputs, targets) -> loss tensor, but got {type(task.loss).__name__}")
    if task.student is not None and not callable(task.student):
        raise AutoaccelError(f"Task.student: expected a callable returning an nn.Module, but got {type(task.student).__name__}")
    if task.weights is not None and not isinstance(task.weights, str):
        raise AutoaccelError(f"Task.weights: expected a file path (str), but got {type(task.weights).__name__}")
    _check_recipe(task)
    if not isinstance(task.name, str) or not task.name.strip():
        raise AutoaccelError(f"Task.name: expected a non-empty string, but got {task.name!r}")
    _check_dataset(task.train_data, "train_data")
    _check_dataset(task.val_data, "val_data")
    if task.metric is not None:
        # A bad name, direction or reduction fails here, before any model is built.
        resolve_metric(task.metric, task.direction, task.metric_reduction)
    elif task.metric_reduction is not None:
        resolve_metric("accuracy", None, task.metric_reduction)  # a bad value is said even without a metric
    try:
        model = task.model()
    except Exception as exc:  # noqa: BLE001
        raise AutoaccelError(f"Task.model: calling the factory failed: {describe(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise AutoaccelError(f"Task.model: the factory must return a torch.nn.Module, but returned {type(model).__name__}")
    _dry_run(task, model)
    return task


def _dry_run(task: Task, model: nn.Module) -> None:
    """Forward a few training samples, compute loss and metric: shape mistakes surface here, not in trial 5;
    then look for silent nonsense (a batch axis the model does not treat as one)."""
    n = min(3, len(task.train_data))
    try:
        batch = collate(task.train_data, range(n))
        split(batch)
    except Exception as exc:  # noqa: BLE001
        raise AutoaccelError(f"Task.train_data: items cannot be batched together: {describe(exc)}") from exc
    shape = describe_batch(split(batch)[0])
    model.eval()
    # The model's and libraries' warnings show up in each trial's record; here they would only be noise.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task.training_step is not None:
            _check_training_step(task, model, batch, shape)
        outputs, targets = _dry_outputs(task, model, batch, shape)
        if outputs is None:
            task.kind = task.kind or "generative"
            return
        try:
            predicted = prediction(outputs)
        except ValueError as exc:
            raise AutoaccelError(f"Task.model: {exc}") from exc
        task.kind = task.kind or infer_kind(predicted, targets)
        metric = task.metric_fn()
        loss = None
        # The Task's loss is what trains the model, unless its own training step computes one; a metric of the
        # loss (loss, perplexity) needs it in evaluation either way.
        if task.training_step is None or metric.needs_loss:
            loss = _dry_loss(task, outputs, targets, predicted, batch)
        _try_metric(task, model, metric, outputs, targets, predicted, loss, batch)
        doubt = _batch_axis_doubt(model, batch, predicted) if task.evaluation_step is None else None
    if doubt is not None:  # warned outside the block above, which silences the model's own warnings
        warnings.warn(doubt, TaskWarning, stacklevel=3)


def _check_training_step(task: Task, model: nn.Module, batch: Any, shape: str) -> None:
    assert task.training_step is not None
    try:
        step_loss = task.training_step(model, batch)
    except Exception as exc:  # noqa: BLE001
        raise AutoaccelError(f"Task.training_step: failed on a batch of train_data {shape}: {describe(exc)}") from exc
    if not (isinstance(step_loss, torch.Tensor) and step_loss.numel() == 1):
        raise AutoaccelError(f"Task.training_step: must return the batch's loss as a one-element tensor, but returned "
                             f"{type(step_loss).__name__}")


def _dry_outputs(task: Task, model: nn.Module, batch: Any, shape: str) -> tuple[Any, Any]:
    """The outputs and targets of one batch, through the Task's evaluation_step or the model itself (outputs None:
    the step returned its metric's value, a generative task's way)."""
    try:
        if task.evaluation_step is not None:
            got = task.evaluation_step(model, batch)
            if not (isinstance(got, (int, float)) or (isinstance(got, torch.Tensor) and got.ndim == 0)
                    or (isinstance(got, (tuple, list)) and len(got) == 2)):
                raise TypeError(f"expected (outputs, targets) or a number, but it returned {type(got).__name__}")
            if isinstance(got, (tuple, list)):
                outputs, targets = got
                return outputs, targets
            return None, None
        inputs, targets = split(batch)
        return call(model, inputs), targets
    except Exception as exc:  # noqa: BLE001
        field = "evaluation_step" if task.evaluation_step is not None else "model"
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AutoaccelError(f"Task.{field}: forward failed on a batch of train_data with input shape {shape}: "
                             f"{type(exc).__name__}: {msg}") from exc


def _dry_loss(task: Task, outputs: Any, targets: Any, predicted: torch.Tensor, batch: Any) -> torch.Tensor:
    try:
        return task_loss(task, outputs, targets, split(batch)[0])
    except Exception as exc:  # noqa: BLE001
        target_shape = describe_batch(targets) if targets is not None else "none"
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AutoaccelError(f"Task.loss: failed on model outputs of shape {tuple(predicted.shape)} and targets of "
                             f"shape {target_shape}: {msg}") from exc


def _try_metric(task: Task, model: nn.Module, metric: Any, outputs: Any, targets: Any, predicted: torch.Tensor,
                loss: torch.Tensor | None, batch: Any) -> None:
    """The metric on the dry run's outputs, given as a trial gives them: a rows metric the prediction, a whole-set
    or torchmetrics metric the outputs as the model returned them and the targets (else the inputs) as the loss
    receives them. A whole-set scorer may need more than a few samples (AUROC of one class): on failure it is
    tried again on up to DRY_RUN_VAL validation samples before the error is said."""
    def attempt(outputs: Any, targets: Any, predicted: torch.Tensor, loss: torch.Tensor | None, batch: Any) -> None:
        if isinstance(metric, Metric):
            float(metric(predicted, targets, loss))
        else:
            float(metric(outputs, targets if targets is not None else split(batch)[0]))

    try:
        attempt(outputs, targets, predicted, loss, batch)
        return
    except Exception as exc:  # noqa: BLE001
        error = exc
    if not isinstance(metric, Metric) and task.evaluation_step is None:
        try:
            more = collate(task.val_data, range(min(DRY_RUN_VAL, len(task.val_data))))
            inputs, more_targets = split(more)
            more_outputs = call(model, inputs)
            attempt(more_outputs, more_targets, prediction(more_outputs), None, more)
            return
        except Exception:  # noqa: BLE001
            pass
    shape = tuple(predicted.shape)
    raise AutoaccelError(f"Task.metric: failed on model outputs of shape {shape} ({metric.name}): {describe(error)}") from error


def _batch_axis_doubt(model: nn.Module, batch: Any, predicted: torch.Tensor) -> str | None:
    """Why the model seems not to treat dim 0 as the batch, or None: its outputs have the batch elsewhere, or a
    sample's outputs change when another sample leaves the batch (a (seq, batch) model fed (batch, seq)
    batches runs, and trains on nonsense)."""
    n = size(batch)
    if n < 2:
        return None
    inputs = split(batch)[0]
    hint = ("a sequence-first (seq, batch) model fed batch-first batches? Transpose in the model, or give the Task a "
            "training_step and evaluation_step that call it as it expects")
    if predicted.ndim == 0 or predicted.shape[0] != n:
        if predicted.ndim >= 2 and predicted.shape[1] == n:
            return f"Task.model: outputs of shape {tuple(predicted.shape)} for a batch of {n} have the batch on dim 1, not 0: {hint}"
        return None
    if not torch.allclose(prediction(call(model, inputs)).float(), predicted.float(), rtol=1e-3, atol=1e-4):
        return None  # random even in eval mode (a VAE's sampling): the comparison below would say nothing
    alone = prediction(call(model, map_rows(inputs, slice(1, n))))
    if alone.shape == predicted[1:].shape and not torch.allclose(alone.float(), predicted[1:].float(), rtol=1e-3, atol=1e-4):
        return f"Task.model: a sample's outputs change when another sample leaves the batch, so the model mixes samples along dim 0 ({hint})"
    return None


def map_rows(batch: Any, rows: slice) -> Any:
    """The batch's samples ``rows`` (every tensor sliced along dim 0)."""
    return map_tensors(lambda t: t[rows] if t.ndim else t, batch)
