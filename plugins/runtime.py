"""The inference engine: eager PyTorch or ONNX Runtime with the installed execution providers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import Capability, Phase, Pipeline, Strategy, Target, hookimpl
from autoaccel.onnx_runtime import providers
from autoaccel.pipeline import RuntimePlan
from autoaccel.runtime import ORT_PROVIDERS


class RuntimeStrategy(Strategy):
    name = "runtime"
    phase = Phase.RUNTIME
    description = "Inference engine: eager/compiled PyTorch or ONNX Runtime (CPU, CUDA, TensorRT providers)."

    def check(self, target: Target) -> Capability:
        if not target.libraries.get("onnxruntime"):
            return Capability(False, "onnxruntime does not import here; pip install onnxruntime")
        installed = providers()
        usable = ["cpu"] + [name for name in ("cuda", "tensorrt") if target.kind == "cuda" and ORT_PROVIDERS[name] in installed]
        missing = [name for name in ("cuda", "tensorrt") if name not in usable]
        reason = f"providers {', '.join(missing)} dropped: not installed or no CUDA target" if missing else ""
        return Capability(True, reason, {"provider": usable})

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        if params.get("engine", "eager") == "eager":
            return pipeline  # also keeps an ONNX Runtime int8 choice made by the quantization strategy
        if pipeline.quantized and not pipeline.runtime.int8_static:
            # PyTorch-quantized modules (dynamic int8, half weights) have no ONNX export: keep them eager.
            return pipeline
        return pipeline.replace(runtime=RuntimePlan("onnxruntime", int8_static=pipeline.runtime.int8_static,
                                                    provider=str(params.get("provider", "cpu"))))


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(RuntimeStrategy())
