"""quantization: contract, int8 modules really int8, ORT static int8 served through a session."""

from __future__ import annotations

import torch
from torch import nn

from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin.testing import CPU, CUDA, StrategyContract
from autoaccel.plugins.quantization import HalfWeights, QuantizationSection, QuantizationStrategy, dynamic_int8
from autoaccel.plugins.runtime.session import OrtModule
from autoaccel.trial._run import run_trial, serve

BASE = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)


class TestQuantizationContract(StrategyContract):
    strategy_class = QuantizationStrategy


def test_dynamic_int8_replaces_linear_layers_with_int8_ones() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    q = dynamic_int8(model)
    quantized = [m for m in q.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == 2
    assert all(m.weight().dtype == torch.qint8 for m in quantized)
    assert not any(type(m) is nn.Linear for m in q.modules())


def test_check_offers_cpu_methods_on_cpu_and_gpu_methods_on_cuda() -> None:
    s = QuantizationStrategy()
    cpu = s.check(CPU).allowed["method"]
    assert "dynamic_int8" in cpu and "fp16_weights" not in cpu
    assert "GPU" in s.check(CPU).reason
    cuda = s.check(CUDA).allowed["method"]
    assert "fp16_weights" in cuda and "bf16_weights" in cuda and "dynamic_int8" not in cuda


def test_static_int8_runs_in_onnx_runtime_and_keeps_accuracy(tiny_task) -> None:  # type: ignore[no-untyped-def]
    cpu = CPU.__class__(**{**CPU.__dict__, "libraries": {"onnxruntime": True}})
    s = QuantizationStrategy()
    assert "static_int8_ort" in s.check(cpu).allowed["method"]
    plan = s.apply(BASE, {"method": "static_int8_ort"})
    assert plan.engine() == "onnxruntime" and plan.section("quantization") == QuantizationSection("static_int8_ort")
    served = serve(tiny_task, plan, nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), torch.zeros(1, 64), 0)
    assert isinstance(served, OrtModule) and served.onnx_path.endswith("int8.onnx")
    base = run_trial(tiny_task, BASE, timing_budget_s=0.05)
    quant = run_trial(tiny_task, plan, timing_budget_s=0.05)
    assert abs(base.metrics["accuracy"] - quant.metrics["accuracy"]) < 0.05


def test_half_weights_wrapper_casts_in_and_out() -> None:
    wrapped = HalfWeights(nn.Linear(4, 2), torch.bfloat16)
    out = wrapped(torch.randn(3, 4))
    assert out.dtype == torch.float32 and wrapped.model.weight.dtype == torch.bfloat16
