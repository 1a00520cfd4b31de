"""strategy.py: the Strategy contract, apply_all()'s phase order, split_params(); and the immutable Pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from autoaccel import Capability, Phase, Pipeline, Strategy
from autoaccel.space import Categorical, IntRange, Space
from autoaccel.strategy import MODES, apply_all, qualified, split_params
from autoaccel.testing import CPU


def recorder(strategy_name: str, strategy_phase: Phase) -> Strategy:
    """A strategy that appends ``name:params`` to the plan's extras['order'], so tests can see what ran when."""

    class Recorder(Strategy):
        name = strategy_name
        phase = strategy_phase

        def space(self, task: object = None) -> Space:
            return {"x": Categorical((0, 1, 2), 0)}

        def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
            order = (*pipeline.extras.get("order", ()), f"{self.name}:{params.get('x')}")
            return pipeline.with_extra("order", order)

    return Recorder()


def base() -> Pipeline:
    return Pipeline(device="cpu", batch_size=32, lr=0.01, epochs=2)


def test_apply_all_follows_phase_order_then_name() -> None:
    strategies = [
        recorder("aa_runtime", Phase.RUNTIME),
        recorder("quantize", Phase.POST_TRAIN),
        recorder("prune", Phase.POST_TRAIN),
        recorder("zz_data", Phase.DATA),
        recorder("mm_model", Phase.MODEL),
        recorder("bb_train", Phase.TRAIN),
    ]
    params = {f"{s.name}.x": 1 for s in strategies}
    plan = apply_all(strategies, base(), params)
    assert plan.extras["order"] == (
        "zz_data:1", "mm_model:1", "bb_train:1", "prune:1", "quantize:1", "aa_runtime:1",
    )
    # The order does not depend on the order the strategies were given in.
    assert apply_all(list(reversed(strategies)), base(), params) == plan


def test_apply_all_passes_each_strategy_only_its_own_params_unprefixed() -> None:
    a, b = recorder("a", Phase.DATA), recorder("b", Phase.TRAIN)
    plan = apply_all([a, b], base(), {"a.x": 2, "b.x": 0})
    assert plan.extras["order"] == ("a:2", "b:0")


def test_apply_all_skips_strategies_without_params_and_never_mutates() -> None:
    start = base()
    snapshot = start.describe()
    plan = apply_all([recorder("a", Phase.DATA), recorder("b", Phase.TRAIN)], start, {"b.x": 1})
    assert plan.extras["order"] == ("b:1",)
    assert start.describe() == snapshot and "order" not in start.extras
    assert apply_all([recorder("a", Phase.DATA)], start, {}) == start


def test_split_params_groups_by_strategy_and_splits_at_the_first_dot() -> None:
    assert split_params({"a.x": 1, "b.y": 2, "a.z": 3, "c.d.e": 4}) == {
        "a": {"x": 1, "z": 3},
        "b": {"y": 2},
        "c": {"d.e": 4},
    }
    assert split_params({}) == {}


def test_qualified_names_are_strategy_dot_param() -> None:
    assert qualified(recorder("precision", Phase.TRAIN), "dtype") == "precision.dtype"


def test_phase_order_puts_pruning_before_quantization_and_modes_pick_phases() -> None:
    assert [p.name for p in sorted(Phase)] == ["DATA", "MODEL", "TRAIN", "POST_TRAIN", "RUNTIME"]
    assert MODES["train"] == {Phase.DATA, Phase.MODEL, Phase.TRAIN}
    assert MODES["inference"] == {Phase.MODEL, Phase.POST_TRAIN, Phase.RUNTIME}
    assert MODES["both"] == set(Phase)


def test_strategy_is_abstract() -> None:
    class NoApply(Strategy):
        name = "no_apply"
        phase = Phase.DATA

    with pytest.raises(TypeError, match="abstract"):
        NoApply()  # type: ignore[abstract]


def test_effective_space_applies_check_and_defaults_come_from_the_space() -> None:
    class Picky(Strategy):
        name = "picky"
        phase = Phase.TRAIN

        def space(self, task: object = None) -> Space:
            return {"mode": Categorical(("off", "a", "b"), "off"), "n": IntRange(0, 8, 1)}

        def check(self, target: object) -> Capability:
            return Capability(True, "b is not here", {"mode": ["b"], "n": [1, 2, 3]})

        def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
            return pipeline

    s = Picky()
    assert s.effective_space(CPU) == {"mode": Categorical(("off", "b"), "off"), "n": IntRange(1, 3, 1)}
    assert s.defaults() == {"mode": "off", "n": 1}


def test_default_strategy_space_reads_its_yaml_and_check_supports_everything() -> None:
    class Precision(Strategy):
        name = "precision"
        phase = Phase.TRAIN

        def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
            return pipeline

    s = Precision()
    assert s.space()["dtype"].default == "fp32"
    assert s.check(CPU) == Capability(True)


def test_pipeline_replace_returns_a_new_plan() -> None:
    plan = base()
    other = plan.replace(batch_size=64).with_extra("k", 1)
    assert (plan.batch_size, dict(plan.extras)) == (32, {})
    assert (other.batch_size, dict(other.extras)) == (64, {"k": 1})
    with pytest.raises(TypeError):
        other.extras["k"] = 2  # type: ignore[index]
    with pytest.raises(AttributeError):
        plan.batch_size = 8  # type: ignore[misc]
