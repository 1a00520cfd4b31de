"""The precision strategy: fp32 / tf32 / bf16 / fp16 (+ loss scaling), narrowed to what the target can do."""

from __future__ import annotations

import pytest

from autoaccel import Pipeline, Target, Task
from autoaccel.plugin._space import Categorical
from autoaccel.plugin.testing import StrategyContract
from autoaccel.plugins.precision import PrecisionSection, PrecisionStrategy
from autoaccel.trial._train import setup_for
from tiny_digits import base_plan, make_mlp, train_with

CPU = Target("cpu", "cpu", "test cpu", 2, 8.0, None, ("fp32", "bf16", "fp16"), {})
# What cuda_target() reports for a V100 (compute capability 7.0) and an A100 (8.0).
V100 = Target("cuda", "cuda:0", "Tesla V100", 8, 16.0, (7, 0), ("fp32", "fp16"), {})
A100 = Target("cuda", "cuda:0", "A100", 8, 80.0, (8, 0), ("fp32", "tf32", "bf16", "fp16"), {})


class TestPrecisionContract(StrategyContract):
    strategy_class = PrecisionStrategy
    targets = (CPU, V100, A100)


def dtypes(target: Target) -> tuple[str, ...]:
    param = PrecisionStrategy().effective_space(target)["dtype"]
    assert isinstance(param, Categorical)
    return param.choices


def test_cpu_drops_tf32_and_says_why() -> None:
    assert dtypes(CPU) == ("fp32", "bf16", "fp16")
    cap = PrecisionStrategy().check(CPU)
    assert cap.supported
    assert "tf32" in cap.reason and "bf16" not in cap.reason


def test_cuda_compute_capability_7_drops_bf16_and_tf32() -> None:
    assert dtypes(V100) == ("fp32", "fp16")
    reason = PrecisionStrategy().check(V100).reason
    assert "bf16 needs compute capability 8.0" in reason and "tf32" in reason


def test_cuda_compute_capability_8_keeps_everything() -> None:
    assert dtypes(A100) == ("fp32", "tf32", "bf16", "fp16")
    assert PrecisionStrategy().check(A100).reason == ""


@pytest.mark.parametrize(("dtype", "scaling"), [("fp32", False), ("tf32", False), ("bf16", False), ("fp16", True)])
def test_apply_sets_precision_and_loss_scaling_only_for_fp16(tiny_task: Task, dtype: str, scaling: bool) -> None:
    base = Pipeline(device="cuda:0", batch_size=32, lr=0.1, epochs=1)
    plan = PrecisionStrategy().apply(base, {"dtype": dtype})
    # fp32 is the absence of a section; any other dtype is the precision section.
    assert plan.section("precision") == (None if dtype == "fp32" else PrecisionSection(dtype))
    # Loss scaling is what the section makes of the training run: a GradScaler for fp16 only.
    setup = setup_for(make_mlp(), tiny_task, plan.replace(device="cpu"), 0)
    assert (setup.scaler is not None) == scaling
    assert plan.replace(steps=()) == base, "nothing else changes"


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_trains_with_autocast_on_cpu(tiny_task: Task, dtype: str) -> None:
    plan = PrecisionStrategy().apply(base_plan(tiny_task), {"dtype": dtype})
    result = train_with(tiny_task, plan)
    assert result.metrics["accuracy"] > 0.5


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16", "tf32"])
def test_trains_on_cuda(tiny_task: Task, dtype: str) -> None:
    import torch

    if dtype != "fp16" and torch.cuda.get_device_capability(0) < (8, 0):
        pytest.skip(f"{dtype} needs compute capability 8.0")
    plan = PrecisionStrategy().apply(base_plan(tiny_task, "cuda:0"), {"dtype": dtype})
    assert train_with(tiny_task, plan).metrics["accuracy"] > 0.5
