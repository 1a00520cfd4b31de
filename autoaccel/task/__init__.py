"""The user's side: the Task, loading model.py, batches and steps, metrics, the validation share, the target.

Everything here reads the user's own objects and says what is wrong with them in one line; nothing here
knows about strategies or the search.
"""

from autoaccel.task import _target as target
from autoaccel.task import _val_share as val_share
from autoaccel.task._batches import call, evaluating, features, map_tensors, move, prediction, size, split, with_prediction
from autoaccel.task._data import eval_batches, materialize, sample_batch, targets_of, train_batches
from autoaccel.task._loading import load_task
from autoaccel.task._metrics import Metric, Shown, custom_metric, paired_drop, ratio_of_sums
from autoaccel.task._steps import BaseLoss, evaluation_batch, training_loss, watching
from autoaccel.task._target import Target, autoaccel_detect_target, hypothetical_target
from autoaccel.task._task import Task, sgd_momentum, validate_task
from autoaccel.task._torchmetric import TorchMetric
from autoaccel.task._val_share import bound
from autoaccel.task._whole_set import JoinError, WholeSetMetric, check_batched, join

__all__ = [
    "BaseLoss",
    "JoinError",
    "Metric",
    "Shown",
    "Target",
    "Task",
    "TorchMetric",
    "WholeSetMetric",
    "autoaccel_detect_target",
    "bound",
    "call",
    "evaluating",
    "check_batched",
    "custom_metric",
    "eval_batches",
    "evaluation_batch",
    "features",
    "hypothetical_target",
    "join",
    "load_task",
    "map_tensors",
    "materialize",
    "move",
    "paired_drop",
    "prediction",
    "ratio_of_sums",
    "sample_batch",
    "sgd_momentum",
    "size",
    "split",
    "target",
    "targets_of",
    "train_batches",
    "training_loss",
    "val_share",
    "validate_task",
    "watching",
    "with_prediction",
]
