"""What executes the trained model at inference: eager, torch.compile'd, captured in CUDA graphs, or an
ONNX Runtime session. Every choice is wrapped as an nn.Module so evaluation and timing treat all alike."""

from __future__ import annotations

import torch
from torch import nn

from autoaccel.pipeline import Pipeline

ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


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


def wrap_runtime(model: nn.Module, plan: Pipeline, example: torch.Tensor, calibration: list | None = None) -> nn.Module:
    """The served module for ``plan``: ORT when the runtime is onnxruntime, else eager with compile and graphs."""
    if plan.runtime.kind == "onnxruntime":
        from autoaccel.onnx_runtime import onnx_runtime

        return onnx_runtime(model, example, plan.runtime.int8_static, calibration or [], threads=torch.get_num_threads(),
                            providers=[ORT_PROVIDERS[plan.runtime.provider]])
    if plan.compile_mode:
        # dynamic=False: inference shapes repeat, and static shapes let inductor specialise (and graph-capture).
        model = torch.compile(model, mode=None if plan.compile_mode == "default" else plan.compile_mode, dynamic=False)
    if plan.cuda_graphs and plan.device.startswith("cuda"):
        model = CudaGraphModule(model)
    return model
