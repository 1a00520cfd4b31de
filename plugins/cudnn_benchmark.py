"""cuDNN autotuning, and TF32 fp32 matmul/conv where the precision strategy kept the plan in fp32."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import Capability, Phase, Pipeline, Strategy, Target, hookimpl


class CudnnBenchmarkStrategy(Strategy):
    name = "cudnn_benchmark"
    phase = Phase.MODEL
    description = "cudnn.benchmark autotuning and fp32 matmul precision 'high' (TF32) on CUDA."

    def check(self, target: Target) -> Capability:
        if target.kind != "cuda":
            return Capability(False, "cuDNN and TF32 settings only matter on a CUDA target")
        if target.compute_capability and target.compute_capability < (8, 0):
            return Capability(True, "matmul_precision 'high' dropped: TF32 needs compute capability 8.0",
                              {"matmul_precision": ["highest"]})
        return Capability(True)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.replace(cudnn_benchmark=bool(params.get("enabled", False)),
                                matmul_precision=str(params.get("matmul_precision", "highest")))


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(CudnnBenchmarkStrategy())
