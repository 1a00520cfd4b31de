"""The plugin's strategies under autoaccel's contract suite (real one-epoch runs on scikit-learn's digits), and
the behaviour each promises."""

from __future__ import annotations

import torch
from autoaccel_torch_knobs.optimizer_kernels import OptimizerKernelsStrategy
from autoaccel_torch_knobs.torch_inference import InferenceSection, TorchInferenceStrategy, torch_inference

from autoaccel.plugin import Pipeline, StrategyContract, TrainingSetup
from autoaccel.plugin.testing import contract_task
from autoaccel.trial import setup_for


class TestOptimizerKernelsContract(StrategyContract):
    strategy_class = OptimizerKernelsStrategy


class TestTorchInferenceContract(StrategyContract):
    strategy_class = TorchInferenceStrategy


def _setup(implementation: str) -> TrainingSetup:
    task = contract_task()
    base = Pipeline(device="cpu", batch_size=task.batch_size, lr=task.lr, epochs=1)
    plan = OptimizerKernelsStrategy().apply(base, {"implementation": implementation})
    return setup_for(task.model(), task, plan, seed=0)


def test_the_optimizer_is_rebuilt_with_the_kernel_and_keeps_its_hyper_parameters() -> None:
    for implementation in ("foreach", "fused"):
        setup = _setup(implementation)
        group = setup.optimizer.param_groups[0]
        assert group[implementation] is True
        assert group["lr"] == setup.plan.lr and group["momentum"] == 0.9  # the task's SGD with momentum 0.9


def test_it_acts_before_the_scheduler_which_then_drives_the_rebuilt_optimizer() -> None:
    from autoaccel.plugin._registry import default_registry
    from autoaccel.plugin._strategy import apply_all

    registry = default_registry()
    task = contract_task()
    base = Pipeline(device="cpu", batch_size=task.batch_size, lr=task.lr, epochs=1)
    plan = apply_all(list(registry.strategies.values()), base, {"scheduler.kind": "cosine", "optimizer_kernels.implementation": "foreach"})
    setup = setup_for(task.model(), task, plan, seed=0)
    assert setup.scheduler is not None and setup.scheduler.optimizer is setup.optimizer


def test_torch_inference_sets_threads_and_mode_for_the_call_only() -> None:
    before = torch.get_num_threads()
    with torch_inference(InferenceSection(threads=1, inference_mode=True)):
        assert torch.get_num_threads() == 1
        assert torch.is_inference_mode_enabled()
    assert torch.get_num_threads() == before and not torch.is_inference_mode_enabled()
