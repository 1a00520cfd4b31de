"""Batches for training and evaluation, built from the plan's loader settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate

from autoaccel.pipeline import LoaderPlan


def materialize(dataset: Any, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the whole dataset once into two stacked tensors (inputs, targets)."""
    xs, ys = [], []
    for start in range(0, len(dataset), chunk):
        x, y = default_collate([dataset[i] for i in range(start, min(start + chunk, len(dataset)))])
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys)


class CachedBatches:
    """Shuffled batches sliced from tensors already in memory (on the device when it is a GPU).

    Caching removes per-sample ``__getitem__`` and collation, which dominate small models on small data.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> None:
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.inputs) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.inputs)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield self.inputs[start : start + self.batch_size], self.targets[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size].to(self.inputs.device)
                yield self.inputs[idx], self.targets[idx]


def train_batches(dataset: Any, loader: LoaderPlan, batch_size: int, device: str, seed: int) -> Any:
    """An iterable of training batches honouring ``loader`` (a DataLoader, or cached tensor slices)."""
    if loader.cache:
        inputs, targets = materialize(dataset)
        if device != "cpu":
            inputs, targets = inputs.to(device), targets.to(device)
        return CachedBatches(inputs, targets, batch_size, shuffle=True, seed=seed)
    kwargs: dict[str, Any] = {}
    if loader.num_workers > 0:
        kwargs = {"persistent_workers": loader.persistent_workers, "prefetch_factor": loader.prefetch_factor}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory and device.startswith("cuda"),
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def eval_batches(dataset: Any, batch_size: int) -> DataLoader:
    """Evaluation batches: plain, in order, untimed (accuracy does not depend on loader settings)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def sample_batch(dataset: Any, size: int) -> torch.Tensor:
    """``size`` inputs from the dataset (cycling when it is smaller), for latency and throughput timing."""
    return default_collate([dataset[i % len(dataset)][0] for i in range(size)])
