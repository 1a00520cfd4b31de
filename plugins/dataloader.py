"""DataLoader settings: workers, pinned memory, persistent workers, prefetching, and in-memory caching."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import (
    Capability,
    LoaderPlan,
    Phase,
    Pipeline,
    Strategy,
    Target,
    hookimpl,
)


class DataLoaderStrategy(Strategy):
    name = "dataloader"
    phase = Phase.DATA
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
        loader = LoaderPlan(
            num_workers=workers,
            pin_memory=bool(params.get("pin_memory", False)) and not cache,
            # Both only mean something with worker processes; normalised so equal plans compare equal.
            persistent_workers=bool(params.get("persistent_workers", False)) and workers > 0,
            prefetch_factor=int(params.get("prefetch_factor", 2)) if workers > 0 else 2,
            cache=cache,
        )
        return pipeline.replace(loader=loader)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(DataLoaderStrategy())
