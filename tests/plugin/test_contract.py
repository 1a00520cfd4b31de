"""The contract suite catches what it promises to catch: each broken strategy below fails the test named for
its fault (and a well-behaved one passes them all, which tests/plugins/<name>/ shows for every built-in)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from torch import nn

from autoaccel.plugin import Categorical, Phase, Pipeline, Section, Space, Strategy, TransformContext, TrialFailure
from autoaccel.plugin._space import Condition
from autoaccel.plugin.testing import StrategyContract


@dataclass(frozen=True)
class Flag(Section):
    on: bool = True


class Honest(Strategy):
    name = "honest"
    phase = Phase.POST_TRAIN

    def space(self, task: Any = None) -> Space:
        return {"on": Categorical((False, True), False),
                "level": Categorical((1, 2), 1, (Condition("on", (True,)),))}

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.with_section(self, Flag()) if params.get("on") else pipeline


class SecretlyTrains(Honest):
    """Changes the learning rate (so training) without declaring changes_training."""

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.replace(lr=pipeline.lr * 2) if params.get("on") else pipeline


class UndeclaredTrainer(Honest):
    """Changes the training run through its hook without declaring changes_training: its trials would reuse the
    baseline's checkpoint and the hook would never run."""

    def configure_training(self, section: Section, setup: Any) -> None:
        for group in setup.optimizer.param_groups:
            group["lr"] = 0.0


class InactiveMatters(Honest):
    """Its `level` changes the plan even while `on` is off, when the space says it does not apply."""

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.with_section(self, Flag(params.get("level", 1) == 2)) if params.get("on") or params.get("level", 1) == 2 else pipeline


class OffIsNotOff(Honest):
    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.with_section(self, Flag(bool(params.get("on"))))


@dataclass(frozen=True)
class Untyped:  # not a Section: the core could not ask it what it fixes or which engine serves
    on: bool = True


class UntypedSection(Honest):
    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.with_section(self, Untyped()) if params.get("on") else pipeline  # type: ignore[arg-type]


class Crashes(Honest):
    """Its one choice breaks every model (not "unsupported here": a bug)."""

    def transform(self, section: Section, model: nn.Module, ctx: TransformContext) -> nn.Module:
        raise TrialFailure("boom", kind="error")


class Unsupported(Honest):
    def transform(self, section: Section, model: nn.Module, ctx: TransformContext) -> nn.Module:
        raise TrialFailure("this model has no layer this technique can use", kind="unsupported")


def contract(strategy: type[Strategy]) -> StrategyContract:
    suite = StrategyContract()
    suite.strategy_class = strategy  # type: ignore[misc]
    return suite


@pytest.mark.parametrize("strategy, test", [
    (SecretlyTrains, "test_training_key_changes_iff_declared"),
    (UndeclaredTrainer, "test_training_key_changes_iff_declared"),
    (InactiveMatters, "test_inactive_settings_change_nothing"),
    (OffIsNotOff, "test_defaults_are_the_identity"),
    (UntypedSection, "test_apply_never_mutates_and_returns_a_typed_section"),
    (Crashes, "test_every_choice_runs_end_to_end"),
])
def test_the_contract_catches_a_broken_strategy(strategy: type[Strategy], test: str) -> None:
    with pytest.raises(AssertionError):
        getattr(contract(strategy), test)()


@pytest.mark.parametrize("strategy", [Honest, Unsupported])
def test_a_well_behaved_strategy_passes_and_unsupported_choices_are_excused(strategy: type[Strategy]) -> None:
    suite = contract(strategy)
    for test in ("test_training_key_changes_iff_declared", "test_inactive_settings_change_nothing",
                 "test_defaults_are_the_identity", "test_apply_never_mutates_and_returns_a_typed_section",
                 "test_every_choice_runs_end_to_end"):
        getattr(suite, test)()
