"""The run's time (search/_budget.py): when the search stops starting trials and when the whole run should be done,
and the share of the schedule search trials train, chosen once per study."""

from __future__ import annotations

import time
from pathlib import Path

import optuna

from autoaccel.options import FINISH_SHARE, Options
from autoaccel.search._budget import Budget, study_fidelity
from autoaccel.trial import Fidelity
from study_snapshot import sqlite_url


def begun(options: Options) -> tuple[Budget, list[str], float, float]:
    """A budget begun now, what it said, and the monotonic clock just before and after."""
    said: list[str] = []
    budget = Budget()
    before = time.monotonic()
    budget.begin(options, said.append)
    return budget, said, before, time.monotonic()


def test_timeout_sets_the_deadline_for_starting_trials_and_leaves_the_run_without_an_end() -> None:
    budget, said, before, after = begun(Options(trials=10, timeout=30.0))
    assert budget.deadline is not None and before + 30.0 <= budget.deadline <= after + 30.0
    assert budget.why == "--timeout reached"
    assert budget.end is None and budget.left() is None
    assert said == [] and not budget.spent()


def test_a_budget_keeps_its_finish_share_and_says_how_much_of_it_searches() -> None:
    budget, said, before, after = begun(Options(budget=2.0))
    search_s = 120.0 * (1 - FINISH_SHARE)
    assert budget.deadline is not None and before + search_s <= budget.deadline <= after + search_s
    assert budget.end is not None and before + 120.0 <= budget.end <= after + 120.0
    assert budget.why == "search share of the 2-minute budget spent"
    assert said == [f"budget: 2 minutes, about {2.0 * (1 - FINISH_SHARE):.1f} of them searching "
                    "(--budget MINUTES, or --trials N, to change)"]
    left = budget.left()
    assert left is not None and 0.0 < left <= 120.0


def test_with_both_a_timeout_and_a_budget_the_earlier_limit_wins() -> None:
    budget, _, before, after = begun(Options(budget=2.0, timeout=10.0))
    assert budget.why == "--timeout reached" and budget.deadline is not None and budget.deadline <= after + 10.0
    assert budget.end is not None and budget.end >= before + 120.0  # the run's end is still the budget's
    budget, _, before, _ = begun(Options(budget=2.0, timeout=3600.0))
    assert budget.why.startswith("search share") and budget.deadline is not None and budget.deadline < before + 3600.0


def test_a_run_bounded_by_a_trial_count_alone_has_no_deadline() -> None:
    budget, said, _, _ = begun(Options(trials=5))
    assert (budget.deadline, budget.why, budget.end) == (None, "", None)
    assert not budget.spent() and budget.left() is None and said == []


def test_a_run_given_no_limit_at_all_gets_the_default_budget() -> None:
    budget, said, before, after = begun(Options())
    minutes = Options().resolved_budget()
    assert minutes is not None and budget.end is not None
    assert before + minutes * 60.0 <= budget.end <= after + minutes * 60.0
    assert len(said) == 1 and said[0].startswith(f"budget: {minutes:g} minutes")


def test_the_budget_is_spent_once_its_deadline_has_passed_and_left_counts_down_past_zero() -> None:
    now = time.monotonic()
    past = Budget(deadline=now - 1.0, why="--timeout reached", end=now - 0.5)
    assert past.spent()
    left = past.left()
    assert left is not None and left < 0
    future = Budget(deadline=now + 60.0, end=now + 120.0)
    assert not future.spent()
    left = future.left()
    assert left is not None and 60.0 < left <= 120.0


def test_begin_again_replaces_an_earlier_deadline() -> None:
    budget, _, _, _ = begun(Options(timeout=5.0))
    budget.begin(Options(trials=3), lambda _: None)
    assert budget.deadline is None and budget.why == "" and budget.end is None


def test_the_first_fidelity_of_a_study_is_planned_and_stored() -> None:
    study = optuna.create_study()
    chosen = Fidelity(search=0.25, full_s=12.0, full_steps=400, step_s=0.03, how="planned")
    assert study_fidelity(study, lambda: chosen) == chosen
    assert Fidelity.from_json(study.user_attrs["fidelity"]) == chosen


def test_a_resumed_study_keeps_its_stored_fidelity_without_planning_again(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "study.db")
    first = optuna.create_study(storage=url, study_name="s")
    stored = Fidelity(search=0.125, full_s=30.0, full_steps=900, step_s=0.03, how="planned from the probe")
    study_fidelity(first, lambda: stored)
    planned: list[Fidelity] = []

    def plan_again() -> Fidelity:
        planned.append(Fidelity(search=1.0))
        return planned[-1]

    resumed = optuna.load_study(study_name="s", storage=url)  # another run, or a worker joining
    assert study_fidelity(resumed, plan_again) == stored
    assert planned == []  # the probe is not run again
    assert resumed.user_attrs["fidelity"] == stored.to_json()


def test_a_stored_share_with_fields_this_version_does_not_know_is_still_kept() -> None:
    # Written by another version of autoaccel sharing the study (a worker on another host, an older run).
    study = optuna.create_study()
    stored = Fidelity(search=0.25, full_s=8.0, full_steps=300, step_s=0.02, how="planned")
    study.set_user_attr("fidelity", {**stored.to_json(), "rungs": [0.25, 1.0]})
    assert study_fidelity(study, lambda: Fidelity(search=1.0)) == stored
