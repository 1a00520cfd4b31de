"""A Linear-heavy MLP on scikit-learn's digits, with a student factory for distillation.

    autoaccel optimize examples/digits_mlp.py --mode inference --objectives accuracy,latency
"""

import torch
from torch import nn

from autoaccel import Task

try:  # run as a file by autoaccel, or imported as examples.digits_mlp
    from digits import digits_datasets
except ImportError:  # pragma: no cover
    from examples.digits import digits_datasets


def mlp(width: int = 1024, depth: int = 3) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    features = 64
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, 10))
    return nn.Sequential(*layers)


def teacher() -> nn.Module:
    return mlp(1024, 3)


def student(size: float = 0.5) -> nn.Module:
    """The same family, narrower: ``size`` scales the width (0.25 -> 256 units)."""
    return mlp(max(16, int(1024 * size)), 2)


def task() -> Task:
    train_data, val_data = digits_datasets()
    return Task(
        model=teacher,
        student=student,
        train_data=train_data,
        val_data=val_data,
        optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr),
        epochs=8,
        batch_size=64,
        lr=1e-3,
        name="digits_mlp",
    )
