"""cudnn_benchmark: a CUDA-only strategy says so elsewhere; its backend flags hold for the plan's run only."""

from __future__ import annotations

import torch

from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin.testing import CPU, CUDA, StrategyContract
from autoaccel.plugins.cudnn_benchmark import CudnnBenchmarkStrategy, CudnnSection, backend_flags
from autoaccel.trial import _lifecycle as lifecycle


class TestCudnnBenchmarkContract(StrategyContract):
    strategy_class = CudnnBenchmarkStrategy


def test_cuda_only_strategies_are_unsupported_on_cpu_with_a_reason() -> None:
    s = CudnnBenchmarkStrategy()
    cap = s.check(CPU)
    assert not cap.supported and "CUDA" in cap.reason
    assert s.check(CUDA).supported


def test_backend_flags_are_restored_after_the_plan() -> None:
    before = (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision())
    base = Pipeline(device="cpu", batch_size=1, lr=1.0, epochs=1)
    plan = CudnnBenchmarkStrategy().apply(base, {"enabled": True, "matmul_precision": "high"})
    section = plan.section("cudnn_benchmark")
    assert section == CudnnSection(benchmark=True, matmul_precision="high")
    with backend_flags(section):
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
    assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before
    with lifecycle.inference(plan):  # what the plan's inference runs under
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
    assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before
