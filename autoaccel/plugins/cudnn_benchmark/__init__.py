"""cuDNN autotuning, and the fp32 matmul precision ("high" lets CUDA use TF32 for fp32 matmuls)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from autoaccel.plugin import Capability, Phase, Pipeline, Section, Strategy, Target, TrainingSetup, hookimpl


@dataclass(frozen=True)
class CudnnSection(Section):
    benchmark: bool
    matmul_precision: str

    def keeps_math(self) -> bool:
        return self.matmul_precision == "highest"  # TF32 matmuls ("high", "medium") are other numerics


@contextlib.contextmanager
def backend_flags(section: CudnnSection) -> Iterator[None]:
    """The settings for the duration only, so one trial's settings never leak into the next."""
    old = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    torch.backends.cudnn.benchmark = section.benchmark
    torch.set_float32_matmul_precision(section.matmul_precision)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old[0]
        torch.set_float32_matmul_precision(old[1])


class CudnnBenchmarkStrategy(Strategy[CudnnSection]):
    name = "cudnn_benchmark"
    phase = Phase.MODEL
    relieves = ("forward", "backward")
    changes_training = True
    description = "cudnn.benchmark autotuning and fp32 matmul precision 'high' (TF32) on CUDA."

    def check(self, target: Target) -> Capability:
        if target.kind != "cuda":
            return Capability(False, "cuDNN and TF32 settings only matter on a CUDA target")
        if target.compute_capability and target.compute_capability < (8, 0):
            return Capability(True, "matmul_precision 'high' dropped: TF32 needs compute capability 8.0",
                              {"matmul_precision": ["highest"]})
        return Capability(True)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        section = CudnnSection(bool(params.get("enabled", False)), str(params.get("matmul_precision", "highest")))
        return pipeline if section == CudnnSection(False, "highest") else pipeline.with_section(self, section)

    def configure_training(self, section: CudnnSection, setup: TrainingSetup) -> None:
        setup.contexts.append(backend_flags(section))

    def inference_context(self, section: CudnnSection, plan: Pipeline) -> contextlib.AbstractContextManager[Any]:
        return backend_flags(section)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(CudnnBenchmarkStrategy())
