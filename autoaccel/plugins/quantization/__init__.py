"""Quantization: dynamic int8 (CPU), static int8 through ONNX Runtime, fp16/bf16 weights (GPU), torchao int8."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoaccel.plugin import (
    Capability,
    Param,
    Phase,
    Pipeline,
    Section,
    ServeContext,
    Strategy,
    Target,
    TransformContext,
    hookimpl,
)

ORT_STATIC = "static_int8_ort"


@dataclass(frozen=True)
class QuantizationSection(Section):
    method: str

    def fixes_precision(self) -> bool:
        return True  # a quantized model fixes its own inference precision: autocast would feed it the wrong dtype

    def engine(self) -> str | None:
        return "onnxruntime" if self.method == ORT_STATIC else None

    def exportable(self) -> bool:
        # PyTorch-quantized modules (dynamic int8, half weights, torchao) have no ONNX export.
        return self.method == ORT_STATIC


def dynamic_int8(model: nn.Module) -> nn.Module:
    """int8 weights for Linear/LSTM/GRU, activations quantized per batch at run time (no calibration needed)."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which has no CPU dynamic-int8 path yet.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.cpu().eval(), {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)


class HalfWeights(nn.Module):
    """The model in fp16/bf16, with float inputs cast in and outputs cast back, so callers need not know."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype) if x.is_floating_point() else x).float()  # integer ids stay ids


def torchao_int8(model: nn.Module) -> nn.Module:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model.eval(), Int8WeightOnlyConfig())
    return model


def _torchao_ok() -> bool:
    try:
        import torchao.quantization  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


class QuantizationStrategy(Strategy[QuantizationSection]):
    name = "quantization"
    # Runtime phase, after everything that shapes the served model (pruning, an ensemble).
    phase = Phase.RUNTIME
    after = ("ensembling",)
    description = "Post-training quantization: dynamic int8, static int8 via ONNX Runtime, fp16/bf16 weights, torchao."
    hints = {
        "method=dynamic_int8": "dynamic int8 quantizes activations on every call, which can cost more than it saves on "
                               "small layers or CPUs without VNNI/AMX",
        "method=static_int8_ort": "int8 in ONNX Runtime adds quantize/dequantize steps that small models do not amortize",
        "method=torchao_int8": "weight-only int8 helps memory-bound large matmuls, not small models",
    }

    def probes(self, space: Mapping[str, Param]) -> list[dict[str, Any]]:
        # Most promising first: ONNX Runtime's static int8 (a whole graph optimised and quantized once) has been
        # the largest serving win on the CPUs measured here, dynamic int8 often slower at batch 1 (it quantizes
        # activations on every call). A short run should try the former first.
        return sorted(super().probes(space), key=lambda p: p.get("method") != "static_int8_ort")

    def check(self, target: Target) -> Capability:
        allowed, why = ["none"], []
        engines = torch.backends.quantized.supported_engines
        if target.kind == "cpu" and any(e in engines for e in ("x86", "fbgemm", "qnnpack")):
            allowed.append("dynamic_int8")
        else:
            why.append("dynamic_int8 runs on CPU quantized engines only")
        if target.libraries.get("onnxruntime") and target.kind == "cpu":
            allowed.append(ORT_STATIC)
        else:
            why.append("static_int8_ort needs onnxruntime and the CPU target")
        if target.kind == "cuda":
            allowed.append("fp16_weights")
            if "bf16" in target.precisions:
                allowed.append("bf16_weights")
        else:
            why.append("fp16/bf16 weights pay off on GPUs only")
        if target.kind == "cuda" and target.libraries.get("torchao") and _torchao_ok():
            allowed.append("torchao_int8")
        else:
            why.append("torchao_int8 needs torchao and a CUDA GPU")
        return Capability(True, "; ".join(why), {"method": allowed})

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        method = str(params.get("method", "none"))
        return pipeline if method == "none" else pipeline.with_section(self, QuantizationSection(method))

    def transform(self, section: QuantizationSection, model: nn.Module, ctx: TransformContext) -> nn.Module:
        if section.method == "dynamic_int8":
            return dynamic_int8(model)  # quantized kernels are CPU kernels: served on the CPU
        if section.method in ("fp16_weights", "bf16_weights"):
            return HalfWeights(model.eval(), {"fp16": torch.float16, "bf16": torch.bfloat16}[section.method[:4]])
        if section.method == "torchao_int8":
            return torchao_int8(model)
        return model  # static int8 is calibrated and served by ONNX Runtime, below

    def serve(self, section: QuantizationSection, model: nn.Module, ctx: ServeContext) -> nn.Module:
        if section.method != ORT_STATIC:
            return model
        from autoaccel.plugins.runtime.session import onnx_runtime

        return onnx_runtime(model, ctx.example, True, ctx.calibration(model=model), threads=ctx.threads or None)

    def export(self, section: QuantizationSection, served: nn.Module, path: Path) -> bool:
        from autoaccel.plugins.runtime.session import write_graph

        return section.method == ORT_STATIC and write_graph(served, path)  # the calibrated int8 graph itself


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(QuantizationStrategy())
