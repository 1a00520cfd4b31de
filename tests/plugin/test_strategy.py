"""strategy.py: the Strategy contract, apply_all()'s phase order, split_params(); and the immutable Pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from autoaccel import AutoaccelError, Capability, Phase, Pipeline, Section, Strategy, Target
from autoaccel.plugin._space import Categorical, IntRange, Space
from autoaccel.plugin._strategy import MODES, apply_all, check_relations, ordered, qualified, split_params
from autoaccel.trial import _lifecycle as lifecycle

CPU = Target("cpu", "cpu", "test cpu", 2, 8.0, None, ("fp32", "bf16", "fp16"), {"onnxruntime": True})


@dataclass(frozen=True)
class Seen(Section):
    x: Any


def recorder(strategy_name: str, strategy_phase: Phase, after: tuple[str, ...] = (), before: tuple[str, ...] = (),
             requires: tuple[str, ...] = ()) -> Strategy:
    """A strategy that adds a section holding its ``x``; the plan's steps keep the order they were added in, so
    tests can see what ran when."""

    class Recorder(Strategy):
        name = strategy_name
        phase = strategy_phase

        def space(self, task: object = None) -> Space:
            return {"x": Categorical((0, 1, 2), 0)}

        def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
            return pipeline.with_section(self, Seen(params.get("x")))

    Recorder.after, Recorder.before, Recorder.requires = after, before, requires
    return Recorder()


def order(plan: Pipeline) -> tuple[str, ...]:
    """The order the plan's sections act in (the lifecycle's declared order)."""
    return tuple(f"{step.name}:{step.section.x}" for _, step in lifecycle.steps(plan))  # type: ignore[attr-defined]


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
    assert order(plan) == (
        "zz_data:1", "mm_model:1", "bb_train:1", "prune:1", "quantize:1", "aa_runtime:1",
    )
    # The order does not depend on the order the strategies were given in.
    assert apply_all(list(reversed(strategies)), base(), params) == plan


def test_apply_all_passes_each_strategy_only_its_own_params_unprefixed() -> None:
    a, b = recorder("a", Phase.DATA), recorder("b", Phase.TRAIN)
    plan = apply_all([a, b], base(), {"a.x": 2, "b.x": 0})
    assert order(plan) == ("a:2", "b:0")


def test_apply_all_skips_strategies_without_params_and_never_mutates() -> None:
    start = base()
    snapshot = start.describe()
    plan = apply_all([recorder("a", Phase.DATA), recorder("b", Phase.TRAIN)], start, {"b.x": 1})
    assert order(plan) == ("b:1",)
    assert start.describe() == snapshot and start.steps == ()
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
        space_package = "autoaccel.plugins.precision"  # a strategy outside a plugin folder names the one to read

        def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
            return pipeline

    s = Precision()
    assert s.space()["dtype"].default == "fp32"
    assert s.check(CPU) == Capability(True)


def test_pipeline_replace_returns_a_new_plan() -> None:
    plan = base()
    k = recorder("k", Phase.TRAIN)
    other = plan.replace(batch_size=64).with_section(k, Seen(1))
    assert (plan.batch_size, dict(plan.sections)) == (32, {})
    assert (other.batch_size, dict(other.sections)) == (64, {"k": Seen(1)})
    other.sections["k"] = Seen(2)  # type: ignore[index]  # a copy: the plan keeps its own
    assert other.section("k") == Seen(1) and other.section("nothing") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        other.section("k").x = 2  # type: ignore[union-attr]
    with pytest.raises(AttributeError):
        plan.batch_size = 8  # type: ignore[misc]
    # A strategy's section replaces its earlier one, in place of nothing else.
    again = other.with_section(k, Seen(2))
    assert order(again) == ("k:2",) and order(other) == ("k:1",)


def test_declared_relations_order_strategies_within_a_phase() -> None:
    late = recorder("aa", Phase.RUNTIME, after=("zz",))
    early = recorder("zz", Phase.RUNTIME)
    middle = recorder("mm", Phase.RUNTIME, before=("aa",), after=("zz",))
    data = recorder("yy", Phase.DATA, before=("not_installed",))  # relations to absent strategies are ignored
    assert [s.name for s in ordered([late, early, middle, data])] == ["yy", "zz", "mm", "aa"]
    plan = apply_all([late, early, middle, data], base(), {"aa.x": 1, "zz.x": 1, "mm.x": 1, "yy.x": 1})
    assert order(plan) == ("yy:1", "zz:1", "mm:1", "aa:1")


def test_a_cycle_or_a_relation_against_the_phases_is_one_clear_error() -> None:
    with pytest.raises(AutoaccelError, match="cycle of after/before relations"):
        ordered([recorder("a", Phase.TRAIN, after=("b",)), recorder("b", Phase.TRAIN, after=("a",))])
    with pytest.raises(AutoaccelError, match="strategy 'data' .phase data. is declared to act after 'serve'"):
        ordered([recorder("data", Phase.DATA, after=("serve",)), recorder("serve", Phase.RUNTIME)])


def test_a_missing_required_strategy_is_an_error_naming_its_distribution() -> None:
    needy = recorder("needy", Phase.TRAIN, requires=("helper",))
    with pytest.raises(AutoaccelError, match="strategy 'needy' .distribution 'acme'. requires strategy 'helper'"):
        check_relations([needy], {"needy": "acme"})
    check_relations([needy, recorder("helper", Phase.DATA)])
