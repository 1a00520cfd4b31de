"""The policy (search/_policy.py): which factor a sampled trial varies, when the search has run out of new
configurations, and the speed bar that stops a training trial that can no longer win; on the tiny digits task's
real space (precision and batch size train, quantization serves). Nothing trains here."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from autoaccel.options import Options
from autoaccel.search._plans import Plans
from autoaccel.search._policy import MAX_REPEATS, STOP_SLOWER, Policy
from autoaccel.search._setup import Setup
from autoaccel.trial import TrialRecord, record
from autoaccel.vocab import FACTORS

OBJECTIVES = ("accuracy", "train_time", "latency")


def policy(setup: Setup, plans: Plans, objectives: tuple[str, ...] = OBJECTIVES, **options: Any) -> Policy:
    return Policy(setup, plans, Options(**{"trials": 20, "target": "cpu", **options}), objectives)


def names(strategies: Any) -> set[str]:
    return {s.name for s in strategies}


def base_record(train_time: float = 10.0) -> TrialRecord:
    return TrialRecord(0, TrialState.COMPLETE, role="baseline", config={}, goal="baseline", constraint=-0.01,
                       metrics={"accuracy": 0.9, "train_time": train_time, "latency": 1.0})


def trained(number: int, settings: dict[str, Any], train_time: float, constraint: float = -0.01,
            goal: str = "train", role: str = "candidate") -> TrialRecord:
    return TrialRecord(number, TrialState.COMPLETE, role=role, config=settings, goal=goal, constraint=constraint,
                       metrics={"accuracy": 0.9, "train_time": train_time, "latency": 1.0})


def test_the_factors_are_those_with_strategies_serving_first(setup: Setup, plans: Plans) -> None:
    p = policy(setup, plans)
    assert p.factors() == ("serve", "train")
    by_name = {s.name: s for s in setup.strategies}
    assert p.factors([by_name["precision"], by_name["batch_size"]]) == ("train",)
    assert p.factors([by_name["quantization"]]) == ("serve",)
    # In --mode train every technique changes the training recipe.
    assert policy(setup, plans, mode="train").factors() == ("train",)


def test_sampled_trials_take_turns_between_the_factors(setup: Setup, plans: Plans) -> None:
    p = policy(setup, plans)
    turns = [p.sampling("candidate") for _ in range(4)]
    assert [factors for _, factors in turns] == [("serve",), ("train",), ("serve",), ("train",)]
    assert all(names(strategies) == names(setup.strategies) for strategies, _ in turns)


def test_queued_trials_fix_every_factor_and_do_not_take_a_turn(setup: Setup, plans: Plans) -> None:
    p = policy(setup, plans)
    assert p.sampling("candidate")[1] == ("serve",)
    for role in ("baseline", "screen", "stack", "ablation", "combined", "promotion"):
        strategies, factors = p.sampling(role)
        assert names(strategies) == names(setup.strategies) and factors == FACTORS
    assert p.sampling("candidate")[1] == ("train",)


def test_sampled_trials_vary_only_what_screening_kept(setup: Setup, plans: Plans) -> None:
    p = policy(setup, plans)
    # Screening left quantization out (Stages keeps what sampled trials may change in ``searched``).
    p.stages.searched = [s for s in setup.strategies if s.name != "quantization"]
    for _ in range(3):
        strategies, factors = p.sampling("candidate")
        assert names(strategies) == {"precision", "batch_size"} and factors == ("train",)


def test_a_trial_count_too_small_to_screen_every_technique_alone_makes_a_short_run(setup: Setup, plans: Plans) -> None:
    size = policy(setup, plans).stages.screening.size
    assert size > 1
    assert policy(setup, plans, trials=size).stages.short  # the baseline and size - 1 screens: one too few
    assert not policy(setup, plans, trials=size + 1).stages.short
    assert not policy(setup, plans, trials=None, budget=5.0).stages.short  # a time budget: trials are not counted


def test_the_search_is_exhausted_only_after_enough_repeats_once_every_technique_is_searched(setup: Setup, plans: Plans) -> None:
    p = policy(setup, plans)
    assert not p.exhausted(MAX_REPEATS * 10)  # still screening: repeats mean the sampler's factor is measured
    p.stages.stage = "widened"  # stage 6: every technique searched
    assert not p.exhausted(MAX_REPEATS - 1)
    assert p.exhausted(MAX_REPEATS)


def test_the_speed_bar_is_the_users_recipe_training_time_with_a_margin_until_a_faster_one_is_found(setup: Setup, plans: Plans) -> None:
    p = policy(setup, plans)
    base = base_record(10.0)
    assert p.speed_bar([base], base, "train", "screen") == pytest.approx(10.0 * STOP_SLOWER)
    slower = trained(1, {"precision.dtype": "fp16"}, 14.0)
    assert p.speed_bar([base, slower], base, "train", "candidate") == pytest.approx(10.0 * STOP_SLOWER)
    faster = trained(2, {"batch_size.size": 128, "batch_size.lr_scaling": "sqrt"}, 4.0)
    assert p.speed_bar([base, slower, faster], base, "train", "local") == pytest.approx(4.0 * STOP_SLOWER)


def test_the_speed_bar_ignores_configurations_over_the_budget_and_serving_ones(setup: Setup, plans: Plans) -> None:
    p = policy(setup, plans)
    base = base_record(10.0)
    over = trained(1, {"batch_size.size": 1024, "batch_size.lr_scaling": "linear"}, 1.0, constraint=0.2)
    serving = trained(2, {"quantization.method": "dynamic_int8"}, 2.0, goal="serve")
    reused = TrialRecord(3, TrialState.COMPLETE, config={"precision.dtype": "bf16"}, goal="train", constraint=-0.01,
                         metrics={"accuracy": 0.9, "train_time": 3.0, "latency": 1.0}, duplicate_of=7)
    assert p.speed_bar([base, over, serving, reused], base, "train", "screen") == pytest.approx(10.0 * STOP_SLOWER)


@pytest.mark.parametrize("goal, role", [("serve", "screen"), ("combined", "candidate"), ("train", "baseline"),
                                        ("train", "ablation"), ("train", "combined"), ("train", "promotion")])
def test_no_speed_bar_for_serving_trials_or_the_finishs_own(setup: Setup, plans: Plans, goal: str, role: str) -> None:
    p = policy(setup, plans)
    base = base_record()
    assert p.speed_bar([base], base, goal, role) is None


def test_no_speed_bar_without_a_training_objective_or_before_the_baseline(setup: Setup, plans: Plans) -> None:
    base = base_record()
    assert policy(setup, plans, ("accuracy", "latency")).speed_bar([base], base, "train", "screen") is None
    assert policy(setup, plans).speed_bar([], None, "train", "screen") is None
    with_throughput = policy(setup, plans, ("accuracy", "train_throughput"))
    assert with_throughput.speed_bar([base], base, "train", "screen") == pytest.approx(10.0 * STOP_SLOWER)


def _measure(study: optuna.Study, plans: Plans, settings: dict[str, Any], role: str, train_time: float) -> TrialRecord:
    config, plan, _ = plans.build({**plans.setup.defaults, **settings})
    metrics = {"accuracy": 0.9, "train_time": train_time, "latency": 1.0}
    attrs = record.enqueued(role, config=config, fingerprint=plan.fingerprint(), metrics=metrics, constraint=-0.01,
                            goal="baseline" if not config else "train")
    study.add_trial(optuna.trial.create_trial(values=[metrics[o] for o in OBJECTIVES], user_attrs=attrs))
    return record.read(study.get_trials()[-1])


def test_a_local_turn_moves_around_the_best_of_its_factor_or_becomes_a_sampled_trial(setup: Setup, plans: Plans) -> None:
    p = policy(setup, plans)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    base = _measure(study, plans, {}, "baseline", 10.0)
    bf16 = _measure(study, plans, {"precision.dtype": "bf16"}, "screen", 6.0)
    p.stages.stage = "combining"  # screening and stacking are done: samples and local moves alternate
    kinds = [p.propose(study, [base, bf16], base) for _ in range(4)]
    assert [k.role for k in kinds] == ["candidate", "candidate", "candidate", "local"]
    # The 2nd proposal was local, on the serving factor's turn: nothing serving is measured, so it is sampled.
    # The 4th is local on the training factor's turn: one setting away from bf16, the fastest training recipe.
    local = kinds[3].config
    assert local is not None
    changed = {k for k in {*local, "precision.dtype"} if local.get(k, setup.defaults[k]) != bf16.settings.get(k, setup.defaults[k])}
    assert len(changed) == 1 and changed <= {"precision.dtype", "batch_size.size"}, local


@pytest.mark.parametrize("goal, keys", [("serve", {"quantization.method"}),
                                        ("train", {"precision.dtype", "batch_size.size", "batch_size.lr_scaling"})])
def test_a_sampled_repeat_is_replaced_by_a_neighbour_in_its_own_factor(setup: Setup, plans: Plans, goal: str,
                                                                       keys: set[str]) -> None:
    p = policy(setup, plans)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    _measure(study, plans, {}, "baseline", 10.0)
    settings = {"precision.dtype": "bf16", "quantization.method": "dynamic_int8"}
    _measure(study, plans, settings, "candidate", 6.0)
    repeat = TrialRecord(9, TrialState.COMPLETE, config=settings, goal=goal, duplicate_of=1)
    near = p.instead_of_repeat(study, repeat)
    assert near is not None
    assert {k for k in {*settings, *near} if near.get(k) != settings.get(k)} <= keys, near
