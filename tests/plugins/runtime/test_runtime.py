"""runtime: contract; ONNX Runtime serves the model and agrees with PyTorch; quantized models stay eager."""

from __future__ import annotations

import pytest
import torch

from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin.testing import CPU, StrategyContract
from autoaccel.plugins.runtime import RuntimeSection, RuntimeStrategy
from autoaccel.plugins.runtime.session import OrtModule
from autoaccel.trial._run import run_trial, serve
from tiny_digits import make_mlp

BASE = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
NO_ORT = CPU.__class__(**{**CPU.__dict__, "libraries": {}})  # a CPU target where onnxruntime does not import
WITH_ORT = CPU.__class__(**{**CPU.__dict__, "libraries": {"onnxruntime": True}})


class TestRuntimeContract(StrategyContract):
    strategy_class = RuntimeStrategy


def test_check_needs_onnxruntime_and_offers_cpu_provider() -> None:
    assert not RuntimeStrategy().check(NO_ORT).supported  # its libraries say onnxruntime is missing
    cap = RuntimeStrategy().check(WITH_ORT)
    assert cap.supported and cap.allowed["provider"] == ["cpu"]


def test_ort_serves_the_model_and_matches_pytorch(tiny_task) -> None:  # type: ignore[no-untyped-def]
    plan = RuntimeStrategy().apply(BASE, {"engine": "onnxruntime", "provider": "cpu"})
    assert plan.section("runtime") == RuntimeSection("cpu") and plan.engine() == "onnxruntime"
    model = make_mlp().eval()
    served = serve(tiny_task, plan, model, torch.zeros(1, 64), 0)
    assert isinstance(served, OrtModule)
    x = torch.rand(5, 64)
    torch.testing.assert_close(served(x), model(x), atol=1e-4, rtol=0)
    result = run_trial(tiny_task, plan, timing_budget_s=0.05)
    assert result.details["runtime"] == "OrtModule" and result.metrics["accuracy"] > 0.5


def test_pytorch_quantized_models_stay_eager() -> None:
    q = pytest.importorskip("autoaccel.plugins.quantization", reason="an interaction with the quantization strategy")
    QuantizationStrategy, QuantizationSection = q.QuantizationStrategy, q.QuantizationSection  # noqa: N806
    quantized = QuantizationStrategy().apply(BASE, {"method": "dynamic_int8"})
    eager = RuntimeStrategy().apply(quantized, {"engine": "onnxruntime", "provider": "cpu"})
    assert eager.section("runtime") is None and eager.engine() is None and eager == quantized
    # A static int8 plan is already served by ONNX Runtime on the CPU: it stays int8.
    static = QuantizationStrategy().apply(BASE, {"method": "static_int8_ort"})
    served = RuntimeStrategy().apply(static, {"engine": "onnxruntime", "provider": "cpu"})
    assert served.section("quantization") == QuantizationSection("static_int8_ort") and served.engine() == "onnxruntime"


def _pooled_cnn() -> torch.nn.Module:
    """A zoo CNN in miniature: BatchNorm, and a feature map that reaches 1x1 (an ImageNet architecture on 32x32
    images), where a batch of one in training mode raises."""
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4, 3))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_serving_leaves_the_models_mode_and_batchnorm_statistics_as_it_found_them(tiny_task, mode: str) -> None:  # type: ignore[no-untyped-def]
    plan = RuntimeStrategy().apply(BASE, {"engine": "onnxruntime", "provider": "cpu"})
    model = _pooled_cnn()
    model.train(mode == "train")
    model[2].eval()  # a submodule in its own mode keeps it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    served = serve(tiny_task, plan, model, torch.rand(1, 1, 8, 8), 0)  # a batch of one: fine in eval mode
    assert isinstance(served, OrtModule)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "running statistics changed by serving"
    assert model.training == (mode == "train") and not model[2].training and model[1].training == (mode == "train")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(served(x), model.eval()(x), atol=1e-4, rtol=0)
