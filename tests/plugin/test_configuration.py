"""One configuration is one plan: conditional suggestions, no inert settings, fingerprints of plans, factors.

The property tests sample configurations from the full space of every built-in strategy with Optuna's own
random sampler (define-by-run, as the search asks), on the CPU target and on a CUDA target description.
"""

from __future__ import annotations

import itertools
from typing import Any

import optuna
import pytest
from torch import nn

from autoaccel.options import Options
from autoaccel.plugin._configuration import configuration, culprits, factor_of, goal_of, suggest
from autoaccel.plugin._registry import plugin_manager
from autoaccel.plugin._strategy import Phase, apply_all, split_params
from autoaccel.search._setup import Setup, set_up_search
from autoaccel.task._target import hypothetical_target
from tiny_digits import make_task

SAMPLES = 200


def student(size: float = 0.5) -> nn.Module:
    width = max(4, int(32 * size))
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))


def full_plan(target: str) -> Setup:
    """Every built-in strategy that the target runs, on the tiny task with a student (so distillation is in)."""
    pm = plugin_manager()
    if target == "cuda":
        pm.register(_CudaDetector(), name="test-cuda-target")
    return set_up_search(make_task(student=student), Options(target=target if target == "cpu" else "auto"), pm)


class _CudaDetector:
    """Describes a CUDA target on a machine without one: plans are built, never run."""

    from autoaccel.plugin._hookspecs import hookimpl

    @hookimpl(tryfirst=True)
    def autoaccel_detect_target(self, spec: str) -> Any:
        return hypothetical_target("cuda")


def sampled(plan: Setup, n: int, seed: int) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(suggest(trial, plan.strategies, plan.space, "both"))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_no_sampled_configuration_carries_an_inert_setting(target: str) -> None:
    plan = full_plan(target)
    assert len(plan.strategies) >= 11, plan.skipped
    for params in sampled(plan, SAMPLES, seed=1):
        config = configuration(plan.strategies, plan.base, params, plan.defaults)
        full = apply_all(plan.strategies, plan.base, params)
        # The configuration is the same plan as everything suggested, spelled without what changed nothing...
        assert apply_all(plan.strategies, plan.base, config).fingerprint() == full.fingerprint()
        # ...and every setting in it changes the plan.
        for key in config:
            without = {k: v for k, v in config.items() if k != key}
            assert apply_all(plan.strategies, plan.base, without).fingerprint() != full.fingerprint(), (key, config)


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_each_strategy_suggests_only_parameters_that_apply(target: str) -> None:
    """The conditional spaces themselves: within one strategy, every suggested setting off its default changes
    that strategy's plan (so the sampler never spends a dimension on a setting that means nothing)."""
    plan = full_plan(target)
    by_name = {s.name: s for s in plan.strategies}
    for params in sampled(plan, SAMPLES, seed=2):
        for name, local in split_params(params).items():
            strategy = by_name[name]
            for param, value in local.items():
                if value == plan.defaults[f"{name}.{param}"]:
                    continue
                reset = {**local, param: plan.defaults[f"{name}.{param}"]}
                assert strategy.apply(plan.base, local) != strategy.apply(plan.base, reset), (name, param, local)


def test_equal_plans_have_equal_fingerprints_and_only_they() -> None:
    plan = full_plan("cpu")
    plans = [apply_all(plan.strategies, plan.base, p) for p in sampled(plan, 60, seed=3)]
    plans.append(apply_all(plan.strategies, plan.base, {"batch_size.size": 32, "batch_size.lr_scaling": "linear"}))
    plans.append(plan.base)  # the same plan as the one above: the tiny task's batch size is 32
    for a, b in itertools.combinations(plans, 2):
        assert (a.describe() == b.describe()) == (a.fingerprint() == b.fingerprint())
    assert plans[-1].fingerprint() == plans[-2].fingerprint()


def test_inert_spellings_reduce_to_the_same_configuration() -> None:
    plan = full_plan("cpu")
    cases = {
        # An LR scaling rule with the user's own batch size, stacking with one model, an amount without pruning,
        # worker settings without workers, and an ONNX Runtime engine that static int8 already implies.
        "batch_size.lr_scaling": "sqrt", "ensembling.method": "stacking", "pruning.amount": 0.75,
        "dataloader.persistent_workers": True, "dataloader.prefetch_factor": 8,
    }
    assert configuration(plan.strategies, plan.base, {**plan.defaults, **cases}, plan.defaults) == {}
    int8 = {**plan.defaults, "quantization.method": "static_int8_ort", "runtime.engine": "onnxruntime"}
    assert configuration(plan.strategies, plan.base, int8, plan.defaults) == {"quantization.method": "static_int8_ort"}


def test_factors_goals_and_culprits() -> None:
    plan = full_plan("cpu")
    by_name = {s.name: s for s in plan.strategies}
    assert {factor_of(s, "both") for s in plan.strategies if s.phase in (Phase.POST_TRAIN, Phase.RUNTIME)} == {"serve"}
    assert factor_of(by_name["compile"], "both") == "train" and factor_of(by_name["compile"], "inference") == "serve"
    assert goal_of({}, plan.strategies, "both") == "baseline"
    assert goal_of({"batch_size.size": 64}, plan.strategies, "both") == "train"
    assert goal_of({"quantization.method": "dynamic_int8"}, plan.strategies, "both") == "serve"
    assert goal_of({"batch_size.size": 64, "quantization.method": "dynamic_int8"}, plan.strategies, "both") == "combined"
    config = {"batch_size.size": 64, "pruning.method": "structured", "quantization.method": "dynamic_int8"}
    # A failure in a strategy's hook (stage "<hook>:<strategy>") names that technique and its choice.
    assert culprits(plan.strategies, plan.base, config, "transform:quantization") == "quantization.method=dynamic_int8"
    assert culprits(plan.strategies, plan.base, config, "transform:pruning") == "pruning.method=structured"
    assert culprits(plan.strategies, plan.base, config, "training") == "batch_size.size=64"
    assert culprits(plan.strategies, plan.base, {}, "training") == "your recipe"


def test_a_sampled_trial_varies_one_factor() -> None:
    plan = full_plan("cpu")
    by_name = {s.name: s for s in plan.strategies}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    for factor in ("train", "serve") * 10:
        trial = study.ask()
        params = suggest(trial, plan.strategies, plan.space, "both", (factor,))
        study.tell(trial, 0.0)
        assert params and {factor_of(by_name[n], "both") for n in split_params(params)} == {factor}
