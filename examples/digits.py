"""A small CNN on scikit-learn's handwritten digits (real 8x8 images, shipped offline with scikit-learn).

    autoaccel optimize examples/digits.py
"""

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Task


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def digits_datasets(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """The 1,797 digits as (1, 8, 8) images scaled to [0, 1], split 80/20 with every class in both."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y, dtype=torch.long)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return TensorDataset(x_train, y_train), TensorDataset(x_val, y_val)


def task() -> Task:
    train_data, val_data = digits_datasets()
    return Task(
        model=DigitsCNN,
        train_data=train_data,
        val_data=val_data,
        epochs=8,
        batch_size=16,
        lr=0.02,
        name="digits",
    )
