"""Test material shared by the suite: a tiny real task on scikit-learn's digits, and writers of model.py files.

It lives in a plain module (not conftest.py) so a Task built from it pickles by reference, the way a user's own
importable module would, and the spawned trial worker can import it back.
"""

from __future__ import annotations

import functools
import string
import textwrap
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Task

TASK_NAME = "tiny"
BATCH_SIZE = 32


@functools.lru_cache(maxsize=1)
def digits_datasets() -> tuple[TensorDataset, TensorDataset]:
    """The 1,797 digits as 64 features in [0, 1]; every 5th sample is validation (all classes on both sides)."""
    x, y = load_digits(return_X_y=True)
    inputs = torch.tensor(x, dtype=torch.float32) / 16.0
    targets = torch.tensor(y, dtype=torch.long)
    val = torch.arange(len(targets)) % 5 == 0
    return TensorDataset(inputs[~val], targets[~val]), TensorDataset(inputs[val], targets[val])


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def make_task(**changes: Any) -> Task:
    """The tiny digits task (1 epoch, batch 32): real data, a model that trains in well under a second."""
    train_data, val_data = digits_datasets()
    fields: dict[str, Any] = dict(model=make_mlp, train_data=train_data, val_data=val_data, epochs=1,
                                  batch_size=BATCH_SIZE, lr=0.1, name=TASK_NAME)
    fields.update(changes)
    return Task(**fields)


# A model.py as a user writes it. Every $field has a working default (see DEFAULT_FIELDS); bad-input tests
# replace one field at a time.
TASK_TEMPLATE = string.Template(
    '''\
import time

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Task
$prelude


def digits():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y, dtype=torch.long)
    val = torch.arange(len(y)) % 5 == 0
    return TensorDataset(x[~val], y[~val]), TensorDataset(x[val], y[val])


def make_model():
    return $model


train_data, val_data = digits()
task = Task(model=make_model, train_data=$train_data, val_data=$val_data, metric=$metric,
            epochs=$epochs, batch_size=32, lr=0.1, name="$name")
$epilogue
'''
)

DEFAULT_FIELDS: dict[str, str] = {
    "prelude": "",
    "model": "nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))",
    "train_data": "train_data",
    "val_data": "val_data",
    "metric": '"accuracy"',
    "epochs": "1",
    "name": TASK_NAME,
    "epilogue": "",
}


def task_source(**fields: str) -> str:
    """The tiny task's model.py with some template fields replaced (multi-line fields are dedented)."""
    unknown = set(fields) - set(DEFAULT_FIELDS)
    if unknown:
        raise KeyError(f"unknown template fields {sorted(unknown)}; known: {sorted(DEFAULT_FIELDS)}")
    values = {**DEFAULT_FIELDS, **{k: textwrap.dedent(v).strip("\n") for k, v in fields.items()}}
    return TASK_TEMPLATE.substitute(values)


def write_model(directory: Path, source: str, name: str = "model.py") -> Path:
    """Write ``source`` (dedented) as ``directory/name`` and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path
