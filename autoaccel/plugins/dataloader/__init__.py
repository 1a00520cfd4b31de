"""DataLoader settings: workers, pinned memory, persistent workers, prefetching, and in-memory caching."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.data import default_collate

from autoaccel.plugin import (
    Capability,
    Phase,
    Pipeline,
    Section,
    Strategy,
    Target,
    Task,
    TrainingSetup,
    hookimpl,
    train_batches,
)


@dataclass(frozen=True)
class LoaderSection(Section):
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int = 2
    cache: bool = False

    def keeps_math(self) -> bool:
        # Workers and pinning load the same batches in the same order; a cache freezes each item once, so random
        # augmentation in the dataset is drawn once instead of every epoch: other data, other math.
        return not self.cache

    def math_tolerance(self) -> float:
        # Workers draw random augmentation from their own generators: the same math on another draw of the data.
        return 0.25 if self.num_workers > 0 else 0.15


def whole(dataset: Any, chunk: int = 1024) -> Any:
    """The whole dataset as one batch, shaped as the DataLoader collates it (``[inputs, targets]``, a dict of a
    tokenizer's tensors, ...), read once in chunks."""
    parts = [default_collate([dataset[i] for i in range(start, min(start + chunk, len(dataset)))])
             for start in range(0, len(dataset), chunk)]
    leaves, spec = pytree.tree_flatten(parts[0])
    columns = zip(*(pytree.tree_flatten(p)[0] for p in parts))
    return pytree.tree_unflatten([torch.cat(list(c)) for c in columns] if len(parts) > 1 else leaves, spec)


def _tensors_only(dataset: Any) -> bool:
    """Whether the dataset's items collate into tensors only (strings or ragged items cannot be cached)."""
    try:
        batch = default_collate([dataset[i] for i in range(min(2, len(dataset)))])
    except Exception:  # noqa: BLE001 - whatever collation raises, the items cannot be stacked
        return False
    return all(isinstance(x, torch.Tensor) for x in pytree.tree_flatten(batch)[0])


class CachedBatches:
    """Shuffled batches sliced from the whole dataset already in memory (on the device when it is a GPU), shaped as
    the DataLoader's.

    Caching removes per-sample ``__getitem__`` and collation, which dominate small models on small data.
    """

    def __init__(self, data: Any, batch_size: int, seed: int, shuffle: bool = True) -> None:
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        first = pytree.tree_flatten(data)[0][0]
        self.size, self.device = len(first), first.device
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (self.size + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Any]:
        order = torch.randperm(self.size, generator=self.generator) if self.shuffle else torch.arange(self.size)
        for start in range(0, self.size, self.batch_size):
            idx = order[start : start + self.batch_size].to(self.device)
            yield pytree.tree_map(lambda t, rows=idx: t[rows], self.data)


class DataLoaderStrategy(Strategy[LoaderSection]):
    name = "dataloader"
    phase = Phase.DATA
    relieves = ("data", "copy")
    changes_training = True
    description = "DataLoader workers, pin_memory, persistent workers, prefetch, and caching the dataset in memory."

    def check(self, target: Target) -> Capability:
        # More workers than cores only adds contention; the YAML's range is cut to what the target has.
        workers = list(range(0, max(1, min(8, target.cores)) + 1))
        allowed: dict[str, list[Any]] = {"num_workers": workers}
        reason = ""
        if target.kind != "cuda":
            allowed["pin_memory"] = [False]
            reason = "pin_memory only helps host-to-GPU copies; dropped on this target"
        return Capability(True, reason, allowed)

    def fits(self, model: nn.Module, task: Task, target: Target) -> Capability:
        if _tensors_only(task.train_data):
            return Capability(True)
        return Capability(True, "caching the dataset in memory needs items that stack into tensors (these hold other "
                          "values, or vary in size); dropped", {"cache": [False]})

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        cache = bool(params.get("cache", False))
        # A cached dataset is sliced in memory, with no DataLoader: worker and pinning settings mean nothing then,
        # and are normalised away so equal plans compare equal.
        workers = 0 if cache else int(params.get("num_workers", 0))
        section = LoaderSection(
            num_workers=workers,
            pin_memory=bool(params.get("pin_memory", False)) and not cache,
            # Both only mean something with worker processes; normalised so equal plans compare equal.
            persistent_workers=bool(params.get("persistent_workers", False)) and workers > 0,
            prefetch_factor=int(params.get("prefetch_factor", 2)) if workers > 0 else 2,
            cache=cache,
        )
        return pipeline if section == LoaderSection() else pipeline.with_section(self, section)

    def configure_training(self, section: LoaderSection, setup: TrainingSetup) -> None:
        plan = setup.plan
        if section.cache:
            data = whole(setup.task.train_data)
            if plan.device != "cpu":
                data = pytree.tree_map(lambda t: t.to(plan.device), data)
            setup.batches = CachedBatches(data, plan.batch_size, setup.seed, setup.task.shuffle)
            return
        options: dict[str, Any] = {"num_workers": section.num_workers,
                                   "pin_memory": section.pin_memory and plan.device.startswith("cuda")}
        if section.num_workers > 0:
            options.update(persistent_workers=section.persistent_workers, prefetch_factor=section.prefetch_factor)
        setup.batches = train_batches(setup.task.train_data, plan.batch_size, setup.seed, setup.task.shuffle, **options)
        setup.non_blocking = section.pin_memory

    def recipe(self, section: LoaderSection) -> dict[str, Any]:
        if section.cache:
            return {"cache_dataset_in_memory": True}
        kwargs: dict[str, Any] = {"num_workers": section.num_workers, "pin_memory": section.pin_memory}
        if section.num_workers > 0:
            kwargs.update(persistent_workers=section.persistent_workers, prefetch_factor=section.prefetch_factor)
        return {"DataLoader": kwargs}


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(DataLoaderStrategy())
