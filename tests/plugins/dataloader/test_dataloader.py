"""The dataloader strategy: workers capped at the target's cores, pin_memory only towards a GPU, caching."""

from __future__ import annotations

import pytest

from autoaccel import Pipeline, Target, Task
from autoaccel.plugin._space import Categorical, Condition, IntRange, active
from autoaccel.plugin.testing import StrategyContract
from autoaccel.plugins.dataloader import DataLoaderStrategy, LoaderSection
from tiny_digits import base_plan, train_with

# Without a cached dataset only: with one there is no DataLoader for these to configure.
ONLY_WITHOUT_CACHE = (Condition("cache", (False,)),)

def cpu(cores: int) -> Target:
    return Target("cpu", "cpu", "test cpu", cores, 8.0, None, ("fp32", "bf16", "fp16"), {})


GPU = Target("cuda", "cuda:0", "test gpu", 16, 80.0, (9, 0), ("fp32", "tf32", "bf16", "fp16"), {})


class TestDataLoaderContract(StrategyContract):
    strategy_class = DataLoaderStrategy


class TestDataLoaderContractOnOneCore(StrategyContract):
    strategy_class = DataLoaderStrategy
    targets = (cpu(1),)


@pytest.mark.parametrize(("cores", "high"), [(1, 1), (2, 2), (4, 4), (64, 8)])
def test_num_workers_is_capped_at_the_cores_and_the_yaml_range(cores: int, high: int) -> None:
    assert DataLoaderStrategy().effective_space(cpu(cores))["num_workers"] == IntRange(0, high, 0, when=ONLY_WITHOUT_CACHE)


def test_pin_memory_is_dropped_off_cuda_with_a_reason() -> None:
    s = DataLoaderStrategy()
    assert s.effective_space(cpu(2))["pin_memory"] == Categorical((False,), False, ONLY_WITHOUT_CACHE)
    assert "pin_memory" in s.check(cpu(2)).reason
    assert s.effective_space(GPU)["pin_memory"] == Categorical((False, True), False, ONLY_WITHOUT_CACHE)
    assert s.check(GPU).reason == ""


def test_other_settings_are_left_to_the_search() -> None:
    space = DataLoaderStrategy().effective_space(cpu(2))
    assert space["cache"] == Categorical((False, True), False)
    assert space["prefetch_factor"].choices == (2, 4, 8) and space["prefetch_factor"].default == 2


def test_worker_settings_apply_only_with_workers() -> None:
    """PyTorch's DataLoader refuses persistent_workers or prefetch_factor without workers: never suggested then."""
    space = DataLoaderStrategy().effective_space(cpu(2))
    for name in ("persistent_workers", "prefetch_factor"):
        assert not active(space, name, {"num_workers": 0})
        assert active(space, name, {"num_workers": 2})


def test_apply_builds_the_loader_plan() -> None:
    base = Pipeline(device="cuda:0", batch_size=32, lr=0.1, epochs=1)
    plan = DataLoaderStrategy().apply(base, {"num_workers": 4, "pin_memory": True, "persistent_workers": True,
                                             "prefetch_factor": 8, "cache": False})
    assert plan.section("dataloader") == LoaderSection(num_workers=4, pin_memory=True, persistent_workers=True, prefetch_factor=8)
    assert plan.replace(steps=()) == base


def test_worker_only_settings_are_normalised_without_workers() -> None:
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    plan = DataLoaderStrategy().apply(base, {"num_workers": 0, "persistent_workers": True, "prefetch_factor": 8})
    # Equal plans compare equal: these mean nothing without worker processes (all defaults: no section at all).
    assert plan.section("dataloader") is None
    assert plan == base


@pytest.mark.parametrize(
    "params",
    [
        {"cache": True},
        {"num_workers": 1, "persistent_workers": True, "prefetch_factor": 4},
    ],
    ids=["cache", "one-worker"],
)
def test_trains_with_non_default_loader_settings(tiny_task: Task, params: dict[str, object]) -> None:
    plan = DataLoaderStrategy().apply(base_plan(tiny_task), params)
    assert plan.section("dataloader") not in (None, LoaderSection())
    assert train_with(tiny_task, plan).metrics["accuracy"] > 0.5


def test_a_cached_dataset_takes_no_worker_settings() -> None:
    s = DataLoaderStrategy()
    space = s.effective_space(cpu(2))
    assert not active(space, "num_workers", {"cache": True}) and active(space, "num_workers", {"cache": False})
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    assert s.apply(base, {"cache": True, "num_workers": 2, "pin_memory": True}) == s.apply(base, {"cache": True})
