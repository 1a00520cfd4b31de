"""The training profile (where a run's time goes) and the early stop of a run on course to be too slow: real
training of the tiny digits MLP."""

from __future__ import annotations

import pytest

from autoaccel import Task, TrialFailure
from autoaccel.plugin._contexts import Guards
from autoaccel.plugin._strategy import PROFILE_PARTS
from autoaccel.trial._course import FAR_AFTER
from autoaccel.trial._profile import describe
from autoaccel.trial._run import run_trial
from autoaccel.trial._train import train
from tiny_digits import base_plan


def test_every_part_of_the_step_is_timed_and_the_parts_add_up_to_the_run(tiny_task: Task) -> None:
    plan = base_plan(tiny_task)
    stats = train(tiny_task.model(), tiny_task, plan, seed=0)
    assert set(stats.profile) == {*PROFILE_PARTS, "other"}
    assert all(v >= 0 for v in stats.profile.values())
    assert stats.profile["forward"] > 0 and stats.profile["backward"] > 0 and stats.profile["optimizer"] > 0
    assert sum(stats.profile.values()) == pytest.approx(stats.seconds + stats.compile_s, rel=1e-6)


def test_a_trial_records_its_profile_with_evaluation(tiny_task: Task) -> None:
    result = run_trial(tiny_task, base_plan(tiny_task), seed=0, timing_budget_s=0.05)
    profile = result.details["profile"]
    assert {*PROFILE_PARTS, "other", "evaluation"} == set(profile) and profile["evaluation"] > 0
    assert "the backward pass" in describe(profile)


def test_a_run_on_course_to_be_slower_than_allowed_stops_early(tiny_task: Task) -> None:
    plan = base_plan(tiny_task).replace(epochs=3)
    # With room to spare it runs to the end.
    stats = train(tiny_task.model(), tiny_task, plan, seed=0, guards=Guards(slower_than=3600.0))
    assert stats.steps == plan.epochs * -(-len(tiny_task.train_data) // plan.batch_size)
    # On course for twice what an answer could take: judged at its 20th step (past the warm-up).
    projected = stats.step_time.median * stats.steps
    with pytest.raises(TrialFailure) as failed:
        train(tiny_task.model(), tiny_task, plan, seed=0, guards=Guards(slower_than=projected / 2))
    assert failed.value.kind == "too_slow"
    assert failed.value.reason.startswith("stopped early after 20 of ") and "more than the" in failed.value.reason


def test_a_run_whose_first_steps_are_far_slower_than_allowed_stops_at_once(tiny_task: Task) -> None:
    plan = base_plan(tiny_task).replace(epochs=3)
    with pytest.raises(TrialFailure) as failed:
        train(tiny_task.model(), tiny_task, plan, seed=0, guards=Guards(slower_than=1e-4))
    assert failed.value.kind == "too_slow"
    # The first step (lazy init) and FAR_AFTER more: not the 20 the ordinary check waits for.
    assert failed.value.reason.startswith(f"stopped early after {FAR_AFTER + 1} of "), failed.value.reason
    assert "each step so far takes at least" in failed.value.reason
