"""Batches for training and evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate

from autoaccel.task._batches import features, split


def _chunks(dataset: Any, chunk: int) -> Iterator[tuple[Any, Any]]:
    """The dataset in order, ``chunk`` items at a time, each collated and split into (inputs, targets)."""
    for start in range(0, len(dataset), chunk):
        yield split(default_collate([dataset[i] for i in range(start, min(start + chunk, len(dataset)))]))


def materialize(dataset: Any, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the whole dataset once into two stacked tensors (inputs, targets) (tensor inputs only)."""
    parts = list(_chunks(dataset, chunk))
    return torch.cat([x for x, _ in parts]), torch.cat([torch.as_tensor(y) for _, y in parts])


def targets_of(dataset: Any, chunk: int = 1024) -> Any:
    """Every validation target, in order, collated (for scoring predictions made outside the model: stacking)."""
    return torch.cat([torch.as_tensor(y) for _, y in _chunks(dataset, chunk)])


def train_batches(dataset: Any, batch_size: int, seed: int, shuffle: bool = True, **loader_options: Any) -> DataLoader:
    """The core's training batches: a shuffled DataLoader seeded per run (the same order for every recipe), or
    the dataset's own order when the task says so (Task.shuffle); a strategy that changes how data is loaded
    passes DataLoader options, or replaces the batches altogether (keeping the order rule)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
                      **loader_options)


def eval_batches(dataset: Any, batch_size: int) -> DataLoader:
    """Evaluation batches: plain, in order, untimed (accuracy does not depend on loader settings)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def sample_batch(dataset: Any, size: int) -> Any:
    """``size`` items' inputs from the dataset (cycling when it is smaller), for latency and throughput timing:
    what a served model is called with (a dict's labels left out)."""
    return features(default_collate([dataset[i % len(dataset)] for i in range(size)]))
