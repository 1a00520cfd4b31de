"""CUDA graph capture of inference (static shapes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import Capability, Phase, Pipeline, Strategy, Target, hookimpl


class CudaGraphsStrategy(Strategy):
    name = "cuda_graphs"
    phase = Phase.RUNTIME
    description = "Capture inference in CUDA graphs: removes per-kernel launch overhead for small batches."

    def check(self, target: Target) -> Capability:
        if target.kind != "cuda":
            return Capability(False, "CUDA graphs need a CUDA target")
        return Capability(True)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.replace(cuda_graphs=True) if params.get("enabled", False) else pipeline


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(CudaGraphsStrategy())
