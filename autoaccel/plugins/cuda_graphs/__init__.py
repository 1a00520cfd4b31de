"""CUDA graph capture of inference (static shapes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoaccel.plugin import Capability, Phase, Pipeline, Section, ServeContext, Strategy, Target, hookimpl


@dataclass(frozen=True)
class CudaGraphsSection(Section):
    pass


class CudaGraphModule(nn.Module):
    """Replays a CUDA graph captured per input shape: one launch instead of one per kernel.

    Inputs are copied into the captured static buffer and the static output is cloned out, the pattern the
    PyTorch docs give for whole-network capture. Shapes must repeat (they do at inference).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._graphs: dict[tuple[tuple[int, ...], torch.dtype], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up on a side stream, as capture requires
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()


class CudaGraphsStrategy(Strategy[Section]):
    name = "cuda_graphs"
    phase = Phase.RUNTIME
    # Captures whatever the other serving techniques built (a compiled module, ...).
    after = ("compile", "runtime", "quantization")
    description = "Capture inference in CUDA graphs: removes per-kernel launch overhead for small batches."

    def check(self, target: Target) -> Capability:
        if target.kind != "cuda":
            return Capability(False, "CUDA graphs need a CUDA target")
        return Capability(True)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.with_section(self, CudaGraphsSection()) if params.get("enabled", False) else pipeline

    def serve(self, section: Section, model: nn.Module, ctx: ServeContext) -> nn.Module:
        if ctx.plan.engine() is not None or not ctx.plan.device.startswith("cuda"):
            return model
        return CudaGraphModule(model)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(CudaGraphsStrategy())
