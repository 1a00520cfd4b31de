"""Local moves (search/_neighbours.py): unmeasured configurations one setting away from a measured one, on a real
study of the tiny digits task's space (precision and batch size train, quantization serves; nothing trains here)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from autoaccel.search._neighbours import Neighbours, costly
from autoaccel.search._plans import Plans
from autoaccel.search._setup import Setup
from autoaccel.trial import TrialRecord, record

OBJECTIVES = ("accuracy", "train_time", "latency")
TRAIN_KEYS = {"precision.dtype", "batch_size.size", "batch_size.lr_scaling"}
SERVE_KEYS = {"quantization.method"}
BF16 = {"precision.dtype": "bf16"}
FP16 = {"precision.dtype": "fp16"}


@pytest.fixture
def neighbours(setup: Setup, plans: Plans) -> Neighbours:
    return Neighbours(setup.space, setup.defaults, "both", plans.build)


def new_study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.set_user_attr("max_accuracy_drop", 0.01)
    return study


def measure(study: optuna.Study, plans: Plans, settings: dict[str, Any], *, role: str = "candidate",
            train_time: float = 10.0, latency: float = 1.0, constraint: float = -0.01) -> None:
    """Record ``settings`` as a measured trial, as the executor stores one (configuration, fingerprint, results)."""
    config, plan, _ = plans.build({**plans.setup.defaults, **settings})
    metrics = {"accuracy": 0.9, "train_time": train_time, "latency": latency}
    attrs = record.enqueued(role, config=config, fingerprint=plan.fingerprint(), metrics=metrics, constraint=constraint)
    study.add_trial(optuna.trial.create_trial(values=[metrics[o] for o in OBJECTIVES], user_attrs=attrs))


def moved(defaults: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """The settings whose value differs between two configurations (a missing setting is at its default)."""
    return {k for k in {*before, *after} if before.get(k, defaults[k]) != after.get(k, defaults[k])}


def fingerprint(plans: Plans, settings: dict[str, Any]) -> str:
    return plans.build({**plans.setup.defaults, **settings})[1].fingerprint()


def measured_fingerprints(study: optuna.Study) -> set[str]:
    return {t.user_attrs["fingerprint"] for t in study.get_trials(states=(TrialState.COMPLETE,))}


def records(study: optuna.Study) -> list[TrialRecord]:
    return [record.read(t) for t in study.get_trials()]


def test_a_move_changes_exactly_one_setting_and_leads_to_a_configuration_not_measured_yet(
        setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    study = new_study()
    measure(study, plans, {}, role="baseline")
    measure(study, plans, BF16)
    for seed in range(10):
        near = neighbours.near(study, setup.strategies, BF16, None, seed)
        assert near is not None
        assert len(moved(setup.defaults, BF16, near)) == 1, near
        assert fingerprint(plans, near) not in measured_fingerprints(study), near


def test_the_only_unmeasured_neighbour_is_found_whatever_the_seed_and_none_once_it_is_measured(
        setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    precision = [s for s in setup.strategies if s.name == "precision"]
    study = new_study()
    measure(study, plans, {}, role="baseline")
    measure(study, plans, BF16)
    assert [neighbours.near(study, precision, BF16, None, seed) for seed in range(10)] == [FP16] * 10
    measure(study, plans, FP16)
    assert [neighbours.near(study, precision, BF16, None, seed) for seed in range(10)] == [None] * 10


def test_a_move_back_to_the_users_recipe_is_never_proposed(setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    # The user's recipe is not even in this study: the move that switches quantization off is still not one.
    quantization = [s for s in setup.strategies if s.name == "quantization"]
    study = new_study()
    for method in ("dynamic_int8", "static_int8_ort"):
        measure(study, plans, {"quantization.method": method})
    for seed in range(10):
        assert neighbours.near(study, quantization, {"quantization.method": "dynamic_int8"}, None, seed) is None


@pytest.mark.parametrize("factor, keys", [("serve", SERVE_KEYS), ("train", TRAIN_KEYS)])
def test_moves_change_only_the_techniques_of_the_requested_factor(
        setup: Setup, plans: Plans, neighbours: Neighbours, factor: str, keys: set[str]) -> None:
    study = new_study()
    both = {**BF16, "quantization.method": "dynamic_int8"}
    measure(study, plans, {}, role="baseline")
    measure(study, plans, both)
    for seed in range(20):
        near = neighbours.near(study, setup.strategies, both, factor, seed)
        assert near is not None and moved(setup.defaults, both, near) <= keys, near


def test_moves_of_the_techniques_named_first_come_before_any_other(
        setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    study = new_study()
    both = {**BF16, "quantization.method": "dynamic_int8"}
    measure(study, plans, {}, role="baseline")
    measure(study, plans, both)
    first = frozenset({"quantization"})
    for seed in range(10):
        near = neighbours.near(study, setup.strategies, both, None, seed, first)
        assert near is not None and moved(setup.defaults, both, near) == SERVE_KEYS, near
    # Once quantization's moves are measured (its other method; switched off, bf16 alone), the others follow.
    measure(study, plans, {**BF16, "quantization.method": "static_int8_ort"})
    measure(study, plans, BF16)
    for seed in range(10):
        near = neighbours.near(study, setup.strategies, both, None, seed, first)
        assert near is not None and moved(setup.defaults, both, near) <= TRAIN_KEYS, near


def test_the_move_is_drawn_from_the_seed_so_calls_spread_out(setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    study = new_study()
    measure(study, plans, {}, role="baseline")
    measure(study, plans, BF16)
    draws = [neighbours.near(study, setup.strategies, BF16, None, seed) for seed in range(20)]
    assert draws == [neighbours.near(study, setup.strategies, BF16, None, seed) for seed in range(20)]
    assert len({repr(sorted(d.items())) for d in draws if d is not None}) > 1


def _train_study(plans: Plans) -> optuna.Study:
    """The user's recipe (10 s of training), bf16 (6 s) and fp16 (8 s), both within the accuracy budget."""
    study = new_study()
    measure(study, plans, {}, role="baseline", train_time=10.0)
    measure(study, plans, BF16, train_time=6.0)
    measure(study, plans, FP16, train_time=8.0)
    return study


def test_a_local_move_starts_from_the_fastest_feasible_configuration_of_its_factor(
        setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    study = _train_study(plans)
    done = records(study)
    for turn in range(2):
        near = neighbours.around_best(study, done, done[0], setup.strategies, "train", ["train_time"], turn)
        # bf16's only unmeasured neighbours change the batch size (fp16 is measured; fp32 is the user's recipe).
        assert near is not None and near["precision.dtype"] == "bf16", near
        assert moved(setup.defaults, BF16, near) == {"batch_size.size"}, near


def test_every_other_pair_of_turns_moves_first_from_the_fastest_configuration_a_little_over_the_budget(
        setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    study = _train_study(plans)
    big_batch = {"batch_size.size": 256, "batch_size.lr_scaling": "sqrt"}
    measure(study, plans, big_batch, train_time=3.0, constraint=0.01)  # over the 0.01 budget by one budget
    done = records(study)
    picks = [neighbours.around_best(study, done, done[0], setup.strategies, "train", ["train_time"], turn)
             for turn in range(4)]
    assert all(p is not None for p in picks)
    for near in picks[:2]:
        assert near is not None and moved(setup.defaults, BF16, near) == {"batch_size.size"} and near["precision.dtype"] == "bf16"
    for near in picks[2:]:
        # The batch size cost accuracy alone: its own settings are moved first (a milder batch, another scaling).
        assert near is not None and len(moved(setup.defaults, big_batch, near)) == 1, near
        assert moved(setup.defaults, big_batch, near) <= {"batch_size.size", "batch_size.lr_scaling"}, near


def test_a_configuration_far_over_the_budget_is_not_moved_from(setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    study = _train_study(plans)
    measure(study, plans, {"batch_size.size": 1024, "batch_size.lr_scaling": "linear"}, train_time=1.0, constraint=0.5)
    done = records(study)
    for turn in range(4):
        near = neighbours.around_best(study, done, done[0], setup.strategies, "train", ["train_time"], turn)
        assert near is not None and near["precision.dtype"] == "bf16", (turn, near)
        assert len(moved(setup.defaults, BF16, near)) == 1, (turn, near)


def test_a_factor_with_no_measured_configuration_has_no_local_move(
        setup: Setup, plans: Plans, neighbours: Neighbours) -> None:
    study = _train_study(plans)
    done = records(study)
    assert neighbours.around_best(study, done, done[0], setup.strategies, "serve", ["latency"], 0) is None
    alone = new_study()
    measure(alone, plans, {}, role="baseline")
    base = records(alone)
    assert neighbours.around_best(alone, base, base[0], setup.strategies, "train", ["train_time"], 0) is None


def _record(number: int, settings: dict[str, Any], constraint: float | None, state: TrialState = TrialState.COMPLETE,
            duplicate_of: int | None = None) -> TrialRecord:
    return TrialRecord(number, state, config=settings, constraint=constraint, duplicate_of=duplicate_of,
                       metrics={"accuracy": 0.8} if state == TrialState.COMPLETE else {})


def test_costly_techniques_are_those_measured_alone_over_the_accuracy_budget() -> None:
    done = [
        _record(0, {}, -0.01),
        _record(1, {"batch_size.size": 256, "batch_size.lr_scaling": "sqrt"}, 0.05),  # alone, over: costly
        _record(2, {"precision.dtype": "bf16"}, -0.01),  # alone, within the budget
        _record(3, {"precision.dtype": "fp16", "quantization.method": "dynamic_int8"}, 0.05),  # over, but combined
        _record(4, {"quantization.method": "static_int8_ort"}, 0.05, duplicate_of=7),  # a reuse, not a measurement
        _record(5, {"pruning.method": "structured"}, None, state=TrialState.FAIL),  # failed: nothing measured
    ]
    assert costly(done) == frozenset({"batch_size"})
    assert costly(done[2:]) == frozenset()
