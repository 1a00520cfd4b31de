"""The recommendation rule: only a feasible candidate faster than the baseline beyond noise is recommended."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from autoaccel.finish._summary import accuracy_drop, summarize_study

OBJ = ("accuracy", "train_time")


def _bits(correct: list[int]) -> dict[str, Any]:
    return {"correct": np.packbits(np.array(correct, dtype=np.uint8)).tobytes().hex(), "correct_n": len(correct)}


def _trial(study: optuna.Study, n: int, acc: float, train_time: float, correct: list[int] | None = None,
           role: str = "candidate") -> None:
    attrs: dict[str, Any] = {"metrics": {"accuracy": acc, "train_time": train_time}, "role": role,
                             "ci95": {"accuracy": [acc - 0.02, acc + 0.02]}, "config": {} if role == "baseline" else {"s.x": n},
                             "goal": "baseline" if role == "baseline" else "train"}
    if correct is not None:
        attrs["details"] = _bits(correct)
    study.add_trial(optuna.trial.create_trial(
        params={"s.x": n}, distributions={"s.x": CategoricalDistribution(list(range(10)))},
        values=[acc, train_time], user_attrs=attrs))


def make_study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    _trial(study, 0, 0.95, 10.0, role="baseline")
    _trial(study, 1, 0.95, 5.0)   # 2x faster on one measurement
    _trial(study, 2, 0.955, 8.0)  # 1.25x and more accurate: also on the front
    _trial(study, 3, 0.90, 1.0)   # fastest, but over the accuracy budget
    return study


def test_without_remeasurement_single_measurements_decide() -> None:
    summary = summarize_study(make_study(), OBJ, 0.01)
    assert summary.recommended.trial == 1
    assert not summary.remeasured
    assert 3 not in {p.trial for p in summary.pareto}  # infeasible points never reach the front
    assert "not yet re-measured" in summary.verdict


def answers_of(study: optuna.Study) -> list[Any]:
    """Let the answer rule decide on a study whose re-measurement is recorded, as the search's end does."""
    from autoaccel.finish._answers import give, judging, keep, qualifies, ranked, rejection

    summary = summarize_study(study, OBJ, 0.01)
    judged = judging("train", OBJ)
    candidates = ranked(summary.points, "train", judged)
    best = next((p for p in candidates if qualifies(p, judged, remeasured=True)), None)
    if best is not None:
        return [give("train", best, summary.baseline, OBJ, "interleaved re-measurement")]
    return [keep("train", summary.baseline, rejection(candidates[0], judged, 0.01))]


def store(study: optuna.Study, answers: list[Any]) -> None:
    study.set_user_attr("answers", {"baseline": 0, "goals": {a.goal: a.to_json() for a in answers}})


def test_a_candidate_whose_interval_includes_one_is_never_recommended() -> None:
    study = make_study()
    study.set_user_attr("remeasure", {"baseline": 0, "rounds": 7, "trials": {
        "1": {"objectives": {"train_time": {"value": 1.05, "ci95": [0.9, 1.2], "label": "no faster than baseline (within noise)"}}},
    }})
    store(study, answers_of(study))
    summary = summarize_study(study, OBJ, 0.01)
    assert summary.remeasured
    assert summary.recommended is summary.baseline
    assert "keep your training recipe" in summary.verdict and "not confirmed beyond noise" in summary.verdict
    point = next(p for p in summary.pareto if p.trial == 1)
    assert point.verdict == "no faster than baseline (within noise)"
    assert point.speedup["train_time"]["ci95"] == [0.9, 1.2]
    assert point.speedup["train_time"]["source"] == "interleaved re-measurement"


def test_a_candidate_faster_beyond_noise_is_recommended() -> None:
    study = make_study()
    study.set_user_attr("remeasure", {"baseline": 0, "rounds": 7, "trials": {
        "1": {"objectives": {"train_time": {"value": 1.02, "ci95": [0.95, 1.1], "label": "x"}}},
        "2": {"objectives": {"train_time": {"value": 1.3, "ci95": [1.2, 1.4], "label": "faster"}}},
    }})
    store(study, answers_of(study))
    summary = summarize_study(study, OBJ, 0.01)
    assert summary.recommended.trial == 2
    assert "training 1.30x [1.20, 1.40] faster" in summary.verdict


def test_remeasurement_of_another_baseline_is_ignored() -> None:
    study = make_study()
    study.set_user_attr("remeasure", {"baseline": 99, "trials": {"1": {"objectives": {}}}})
    assert not summarize_study(study, OBJ, 0.01).remeasured


def test_accuracy_drop_is_paired_over_samples() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    base = [1] * 90 + [0] * 10
    same_errors = list(base)
    same_errors[0] = 0  # one more mistake than the baseline, on the same samples otherwise
    _trial(study, 0, 0.90, 1.0, base, role="baseline")
    _trial(study, 1, 0.89, 1.0, same_errors)
    t0, t1 = study.trials
    drop = accuracy_drop(t0, t1)
    assert drop["value"] == pytest.approx(0.01)
    lo, hi = drop["ci95"]
    # Paired: the interval is about +-0.0196 (one discordant sample in 100), far tighter than the unpaired one.
    assert hi - lo < 0.05
    assert drop["within_noise"]


def test_accuracy_drop_falls_back_to_the_metric_intervals() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    _trial(study, 0, 0.95, 1.0, role="baseline")
    _trial(study, 1, 0.80, 1.0)
    drop = accuracy_drop(*study.trials)
    assert drop["value"] == pytest.approx(0.15)
    assert drop["ci95"][0] == pytest.approx(0.15 - 0.02 * 2**0.5)
    assert not drop["within_noise"]
