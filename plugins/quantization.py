"""Quantization: dynamic int8 (CPU), static int8 through ONNX Runtime, fp16/bf16 weights (GPU), torchao int8."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from autoaccel import Capability, Phase, Pipeline, Strategy, Target, hookimpl
from autoaccel.pipeline import RuntimePlan, TransformContext


def dynamic_int8(model: nn.Module, ctx: TransformContext) -> nn.Module:
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
        return self.model(x.to(self.dtype)).float()


def half_weights(model: nn.Module, ctx: TransformContext, dtype_name: str) -> nn.Module:
    return HalfWeights(model.eval(), {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name])


def torchao_int8(model: nn.Module, ctx: TransformContext) -> nn.Module:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model.eval(), Int8WeightOnlyConfig())
    return model


def _torchao_ok() -> bool:
    try:
        import torchao.quantization  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


class QuantizationStrategy(Strategy):
    name = "quantization"
    # Runtime phase: quantization always comes after pruning and ensembling have shaped the model.
    phase = Phase.RUNTIME
    description = "Post-training quantization: dynamic int8, static int8 via ONNX Runtime, fp16/bf16 weights, torchao."

    def check(self, target: Target) -> Capability:
        allowed, why = ["none"], []
        engines = torch.backends.quantized.supported_engines
        if target.kind == "cpu" and any(e in engines for e in ("x86", "fbgemm", "qnnpack")):
            allowed.append("dynamic_int8")
        else:
            why.append("dynamic_int8 runs on CPU quantized engines only")
        if target.libraries.get("onnxruntime") and target.kind == "cpu":
            allowed.append("static_int8_ort")
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
        method = params.get("method", "none")
        if method == "none":
            return pipeline
        pipeline = pipeline.replace(quantized=True)
        if method == "dynamic_int8":
            # Quantized kernels are CPU kernels: the quantized model is served on the CPU.
            return pipeline.add_transform(dynamic_int8)
        if method == "static_int8_ort":
            return pipeline.replace(runtime=RuntimePlan("onnxruntime", int8_static=True))
        if method in ("fp16_weights", "bf16_weights"):
            return pipeline.add_transform(partial(half_weights, dtype_name=method[:4]))
        return pipeline.add_transform(torchao_int8)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(QuantizationStrategy())
