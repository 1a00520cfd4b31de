"""Members (search/_members.py): other feasible trained recipes of the study that a plan serves beside its own
model. Which trials can be members, which the core chooses, and how a finished trial's plan, members included, is
rebuilt; on a study of real tiny digits trials sharing a checkpoint cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from autoaccel.options import Options
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search._members import choose_members, member_of, plan_of
from autoaccel.search._plans import Plans
from autoaccel.search._setup import Setup, set_up_search
from autoaccel.task import Task
from autoaccel.trial import TrialRecord, record, run_trial, training_key
from tiny_digits import TIMING_BUDGET_S, make_task

OBJECTIVES = ("accuracy", "train_time", "latency")
BATCH_64 = {"batch_size.size": 64, "batch_size.lr_scaling": "sqrt"}
BF16 = {"precision.dtype": "bf16"}
INT8 = {"quantization.method": "dynamic_int8"}


@dataclass(frozen=True)
class Trained:
    task: Task
    setup: Setup
    plans: Plans
    study: optuna.Study  # 0: the user's recipe, 1: batch 64 served in int8, 2: bf16, 3: an ensemble of 3 over them
    ensemble: Pipeline
    cache: Path


def add(study: optuna.Study, plans: Plans, settings: dict[str, Any], metrics: dict[str, float], details: dict[str, Any],
        role: str = "screen", constraint: float | None = -0.01, state: TrialState = TrialState.COMPLETE,
        plan: Pipeline | None = None, **fields: Any) -> TrialRecord:
    """Record a trial of ``settings`` (its plan built without members unless given) as the executor stores one."""
    config, built, _ = plans.build({**plans.setup.defaults, **settings})
    plan = plan or built
    attrs = record.enqueued(role, config=config, fingerprint=plan.fingerprint(), metrics=metrics, details=details,
                            constraint=constraint, **fields)
    values = [metrics[o] for o in OBJECTIVES] if state == TrialState.COMPLETE else None
    study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=attrs))
    return record.read(study.get_trials()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    task = make_task()
    options = Options(trials=20, target="cpu", strategies=("precision", "batch_size", "quantization", "ensembling"))
    setup = set_up_search(task, options, plugin_manager())
    plans = Plans(task, setup, "both")
    cache = tmp_path_factory.mktemp("checkpoints")
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for settings in ({}, {**BATCH_64, **INT8}, BF16):
        plan = plans.build({**setup.defaults, **settings})[1]
        result = run_trial(task, plan, 0, TIMING_BUDGET_S, cache_dir=str(cache))
        add(study, plans, settings, result.metrics, result.details, role="baseline" if not settings else "screen")
    config, ensemble, missing = plans.build({**setup.defaults, "ensembling.k": 3}, study)
    assert missing == 0
    result = run_trial(task, ensemble, 0, TIMING_BUDGET_S, cache_dir=str(cache))
    add(study, plans, config, result.metrics, result.details, role="candidate", plan=ensemble)
    return Trained(task, setup, plans, study, ensemble, cache)


def trial(t: Trained, number: int) -> TrialRecord:
    return record.read(t.study.get_trials()[number])


def member(t: Trained, number: int) -> Any:
    return member_of(trial(t, number), t.task, t.setup.strategies, t.setup.base, "both")


def test_a_trained_trial_becomes_a_member_with_its_training_settings_and_cost(trained: Trained) -> None:
    got = member(trained, 1)
    done = trial(trained, 1)
    assert got is not None and got.trial == 1 and got.key == done.details["checkpoint"]
    # Its serving settings (int8) are its own trial's business: the member reproduces the training only.
    assert dict(got.params) == BATCH_64 and got.plan.section("quantization") is None and got.plan.batch_size == 64
    assert training_key(trained.task, got.plan) == got.key
    assert got.train_time == done.metrics["train_time"] and got.memory == done.metrics["memory"]
    baseline = member(trained, 0)
    assert baseline is not None and dict(baseline.params) == {} and baseline.key == trained.setup.base.baseline_key


def test_a_trial_that_serves_members_itself_is_not_a_member(trained: Trained) -> None:
    assert trial(trained, 3).members and member(trained, 3) is None


def test_a_trial_without_a_trained_model_or_trained_by_another_recipe_is_not_a_member(trained: Trained) -> None:
    done = trial(trained, 1)
    untrained = TrialRecord(9, TrialState.FAIL, config=done.config, details={})
    assert member_of(untrained, trained.task, trained.setup.strategies, trained.setup.base, "both") is None
    # The same configuration trained at another share of the schedule (a promotion): another model.
    elsewhere = TrialRecord(9, TrialState.COMPLETE, config=done.config, metrics=done.metrics,
                            details={**done.details, "checkpoint": training_key(trained.task, done_plan(trained, 1, 0.5))})
    assert member_of(elsewhere, trained.task, trained.setup.strategies, trained.setup.base, "both") is None


def done_plan(t: Trained, number: int, fraction: float) -> Pipeline:
    return t.plans.build({**t.setup.defaults, **trial(t, number).settings})[1].replace(fraction=fraction)


def test_an_ensemble_is_served_the_most_accurate_other_trainings_of_the_study(trained: Trained) -> None:
    members = trained.ensemble.members
    # The ensemble trains the user's recipe itself: its members are the two other trained recipes, best first.
    assert sorted(m.trial for m in members) == [1, 2]
    accuracy = {n: trial(trained, n).metrics["accuracy"] for n in (1, 2)}
    assert [m.trial for m in members] == sorted(accuracy, key=lambda n: -accuracy[n])
    assert trial(trained, 3).members == [{"trial": m.trial, "train_time": m.train_time} for m in members]


def test_a_finished_trials_plan_is_rebuilt_exactly_members_included(trained: Trained) -> None:
    for number in range(4):
        plan = plan_of(trained.study, number, trained.task, trained.setup.strategies, trained.setup.base, "both")
        assert plan.fingerprint() == trial(trained, number).fingerprint, number
    rebuilt = plan_of(trained.study, 3, trained.task, trained.setup.strategies, trained.setup.base, "both")
    assert rebuilt.members == trained.ensemble.members


def test_a_plan_trained_at_another_share_of_the_schedule_is_rebuilt_at_its_own(trained: Trained) -> None:
    task, setup = trained.task, trained.setup
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    metrics = {"accuracy": 0.9, "train_time": 1.0, "latency": 0.01}
    search_base = setup.base.replace(fraction=0.25)
    search_base = search_base.replace(baseline_key=training_key(task, search_base))
    add(study, trained.plans, BF16, metrics, {}, role="promotion", fraction=1.0)  # the answer, trained whole
    add(study, trained.plans, BF16, metrics, {}, role="screen", fraction=0.25)  # a search trial
    promoted = plan_of(study, 0, task, setup.strategies, search_base, "both")
    assert promoted.fraction == 1.0 and promoted.baseline_key == setup.base.baseline_key
    searched = plan_of(study, 1, task, setup.strategies, search_base, "both")
    assert searched.fraction == 0.25 and searched.baseline_key == search_base.baseline_key


def synthetic(t: Trained) -> optuna.Study:
    """A study whose trials test each rule of the choice (accuracy in brackets, best first):
    5 [0.99] reuses trial 3: no measurement of its own;   6 [0.97] serves members itself;
    2 [0.95] over the accuracy budget;                     4 [0.94] batch 64 served in int8;
    1 [0.93] batch 64: the same training as trial 4;       3 [0.92] bf16;   0 [0.90] the user's recipe;
    7 failed."""
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])

    def trained_as(settings: dict[str, Any], accuracy: float, **fields: Any) -> None:
        plan = t.plans.build({**t.setup.defaults, **settings})[1]
        metrics = {"accuracy": accuracy, "train_time": 1.0 + accuracy, "latency": 0.01, "memory": 100.0}
        details = {"checkpoint": training_key(t.task, plan), **fields.pop("details", {})}
        add(study, t.plans, settings, metrics, details, **fields)

    trained_as({}, 0.90, role="baseline")
    trained_as(BATCH_64, 0.93)
    trained_as({"batch_size.size": 128, "batch_size.lr_scaling": "sqrt"}, 0.95, constraint=0.02)
    trained_as(BF16, 0.92)
    trained_as({**BATCH_64, **INT8}, 0.94)
    trained_as(BF16, 0.99, duplicate_of=3)
    trained_as({"ensembling.k": 2}, 0.97, details={"members": [{"trial": 1, "train_time": 1.93}]})
    add(study, t.plans, {"precision.dtype": "fp16"}, {}, {}, state=TrialState.FAIL, constraint=None)
    return study


def choose(t: Trained, study: optuna.Study, settings: dict[str, Any], k: int) -> list[int]:
    plan = t.plans.build({**t.setup.defaults, **settings})[1]
    return [m.trial for m in choose_members(study, t.task, t.setup.strategies, t.setup.base, "both", plan, k)]


def test_members_are_the_most_accurate_feasible_trainings_each_once_never_the_plans_own(trained: Trained) -> None:
    study = synthetic(trained)
    assert choose(trained, study, {"ensembling.k": 3}, 2) == [4, 3]
    # Fewer when the study has fewer: the user's recipe is the ensemble's own training.
    assert choose(trained, study, {"ensembling.k": 3}, 5) == [4, 3]
    # Over bf16's training, bf16 is its own and the user's recipe can serve.
    assert choose(trained, study, {**BF16, "ensembling.k": 3}, 5) == [4, 0]
    assert choose(trained, study, {"ensembling.k": 2}, 1) == [4]


def test_a_member_is_charged_its_own_training(trained: Trained) -> None:
    study = synthetic(trained)
    plan = trained.plans.build({**trained.setup.defaults, "ensembling.k": 2})[1]
    (chosen,) = choose_members(study, trained.task, trained.setup.strategies, trained.setup.base, "both", plan, 1)
    assert chosen.train_time == pytest.approx(1.94) and chosen.memory == 100.0
    assert dict(chosen.params) == BATCH_64
