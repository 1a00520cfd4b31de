"""A regression: an MLP predicting disease progression one year on from ten baseline measurements, on
scikit-learn's diabetes data (442 patients, shipped offline with scikit-learn).

Real-valued targets make it a regression: the default loss is mean squared error and the default metric MSE
(lower is better). A budget relative to the baseline's error reads naturally:

    autoaccel optimize examples/diabetes.py --trials 4 --max-quality-drop 2%
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Task


def mlp(width: float = 1.0) -> nn.Module:
    hidden = max(8, int(128 * width))
    return nn.Sequential(nn.Linear(10, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def diabetes_datasets(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Features standardised on the training split; the target (progression, 25 to 346) scaled to unit spread."""
    x, y = load_diabetes(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=seed)
    mean, std = x_train.mean(0), x_train.std(0)
    y_mean, y_std = y_train.mean(), y_train.std()

    def tensors(a, b):  # type: ignore[no-untyped-def]
        return TensorDataset(torch.tensor((a - mean) / std, dtype=torch.float32),
                             torch.tensor((b - y_mean) / y_std, dtype=torch.float32).unsqueeze(1))

    return tensors(x_train, y_train), tensors(x_val, y_val)


def task() -> Task:
    train_data, val_data = diabetes_datasets()
    return Task(
        model=mlp,
        student=mlp,  # a narrower MLP can learn from the trained one (distilled with MSE, as a regression is)
        train_data=train_data,
        val_data=val_data,
        optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr),
        lr=1e-3,
        epochs=20,
        batch_size=16,
        name="diabetes",
    )
