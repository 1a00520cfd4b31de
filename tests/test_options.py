"""options.py: every bad option is one line naming the flag, checked before any storage is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoaccel import AutoaccelError
from autoaccel.api import make_options
from autoaccel.options import BUDGET_TRIAL_CAP, DEFAULT_BUDGET_MINUTES, DEFAULT_OBJECTIVES, INFERENCE_OBJECTIVES, Options


def test_defaults_are_valid() -> None:
    opts = Options().validate()
    assert opts.resolved_objectives() == DEFAULT_OBJECTIVES == ("accuracy", "train_time", "latency")
    assert Options(mode="inference").resolved_objectives() == INFERENCE_OBJECTIVES == ("accuracy", "latency")


def test_a_run_with_no_limit_given_is_bounded_by_the_default_budget() -> None:
    assert Options().resolved_budget() == DEFAULT_BUDGET_MINUTES
    assert Options().resolved_trials() == BUDGET_TRIAL_CAP
    # --trials or --timeout alone: the user chose the limit, no budget is added to it
    assert Options(trials=8).resolved_budget() is None and Options(trials=8).resolved_trials() == 8
    assert Options(timeout=60).resolved_budget() is None
    assert Options(trials=8, budget=2).resolved_budget() == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trials": 0}, r"^--trials: must be a positive integer, but got 0"),
        ({"trials": 2.5}, r"^--trials: must be a positive integer, but got 2\.5"),
        ({"timeout": 0}, r"^--timeout: must be a positive number of seconds, but got 0"),
        ({"budget": 0}, r"^--budget: must be a positive number of minutes, e\.g\. 5, but got 0"),
        ({"budget": float("nan")}, r"^--budget: must be a positive number of minutes, e\.g\. 5, but got nan"),
        ({"trial_timeout": -1.0}, r"^--trial-timeout: must be a positive number of seconds, but got -1\.0"),
        ({"remeasure_rounds": 1}, r"^--remeasure-rounds: must be 0 \(off\) or at least 2 rounds, but got 1"),
        ({"sampler": "tp"}, r"^--sampler: unknown sampler 'tp'; did you mean 'tpe'\? \(expected one of tpe, nsga2, random, grid\)"),
        ({"mode": "infer"}, r"^--mode: unknown mode 'infer'; did you mean 'inference'\?"),
        ({"max_accuracy_drop": -0.01}, r"^--max-quality-drop: must be >= 0, .*but got -0\.01"),
        ({"max_accuracy_drop": "two%"}, r"^--max-quality-drop: must be >= 0, .*relative to your recipe's value \(e\.g\. 2%\), but got 'two%'"),
        ({"max_accuracy_drop": "-1%"}, r"^--max-quality-drop: must be >= 0, .*but got '-1%'"),
        ({"max_accuracy_drop": True}, r"^--max-quality-drop: must be >= 0, .*but got True"),
        ({"objectives": ("accuracy", "latncy")}, r"^--objectives: unknown objective 'latncy'; did you mean 'latency'\?"),
        ({"objectives": ("accuracy", "latency", "latency")}, r"^--objectives: each objective may appear once"),
        ({"objectives": ("latency", "train_time")}, r"^--objectives: must include accuracy"),
        ({"objectives": ("accuracy",)}, r"^--objectives: needs accuracy and at least one speed objective"),
        ({"mode": "inference", "objectives": ("accuracy", "train_time")}, r"^--objectives: train_time means nothing in --mode inference"),
    ],
)
def test_bad_option_names_the_flag(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AutoaccelError, match=message) as info:
        Options(**changes).validate()
    assert "\n" not in str(info.value)


def test_nan_accuracy_budget_is_refused() -> None:
    with pytest.raises(AutoaccelError, match=r"^--max-quality-drop"):
        Options(max_accuracy_drop=float("nan")).validate()


def test_out_dir_and_storage_defaults(tmp_path: Path) -> None:
    assert Options().out_dir("digits") == Path("autoaccel-out") / "digits"
    opts = Options(out=str(tmp_path / "o"))
    assert opts.out_dir("digits") == tmp_path / "o"
    assert opts.storage_url("digits") == f"sqlite:///{(tmp_path / 'o' / 'study.db').resolve()}"
    assert Options(storage="postgresql://db/x").storage_url("digits") == "postgresql://db/x"


def test_make_options_for_the_python_api() -> None:
    opts = make_options(trials=3, objectives="accuracy, latency", strategies=["precision"])
    assert opts.objectives == ("accuracy", "latency") and opts.strategies == ("precision",)
    with pytest.raises(AutoaccelError, match=r"^optimize\(\): unknown option 'trails'; did you mean 'trials'\?"):
        make_options(trails=3)


def test_a_quality_budget_is_absolute_or_relative_to_the_baseline() -> None:
    assert Options(max_accuracy_drop=0.01).drop_spec() == (0.01, False)
    assert Options(max_accuracy_drop="0.5").drop_spec() == (0.5, False)  # the CLI passes its text
    assert Options(max_accuracy_drop="2%").validate().drop_spec() == (0.02, True)
