"""Test material shared by the suite: a tiny real task on scikit-learn's digits, and writers of model.py files.

It lives in a plain module (not conftest.py) so a Task built from it pickles by reference, the way a user's own
importable module would, and the spawned trial worker can import it back.
"""

from __future__ import annotations

import functools
import math
import string
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Pipeline, Strategy, Task
from autoaccel.trial._run import TrialResult, run_trial

TASK_NAME = "tiny"
BATCH_SIZE = 32
TIMING_BUDGET_S = 0.02  # seconds per timing figure: enough to exercise the harness, not to rank anything


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


def base_plan(task: Task, device: str = "cpu") -> Pipeline:
    """The user's own recipe as a plan, the way the search builds trial 0."""
    return Pipeline(device=device, batch_size=task.batch_size, lr=task.lr, epochs=task.epochs)


@functools.lru_cache(maxsize=1)
def builtin_strategies() -> dict[str, Strategy]:
    """The strategies autoaccel ships (entry points of the `autoaccel` distribution itself), by name."""
    from autoaccel.plugin._registry import default_registry

    registry = default_registry()
    return {name: s for name, s in registry.strategies.items() if registry.origins[name] == "autoaccel"}


def with_params(plan: Pipeline, params: Mapping[str, Any]) -> Pipeline:
    """``plan`` with settings ``{"<strategy>.<param>": value}`` applied by the built-in strategies, in their
    declared order, exactly as a trial applies the parameters Optuna suggested."""
    from autoaccel.plugin._strategy import apply_all

    return apply_all(list(builtin_strategies().values()), plan, params)


def train_with(task: Task, plan: Pipeline) -> TrialResult:
    """Run one real trial in this process (train, evaluate, time) and check it produced sane metrics."""
    result = run_trial(task, plan, seed=0, timing_budget_s=TIMING_BUDGET_S)
    assert set(result.metrics) >= {"accuracy", "train_time", "latency", "throughput", "memory"}
    assert all(math.isfinite(v) for v in result.metrics.values()), result.metrics
    assert math.isfinite(float(result.details["train_loss"])), result.details
    assert result.details["train_steps"] == plan.epochs * -(-len(task.train_data) // plan.batch_size)
    return result


def slow_training_source(step_sleep_s: float, epochs: int = 1) -> str:
    """The tiny task's model.py with a model that sleeps ``step_sleep_s`` per training step (45 steps an epoch):
    a trial that takes seconds while mostly waiting, so a kill lands mid-trial and several workers overlap on
    two cores."""
    return task_source(
        prelude=f'''
            class SlowToTrain(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

                def forward(self, x):
                    if self.training:
                        time.sleep({step_sleep_s})
                    return self.net(x)
        ''',
        model="SlowToTrain()",
        epochs=str(epochs),
    )
