"""The user's Task: model factory, data, loss, metric, optimizer and baseline recipe."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoaccel.errors import AutoaccelError, describe
from autoaccel.metrics import MetricFn, resolve_metric

OptimizerFactory = Callable[[Any, float], torch.optim.Optimizer]


def default_loss() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return nn.CrossEntropyLoss()


def sgd_momentum(params: Any, lr: float) -> torch.optim.Optimizer:
    """The default optimizer: SGD with momentum 0.9, the most common baseline recipe."""
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


@dataclass
class Task:
    """Everything autoaccel needs to train, evaluate and time a model.

    ``model`` is a factory: each trial builds a fresh model. Datasets are map-style datasets of
    ``(input, target)``. ``epochs``, ``batch_size`` and ``lr`` are the user's own recipe: the baseline every
    candidate is compared against.
    """

    model: Callable[..., nn.Module]
    train_data: Any
    val_data: Any
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = dataclasses.field(default_factory=default_loss)
    metric: str | MetricFn = "accuracy"
    optimizer: OptimizerFactory = sgd_momentum
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    student: Callable[..., nn.Module] | None = None
    weights: str | None = None
    example_input: torch.Tensor | None = None
    name: str = "task"
    seed: int = 0
    # The rest of the user's recipe, when they use it (the baseline trial runs exactly that recipe):
    grad_clip: float | None = None  # clip the gradients' global norm to this before every optimizer step
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None  # the user's LR scheduler, built on the optimizer
    scheduler_interval: str = "epoch"  # when the user's scheduler steps: after every "epoch" or every optimizer "step"
    accumulate: int = 1  # gradient accumulation: an optimizer step every this many batches
    shuffle: bool = True  # False: training batches in dataset order (a model that carries state between batches)
    on_epoch: Callable[[nn.Module, int], None] | None = None  # called with (model, epoch) before each epoch

    def metric_fn(self) -> MetricFn:
        return resolve_metric(self.metric)

    def fingerprint(self) -> str:
        """A short hash of what defines the task's training (used to key caches and studies)."""
        parts = [
            self.name,
            _qualname(self.model),
            _qualname(self.optimizer),
            _qualname(self.loss),
            str(self.metric) if isinstance(self.metric, str) else _qualname(self.metric),
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
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# Names a user's own file is imported under: they depend on how it was loaded (``autoaccel optimize`` imports
# model.py under a generated name, a script runs as __main__, a spawned worker as __mp_main__), not on the task.
USER_MODULES = ("autoaccel_user_", "__main__", "__mp_main__")


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
            f"Task.{field}: expected a map-style dataset (with __getitem__ and __len__) of (input, target), "
            f"but got {type(value).__name__}"
        )
    if len(value) == 0:
        raise AutoaccelError(f"Task.{field}: the dataset is empty; it needs at least one (input, target) sample")
    try:
        sample = value[0]
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as one line
        raise AutoaccelError(f"Task.{field}: reading item 0 failed: {describe(exc)}") from exc
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
        raise AutoaccelError(
            f"Task.{field}: each item must be an (input, target) pair, but item 0 is {type(sample).__name__}"
        )


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
    if task.on_epoch is not None and not callable(task.on_epoch):
        raise AutoaccelError(f"Task.on_epoch: expected a callable (model, epoch) -> None, but got {type(task.on_epoch).__name__}")


def validate_task(task: Any, source: str = "task") -> Task:
    """Check every field of ``task`` and run one tiny forward and loss; raise one clear line on the first fault."""
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
    if not callable(task.loss):
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
    metric = task.metric_fn()
    try:
        model = task.model()
    except Exception as exc:  # noqa: BLE001
        raise AutoaccelError(f"Task.model: calling the factory failed: {describe(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise AutoaccelError(f"Task.model: the factory must return a torch.nn.Module, but returned {type(model).__name__}")
    _dry_run(task, model, metric)
    return task


def _dry_run(task: Task, model: nn.Module, metric: MetricFn) -> None:
    """Forward two training samples, compute loss and metric: shape mistakes surface here, not in trial 5."""
    n = min(2, len(task.train_data))
    try:
        batch = torch.utils.data.default_collate([task.train_data[i] for i in range(n)])
    except Exception as exc:  # noqa: BLE001
        raise AutoaccelError(f"Task.train_data: items cannot be batched together: {describe(exc)}") from exc
    inputs, targets = batch
    shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
    model.eval()
    try:
        # The model's and libraries' warnings show up in each trial's record; here they would only be noise.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outputs = model(inputs)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AutoaccelError(
            f"Task.model: forward failed on a batch of train_data with input shape {shape}: {type(exc).__name__}: {msg}"
        ) from exc
    try:
        task.loss(outputs, targets)
    except Exception as exc:  # noqa: BLE001
        out_shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        target_shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AutoaccelError(
            f"Task.loss: failed on model outputs of shape {out_shape} and targets of shape {target_shape}: {msg}"
        ) from exc
    try:
        value = metric(outputs, targets)
        float(value)
    except Exception as exc:  # noqa: BLE001
        raise AutoaccelError(f"Task.metric: failed on model outputs: {describe(exc)}") from exc
