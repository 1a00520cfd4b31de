"""The inference engine: eager PyTorch or ONNX Runtime with the installed execution providers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from autoaccel.plugin import Capability, Phase, Pipeline, Section, ServeContext, Strategy, Target, hookimpl
from autoaccel.plugins.runtime.session import PROVIDERS, OrtModule, onnx_runtime, providers, write_graph


@dataclass(frozen=True)
class RuntimeSection(Section):
    provider: str = "cpu"  # ONNX Runtime execution provider: cpu, cuda or tensorrt

    def fixes_precision(self) -> bool:
        return True  # ONNX Runtime runs the exported graph in its own precision

    def engine(self) -> str | None:
        return "onnxruntime"

    def keeps_math(self) -> bool:
        # The fp32 graph, checked against PyTorch when exported (check_onnx); a quantized model it serves is
        # quantization's section, which does not keep the math.
        return True


class RuntimeStrategy(Strategy[RuntimeSection]):
    name = "runtime"
    phase = Phase.RUNTIME
    # Serves what quantization produced: an int8 session is re-opened on the chosen provider.
    after = ("quantization",)
    description = "Inference engine: eager/compiled PyTorch or ONNX Runtime (CPU, CUDA, TensorRT providers)."

    def check(self, target: Target) -> Capability:
        if not target.libraries.get("onnxruntime"):
            return Capability(False, "onnxruntime does not import here; pip install onnxruntime")
        installed = providers()
        usable = ["cpu"] + [name for name in ("cuda", "tensorrt") if target.kind == "cuda" and PROVIDERS[name] in installed]
        missing = [name for name in ("cuda", "tensorrt") if name not in usable]
        reason = f"providers {', '.join(missing)} dropped: not installed or no CUDA target" if missing else ""
        return Capability(True, reason, {"provider": usable})

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        if params.get("engine", "eager") == "eager":
            return pipeline
        if not pipeline.exportable():
            return pipeline  # the model another section produced has no ONNX export: it stays in PyTorch
        provider = str(params.get("provider", "cpu"))
        if pipeline.engine() == "onnxruntime" and provider == "cpu":
            return pipeline  # already served by ONNX Runtime on the CPU: this setting changes nothing
        return pipeline.with_section(self, RuntimeSection(provider))

    def serve(self, section: RuntimeSection, model: nn.Module, ctx: ServeContext) -> nn.Module:
        wanted = [PROVIDERS[section.provider]]
        if isinstance(model, OrtModule):
            reopened = OrtModule(model.onnx_path, ctx.threads or None, wanted)
            reopened.source = model  # owns the graph's folder, removed when the last session that needs it goes
            return reopened
        return onnx_runtime(model, ctx.example, False, [], threads=ctx.threads or None, providers=wanted)

    def export(self, section: RuntimeSection, served: nn.Module, path: Path) -> bool:
        return write_graph(served, path)  # the graph the session runs, exactly


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(RuntimeStrategy())
