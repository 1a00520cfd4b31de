"""An MLP on scikit-learn's breast cancer data (569 tumours, 30 features, shipped offline), judged by balanced
accuracy: a metric of the whole validation set, written as people write it every day.

    autoaccel optimize examples/breast_cancer.py

``balanced_accuracy`` is a plain callable over ``(outputs, targets)``: the mean of the per-class recalls. It is
called once with the whole validation set's outputs, so it gives exactly scikit-learn's
``balanced_accuracy_score`` (a mean of per-batch values would not, and a batch without one class gives NaN).
"""

import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Task


def balanced_accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The mean over classes of the share of that class's samples predicted as it (per-class recall)."""
    predicted = outputs.argmax(dim=1)
    recalls = [(predicted[targets == c] == c).float().mean() for c in targets.unique()]
    return float(torch.stack(recalls).mean())


def datasets(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Standardised features (with the training split's mean and spread), 75/25, both classes on both sides."""
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8

    def tensors(x, y):  # type: ignore[no-untyped-def]
        return TensorDataset(torch.tensor((x - mean) / std, dtype=torch.float32), torch.tensor(y, dtype=torch.long))

    return tensors(x_train, y_train), tensors(x_val, y_val)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))


train_data, val_data = datasets()
task = Task(model=make_model, train_data=train_data, val_data=val_data, metric=balanced_accuracy,
            epochs=30, batch_size=32, lr=0.05, name="breast_cancer")
