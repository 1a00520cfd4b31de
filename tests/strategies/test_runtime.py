"""runtime: contract; ONNX Runtime serves the model and agrees with PyTorch; quantized models stay eager."""

from __future__ import annotations

import torch

from autoaccel.onnx_runtime import OrtModule
from autoaccel.pipeline import Pipeline
from autoaccel.plugins.quantization import QuantizationStrategy
from autoaccel.plugins.runtime import RuntimeStrategy
from autoaccel.testing import CPU, StrategyContract
from autoaccel.trial import _runtime, run_trial
from tiny_digits import make_mlp

BASE = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)


class TestRuntimeContract(StrategyContract):
    strategy_class = RuntimeStrategy


def test_check_needs_onnxruntime_and_offers_cpu_provider() -> None:
    assert not RuntimeStrategy().check(CPU).supported  # CPU's libraries say onnxruntime is missing
    with_ort = CPU.__class__(**{**CPU.__dict__, "libraries": {"onnxruntime": True}})
    cap = RuntimeStrategy().check(with_ort)
    assert cap.supported and cap.allowed["provider"] == ["cpu"]


def test_ort_serves_the_model_and_matches_pytorch(tiny_task) -> None:  # type: ignore[no-untyped-def]
    plan = RuntimeStrategy().apply(BASE, {"engine": "onnxruntime", "provider": "cpu"})
    model = make_mlp().eval()
    served = _runtime(tiny_task, plan, model, torch.zeros(1, 64), 0)
    assert isinstance(served, OrtModule)
    x = torch.rand(5, 64)
    torch.testing.assert_close(served(x), model(x), atol=1e-4, rtol=0)
    result = run_trial(tiny_task, plan, timing_budget_s=0.05)
    assert result.details["runtime"] == "OrtModule" and result.metrics["accuracy"] > 0.5


def test_pytorch_quantized_models_stay_eager() -> None:
    quantized = QuantizationStrategy().apply(BASE, {"method": "dynamic_int8"})
    assert RuntimeStrategy().apply(quantized, {"engine": "onnxruntime", "provider": "cpu"}).runtime.kind == "eager"
    static = QuantizationStrategy().apply(BASE, {"method": "static_int8_ort"})
    assert RuntimeStrategy().apply(static, {"engine": "onnxruntime", "provider": "cpu"}).runtime.int8_static
