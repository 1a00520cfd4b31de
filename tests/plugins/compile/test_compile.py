"""compile: contract; reduce-overhead only on CUDA; a compiled model trains and serves on CPU, compile time apart."""

from __future__ import annotations

import pytest

from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin.testing import CPU, CUDA, StrategyContract
from autoaccel.plugins.compile import CompileSection, CompileStrategy
from autoaccel.trial._run import run_trial


class TestCompileContract(StrategyContract):
    strategy_class = CompileStrategy


def test_reduce_overhead_is_cuda_only() -> None:
    assert "reduce-overhead" not in CompileStrategy().check(CPU).allowed["mode"]
    assert "CUDA graphs" in CompileStrategy().check(CPU).reason
    assert "reduce-overhead" in CompileStrategy().check(CUDA).allowed["mode"]


def test_off_is_the_identity_and_modes_set_the_plan() -> None:
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    assert CompileStrategy().apply(base, {"mode": "off"}) == base
    assert CompileStrategy().apply(base, {"mode": "default"}).section("compile") == CompileSection("default")


@pytest.mark.slow
def test_compiled_model_trains_and_serves_on_cpu(tiny_task) -> None:  # type: ignore[no-untyped-def]
    plan = CompileStrategy().apply(Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1), {"mode": "default"})
    result = run_trial(tiny_task, plan, timing_budget_s=0.05)
    assert result.details["runtime"] == "OptimizedModule"
    # Compilation is reported on its own and kept out of the steady-state training time.
    assert result.details["compile_s"] > 0
    assert result.details["latency_first_call_ms"] > result.metrics["latency"]
    assert result.metrics["accuracy"] > 0.5
