"""channels_last memory format for 4-D activations (CPU and CUDA)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import Capability, Phase, Pipeline, Strategy, Target, hookimpl


class MemoryFormatStrategy(Strategy):
    name = "memory_format"
    phase = Phase.MODEL
    description = "channels_last (NHWC) layout for convolutional models, in training and inference."

    def check(self, target: Target) -> Capability:
        if target.kind in ("cpu", "cuda", "mps"):
            return Capability(True)
        return Capability(False, f"channels_last is not offered on {target.kind}")

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.replace(memory_format=str(params.get("format", "contiguous")))


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(MemoryFormatStrategy())
