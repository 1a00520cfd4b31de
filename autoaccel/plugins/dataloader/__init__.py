"""DataLoader settings: workers, pinned memory, persistent workers, prefetching, and in-memory caching."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from autoaccel.plugin import (
    Capability,
    Phase,
    Pipeline,
    Section,
    Strategy,
    Target,
    TrainingSetup,
    hookimpl,
    materialize,
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


class CachedBatches:
    """Shuffled batches sliced from tensors already in memory (on the device when it is a GPU).

    Caching removes per-sample ``__getitem__`` and collation, which dominate small models on small data.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int, shuffle: bool = True) -> None:
        self.inputs, self.targets, self.batch_size, self.shuffle = inputs, targets, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.inputs) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.inputs), generator=self.generator) if self.shuffle else torch.arange(len(self.inputs))
        for start in range(0, len(self.inputs), self.batch_size):
            idx = order[start : start + self.batch_size].to(self.inputs.device)
            yield self.inputs[idx], self.targets[idx]


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
            inputs, targets = materialize(setup.task.train_data)
            if plan.device != "cpu":
                inputs, targets = inputs.to(plan.device), targets.to(plan.device)
            setup.batches = CachedBatches(inputs, targets, plan.batch_size, setup.seed, setup.task.shuffle)
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
