"""How the search tells the study a trial's outcome (search/_outcomes.py): measured (objectives in order, the
accuracy constraint against the baseline), failed, or reused from an earlier trial of the same plan; and the
plugins' observers hear of each measured or failed trial. Results come from real tiny digits trials."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import pluggy
import pytest
from optuna.trial import TrialState

from autoaccel.options import Options
from autoaccel.plugin import hookimpl
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search._outcomes import Outcomes
from autoaccel.trial import TrialRecord, TrialResult, record, run_trial
from tiny_digits import TIMING_BUDGET_S, base_plan, make_task, with_params

# Not the order run_trial reports them in: the study's values must follow the objectives.
OBJECTIVES = ("accuracy", "latency", "train_time")


@dataclass
class Observer:
    """A plugin that logs every finished trial it hears of (as a reporter or logger would)."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    @hookimpl
    def autoaccel_trial_finished(self, record: dict[str, Any]) -> None:
        self.seen.append(record)


@dataclass(frozen=True)
class Runs:
    base: Pipeline
    speed_only: Pipeline  # channels_last: the same training math as the user's recipe
    results: dict[str, TrialResult]


@pytest.fixture(scope="module")
def runs() -> Runs:
    task = make_task()
    base = base_plan(task)
    speed_only = with_params(base, {"memory_format.format": "channels_last"})
    assert speed_only.math_key() == base.math_key() and speed_only.speed_only_tolerance() is not None
    plans = {"base": base, "speed_only": speed_only, "untrained": base.replace(lr=1e-5)}  # too small an lr to learn
    results = {name: run_trial(task, plan, 0, TIMING_BUDGET_S) for name, plan in plans.items()}
    assert results["base"].metrics["accuracy"] - results["untrained"].metrics["accuracy"] > 0.3
    return Runs(base, speed_only, results)


def outcomes(drop: float | str = 0.01) -> tuple[Outcomes, Observer]:
    pm: pluggy.PluginManager = plugin_manager(load_entrypoints=False)
    observer = Observer()
    pm.register(observer)
    return Outcomes(pm, OBJECTIVES, Options(max_accuracy_drop=drop)), observer


def new_study() -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize", "minimize"])


def asked(study: optuna.Study, plan: Pipeline, role: str = "candidate", goal: str = "train",
          fraction: float | None = None) -> optuna.Trial:
    """A trial asked and described as the executor does before measuring it."""
    trial = study.ask()
    record.write(trial, role=role, config={}, goal=goal, fingerprint=plan.fingerprint(), fraction=fraction,
                 math={"key": plan.math_key(), "tolerance": plan.speed_only_tolerance()})
    return trial


def copy(result: TrialResult) -> TrialResult:
    """A fresh copy: recording may change a result's dicts in place (a speed-only trial's inherited quality)."""
    return TrialResult(dict(result.metrics), dict(result.ci95), dict(result.details))


def read(study: optuna.Study, number: int) -> TrialRecord:
    return record.read(study.get_trials()[number])


def measured_baseline(study: optuna.Study, runs: Runs, out: Outcomes) -> TrialRecord:
    trial = asked(study, runs.base, role="baseline", goal="baseline")
    assert out.complete(study, trial, copy(runs.results["base"]), time.monotonic())
    return read(study, trial.number)


def test_the_baseline_is_recorded_with_its_objectives_in_order_and_fixes_a_relative_budget(runs: Runs) -> None:
    out, _ = outcomes("5%")
    study = new_study()
    started = time.monotonic()
    base = measured_baseline(study, runs, out)
    metrics = runs.results["base"].metrics
    assert base.state == TrialState.COMPLETE and base.values == [metrics[o] for o in OBJECTIVES]
    # 5% of the baseline's accuracy, in the metric's own units, for every later trial of the study
    budget = study.user_attrs["max_accuracy_drop"]
    assert budget == pytest.approx(0.05 * metrics["accuracy"])
    assert base.constraint == pytest.approx(-budget) and base.feasible
    assert study.get_trials()[0].constraints == {"accuracy_drop": pytest.approx(-budget)}  # what the sampler sees
    assert base.metrics == metrics and base.details["correct_n"] == runs.results["base"].details["correct_n"]
    assert base.seconds is not None and 0.0 <= base.seconds <= time.monotonic() - started


def test_a_candidate_is_feasible_or_not_by_its_accuracy_drop_from_the_baseline(runs: Runs) -> None:
    out, _ = outcomes(0.01)
    study = new_study()
    base = measured_baseline(study, runs, out)
    budget = study.user_attrs["max_accuracy_drop"]
    same = asked(study, runs.base.replace(eval_batch_size=128))
    assert out.complete(study, same, copy(runs.results["base"]), time.monotonic())
    assert read(study, same.number).constraint == pytest.approx(-0.01) and read(study, same.number).feasible
    worse = asked(study, runs.base.replace(lr=1e-5))
    assert out.complete(study, worse, copy(runs.results["untrained"]), time.monotonic())
    lost = base.metrics["accuracy"] - runs.results["untrained"].metrics["accuracy"]
    judged = read(study, worse.number)
    assert judged.constraint == pytest.approx(lost - 0.01) and not judged.feasible
    assert study.get_trials()[worse.number].constraints == {"accuracy_drop": pytest.approx(lost - 0.01)}
    assert study.user_attrs["max_accuracy_drop"] == budget  # set once, by the baseline


def test_a_compressed_trial_is_over_the_budget_only_by_the_low_end_of_its_drop(runs: Runs) -> None:
    out, _ = outcomes(0.01)
    study = new_study()
    measured_baseline(study, runs, out)
    whole = asked(study, runs.base.replace(lr=1e-5))
    out.complete(study, whole, copy(runs.results["untrained"]), time.monotonic())
    short = asked(study, runs.base.replace(lr=1e-5, fraction=0.25), fraction=0.25)
    out.complete(study, short, copy(runs.results["untrained"]), time.monotonic())
    at_whole, at_quarter = read(study, whole.number).constraint, read(study, short.number).constraint
    assert at_whole is not None and at_quarter is not None and at_quarter < at_whole


def test_a_speed_only_change_whose_loss_agrees_takes_the_quality_of_the_same_math(runs: Runs) -> None:
    out, _ = outcomes()
    study = new_study()
    base = measured_baseline(study, runs, out)
    trial = asked(study, runs.speed_only)
    assert out.complete(study, trial, copy(runs.results["speed_only"]), time.monotonic())
    done = read(study, trial.number)
    assert done.details["quality"]["sanity"] == "passed" and done.details["quality"]["from"] == base.number
    assert done.metrics["accuracy"] == base.metrics["accuracy"] and done.details["correct"] == base.details["correct"]
    assert done.feasible


def test_a_speed_only_change_whose_loss_drifted_keeps_its_own_quality_and_says_so(runs: Runs) -> None:
    out, _ = outcomes()
    study = new_study()
    base = measured_baseline(study, runs, out)
    # Declared speed-only (its math key is the recipe's), but it trained nothing: a broken "speed-only" section.
    trial = asked(study, runs.speed_only)
    assert out.complete(study, trial, copy(runs.results["untrained"]), time.monotonic())
    done = read(study, trial.number)
    quality = done.details["quality"]
    assert quality["sanity"] == "failed" and quality["against"] == base.number and "from" not in quality
    assert done.metrics["accuracy"] == runs.results["untrained"].metrics["accuracy"] and not done.feasible


def test_observers_hear_of_each_measured_and_failed_trial_as_stored(runs: Runs) -> None:
    out, observer = outcomes()
    study = new_study()
    measured_baseline(study, runs, out)
    failed = asked(study, runs.base.replace(batch_size=4096))
    out.fail(study, failed, "oom", "batch_size.size=4096: out of memory", time.monotonic())
    assert [(r["number"], r["state"]) for r in observer.seen] == [(0, "complete"), (1, "failed")]
    assert observer.seen[0]["metrics"] == runs.results["base"].metrics and observer.seen[0]["role"] == "baseline"
    assert observer.seen[1]["failure_kind"] == "oom" and observer.seen[1]["reason"] == "batch_size.size=4096: out of memory"


def test_a_failed_trial_keeps_its_kind_its_reason_and_how_long_it_ran() -> None:
    out, _ = outcomes()
    study = new_study()
    trial = study.ask()
    out.fail(study, trial, "timeout", "stopped after 3600 s", time.monotonic() - 2.0)
    done = read(study, trial.number)
    assert done.state == TrialState.FAIL and done.failure_kind == "timeout" and done.reason == "stopped after 3600 s"
    assert done.seconds is not None and done.seconds >= 2.0


def test_a_reused_trial_takes_its_twins_results_and_names_it(runs: Runs) -> None:
    out, _ = outcomes()
    study = new_study()
    measured_baseline(study, runs, out)
    worse = asked(study, runs.base.replace(lr=1e-5))
    record.write(worse, plan={"lr": 1e-5})
    out.complete(study, worse, copy(runs.results["untrained"]), time.monotonic())
    twin = read(study, worse.number)
    again = study.ask()
    out.reuse(study, again, twin)
    reused = read(study, again.number)
    assert reused.state == TrialState.COMPLETE and reused.duplicate_of == twin.number
    assert reused.values == twin.values and reused.metrics == twin.metrics and reused.details == twin.details
    assert reused.plan == {"lr": 1e-5} and reused.constraint == twin.constraint and not reused.feasible
    assert study.get_trials()[again.number].constraints == {"accuracy_drop": twin.constraint}


@pytest.mark.parametrize("kind, said", [("oom", "oom"), (None, "error")])
def test_reusing_a_failed_configuration_fails_with_its_twins_kind_and_reason(kind: str | None, said: str) -> None:
    out, _ = outcomes()
    study = new_study()
    first = study.ask()
    if kind is not None:
        record.write(first, failure_kind=kind)
    record.write(first, reason="out of memory at batch 4096")
    study.tell(first, state=TrialState.FAIL)
    again = study.ask()
    out.reuse(study, again, read(study, first.number))
    reused = read(study, again.number)
    assert reused.state == TrialState.FAIL and reused.duplicate_of == first.number and reused.failure_kind == said
    assert reused.reason == f"same configuration as trial {first.number}, which failed: out of memory at batch 4096"
    assert not reused.metrics


def test_a_result_for_a_trial_another_worker_failed_meanwhile_is_dropped(runs: Runs) -> None:
    out, observer = outcomes()
    study = new_study()
    measured_baseline(study, runs, out)
    trial = asked(study, runs.base.replace(lr=1e-5))
    # Another worker failed it as stale while this one was paused past the heartbeat grace period.
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    assert out.complete(study, trial, copy(runs.results["untrained"]), time.monotonic()) is False
    dropped = read(study, trial.number)
    assert dropped.state == TrialState.FAIL and not dropped.metrics
    assert [r["number"] for r in observer.seen] == [0]  # nobody hears of a measurement that was not recorded
