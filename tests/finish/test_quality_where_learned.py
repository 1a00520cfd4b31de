"""Quality judged where it means something: the recipe's curve over the rungs says where a drop may be judged,
training noise widens every drop's interval, no verdict comes from a rung where the recipe has not learned, and
every given answer states its evidence."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from autoaccel.finish import evidence
from autoaccel.finish._recipe_curve import curve_of
from autoaccel.finish._summary import accuracy_drop, over_budget, summarize_study, with_training_noise
from autoaccel.trial import read
from autoaccel.trial._curve import RecipeCurve, key, replica_sd

OBJ = ("accuracy", "train_time")
N = 400  # validation samples


def _bits(accuracy: float, seed: int) -> dict[str, Any]:
    correct = (np.random.default_rng(seed).random(N) < accuracy).astype(np.uint8)
    return {"correct": np.packbits(correct).tobytes().hex(), "correct_n": N}


def _trial(study: optuna.Study, acc: float, train_time: float, role: str = "candidate", fraction: float = 1 / 16,
           config: dict[str, Any] | None = None, replica: int | None = None, seed: int = 0,
           details: dict[str, Any] | None = None) -> int:
    attrs: dict[str, Any] = {"metrics": {"accuracy": acc, "train_time": train_time}, "role": role, "fraction": fraction,
                             "ci95": {"accuracy": [acc - 0.03, acc + 0.03]}, "config": config or {},
                             "goal": "train" if config else "baseline", "details": {**_bits(acc, seed), **(details or {})}}
    if replica:
        attrs["replica"] = replica
    n = len(study.get_trials())
    study.add_trial(optuna.trial.create_trial(
        params={"s.x": n}, distributions={"s.x": CategoricalDistribution(list(range(50)))},
        values=[acc, train_time], user_attrs=attrs))
    return n


def test_a_rung_is_informative_once_the_recipes_curve_has_flattened_there() -> None:
    # The ResNet: near chance at 1/16, learned by 1/8, flat from there on.
    curve = RecipeCurve(0.01, {key(1 / 16): 0.21, key(1 / 8): 0.96, key(1 / 4): 0.965})
    assert not curve.informative(1 / 16) and curve.informative(1 / 8)
    assert curve.informative(1 / 4)  # the top rung: its curve had flattened on the way up to it
    assert not RecipeCurve(0.01, {key(1 / 16): 0.21, key(1 / 8): 0.96}).informative(1 / 8)  # it had not
    assert curve.informative(1.0) and curve.informative(None)
    assert curve.judged_at(1 / 16) == 1 / 8
    assert "still changing: beyond the budget" in curve.why(1 / 16) and "flattened" in curve.why(1 / 8)
    # A curve that falls (a model that overfits by the end) has not flattened either: any metric, any direction.
    overfit = RecipeCurve(3.7, {key(1 / 16): -160.0, key(1 / 8): -185.0})
    assert not overfit.informative(1 / 16)
    # A full-length value (--baseline-metric) stands above the highest rung.
    stated = RecipeCurve(0.01, {key(1 / 4): 0.985, key(1.0): 0.99}, full_from="--baseline-metric")
    assert stated.informative(1 / 4) and stated.evidence(1 / 4)["above"]["from"] == "--baseline-metric"


def test_noise_allows_for_a_change_that_is_within_noise_of_the_budget() -> None:
    still = RecipeCurve(0.01, {key(1 / 8): 0.95, key(1 / 4): 0.975})
    assert not still.informative(1 / 8)
    noisy = RecipeCurve(0.01, {key(1 / 8): 0.95, key(1 / 4): 0.975}, noise={key(1 / 8): 0.01})
    assert noisy.informative(1 / 8)  # a change of 0.025 is within 0.01 + noise of run-to-run 0.01 on each side
    assert noisy.training_noise(1 / 4) == 0.01  # measured below it: the wider of the two
    assert replica_sd([(0.2, 0.1), (0.3, 0.3)]) == pytest.approx(0.05)


def test_training_noise_widens_a_drops_interval() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    _trial(study, 0.90, 10.0, role="baseline", fraction=1.0)
    _trial(study, 0.88, 5.0, config={"s.x": 1}, fraction=1.0, seed=1)
    base, cand = (read(t) for t in study.get_trials())
    sampling = accuracy_drop(base, cand)
    both = accuracy_drop(base, cand, training_noise=0.02)
    assert both["value"] == sampling["value"]
    assert both["ci95"][0] < sampling["ci95"][0] and both["ci95"][1] > sampling["ci95"][1]
    assert both["training_noise"] == 0.02
    assert with_training_noise(both, 0.02) == both  # joined once, never twice
    # At a compressed rung, a drop over the budget on sampling noise alone is within it once training noise joins.
    clear = {"value": 0.05, "ci95": [0.02, 0.08]}
    assert over_budget(clear, 0.01, 1 / 8) > 0 >= over_budget(with_training_noise(clear, 0.03), 0.01, 1 / 8)


def test_an_uninformative_rung_rejects_nothing_on_quality() -> None:
    flat = RecipeCurve(0.01, {key(1 / 16): 0.96, key(1 / 8): 0.962})
    early = RecipeCurve(0.01, {key(1 / 16): 0.21, key(1 / 8): 0.96})
    chance = {"value": 0.11, "ci95": [0.08, 0.14], "within_noise": False}  # 0.10 against the recipe's 0.21
    assert over_budget(chance, 0.01, 1 / 16, flat) > 0  # where the recipe has learned, a clear drop rules it out
    assert over_budget(chance, 0.01, 1 / 16, early) <= 0  # where it has not, nothing is ruled out
    assert over_budget(chance, 0.01, 1.0, early) > 0  # full length always judges


def _early_study() -> optuna.Study:
    """A study at 1/16 where the recipe is near chance: its ladder found it learned by 1/8."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    _trial(study, 0.21, 60.0, role="baseline")
    _trial(study, 0.15, 60.0, role="rung", replica=1, seed=3)
    _trial(study, 0.96, 60.0, role="rung", fraction=1 / 8, seed=4)
    _trial(study, 0.97, 60.0, role="rung", fraction=1 / 4, seed=5)
    _trial(study, 0.10, 20.0, config={"batch_size.size": 512}, seed=6)  # fastest, at chance
    _trial(study, 0.15, 30.0, config={"precision.dtype": "bf16"}, seed=7)
    return study


def test_the_curve_is_read_from_the_recipes_rungs_and_replicas() -> None:
    records = [read(t) for t in _early_study().get_trials()]
    curve = curve_of(records, 0.01)
    assert curve.fractions == [1 / 16, 1 / 8, 1 / 4]
    assert curve.value(1 / 16) == 0.21 and curve.trials[key(1 / 8)] == 2
    assert curve.training_noise(1 / 16) == pytest.approx(0.06 / np.sqrt(2))
    assert curve.judged_at(1 / 16) == 1 / 8
    # A stated full-length value joins as full length, in the metric's orientation.
    assert curve_of(records, 0.01, stated=0.99).value(1.0) == 0.99


def test_no_answer_is_given_from_an_uninformative_rung_and_its_evidence_says_so() -> None:
    summary = summarize_study(_early_study(), OBJ, 0.01)
    points = {p.trial: p for p in summary.points}
    assert set(points) == {0, 4, 5}  # the recipe's rungs and replica are not candidates
    assert points[4].feasible and points[4].judged == "not judged"  # ranked, not rejected
    train = summary.answer("train")
    assert train is not None and not train.given
    assert train.rejected is not None and train.rejected["candidate"] and "quality unknown" in train.rejected["reason"]
    assert "your recipe reaches 0.2100 at 1/16" in train.rejected["reason"]
    pareto = summary.to_json()
    assert pareto["schema"] == 2 and pareto["search"]["recipe_curve"]["informative"][key(1 / 8)] is True
    # The training configurations the search judged: the candidates', not the recipe's rungs or its replica.
    assert pareto["search"]["training_configurations"] == len({repr(sorted(p.params.items())) for p in summary.points
                                                                if p.trial != 0}) == 2
    assert "is a candidate, not an answer" in train.verdict and "was rejected" not in train.verdict


def test_an_exact_serving_change_is_judged_on_the_recipes_model_at_any_rung() -> None:
    # The recipe at 1/16 is near chance and no rung above it is informative: nothing is judged there, but an
    # exact serving change (its outputs are the model's up to rounding) drops on this model what it drops on any.
    study = optuna.create_study(directions=["maximize", "minimize"])
    _trial(study, 0.21, 60.0, role="baseline")
    _trial(study, 0.15, 60.0, role="rung", replica=1, seed=3)
    _trial(study, 0.60, 60.0, role="rung", fraction=1 / 8, seed=4)  # still learning fast: no rung informative
    correct = _bits(0.21, 0)  # the recipe's own rows: the same predictions
    for config, exact, bits in (({"runtime.engine": "onnxruntime"}, True, correct),
                                ({"quantization.method": "dynamic_int8"}, False, _bits(0.21, 9))):
        study.add_trial(optuna.trial.create_trial(
            params={"s.x": len(study.get_trials())}, distributions={"s.x": CategoricalDistribution(list(range(50)))},
            values=[0.21, 60.0], user_attrs={
                "metrics": {"accuracy": 0.21, "train_time": 60.0, "latency": 0.5}, "role": "candidate",
                "fraction": 1 / 16, "ci95": {"accuracy": [0.18, 0.24]}, "config": config, "goal": "serve",
                "math": {"key": "recipe", "tolerance": None, "serves_exactly": exact}, "details": bits}))
    study.set_user_attr("objectives", ["accuracy", "train_time"])
    summary = summarize_study(study, OBJ, 0.01)
    points = {p.trial: p for p in summary.points}
    assert points[3].judged == "same math" and points[3].feasible  # judged: within the budget beyond noise
    assert points[4].judged == "not judged"  # int8 changes outputs: no verdict on a model that has not learned
    quality = evidence.quality_of(points[3], curve_of([read(t) for t in study.get_trials()], 0.01))
    assert quality["basis"] == "same math" and quality["informative"] is False
    assert quality["why"].startswith("an exact serving change")


def test_every_given_answer_states_its_evidence() -> None:
    study = _early_study()
    # A speed-only change whose loss agreed with the recipe's own run: the recipe's quality, established.
    _trial(study, 0.21, 40.0, config={"memory_format.format": "channels_last"},
           details={"quality": {"sanity": "passed", "from": 0, "against": 0, "measured": 0.19}})
    summary = summarize_study(study, OBJ, 0.01)
    train = summary.answer("train")
    assert train is not None and train.given and train.trial == 6
    quality = train.evidence["quality"]
    assert quality["basis"] == "same math" and quality["fraction"] == 1 / 16 and quality["recipe_value"] == 0.21
    assert quality["informative"] is False  # established by its math, not by the rung
    assert "the same training math as your recipe" in evidence.words(train.evidence, "train")
    # The speed-only replica pair joins the training noise at that rung.
    assert summary.curve is not None and summary.curve.training_noise(1 / 16) == pytest.approx(
        np.sqrt((0.06 ** 2 + 0.02 ** 2) / 4))
