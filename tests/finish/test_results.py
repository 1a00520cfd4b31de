"""results.py: dominance, the Pareto front, speedups, and summarize_study() on hand-made points and a real
(SQLite) study; pareto.json and recipe.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from autoaccel.finish import _summary as results
from autoaccel.finish._summary import Point, dominates, output_texts, pareto_front, speed_score, summarize_study

OBJECTIVES = ("accuracy", "train_time", "latency")
DTYPE = optuna.distributions.CategoricalDistribution(["fp32", "bf16", "fp16"])


def point(trial: int, speedup: dict[str, float] | None = None, **metrics: float) -> Point:
    return Point(
        trial=trial, role="candidate", params={}, metrics=dict(metrics), metrics_ci95={},
        speedup={k: {"value": v, "ci95": None, "label": "single measurement", "source": "trial"} for k, v in (speedup or {}).items()},
        accuracy_drop={"value": 0.0, "ci95": [0.0, 0.0], "within_noise": True}, feasible=True,
    )


# --- dominance and the front ------------------------------------------------------------------------------


def test_dominates_respects_each_metric_direction() -> None:
    a = point(0, accuracy=0.9, latency=1.0, throughput=200.0, memory=10.0)
    worse = point(1, accuracy=0.8, latency=2.0, throughput=100.0, memory=20.0)
    objectives = ("accuracy", "latency", "throughput", "memory")
    assert dominates(a, worse, objectives)
    assert not dominates(worse, a, objectives)


def test_equal_points_do_not_dominate_each_other() -> None:
    a, b = point(0, accuracy=0.9, latency=1.0), point(1, accuracy=0.9, latency=1.0)
    assert not dominates(a, b, ("accuracy", "latency")) and not dominates(b, a, ("accuracy", "latency"))


def test_trade_offs_do_not_dominate() -> None:
    accurate, fast = point(0, accuracy=0.95, latency=2.0), point(1, accuracy=0.9, latency=1.0)
    assert not dominates(accurate, fast, ("accuracy", "latency"))
    assert not dominates(fast, accurate, ("accuracy", "latency"))
    # Better-or-equal everywhere and strictly better on one is enough.
    assert dominates(point(2, accuracy=0.95, latency=1.0), fast, ("accuracy", "latency"))


def test_pareto_front_keeps_exactly_the_non_dominated_points() -> None:
    pts = [
        point(0, accuracy=0.90, latency=1.0),
        point(1, accuracy=0.80, latency=0.5),
        point(2, accuracy=0.85, latency=1.2),  # dominated by 0
        point(3, accuracy=0.90, latency=1.0),  # ties with 0: both stay
        point(4, accuracy=0.70, latency=0.5),  # dominated by 1
        point(5, accuracy=0.95, latency=3.0),
    ]
    front = pareto_front(pts, ("accuracy", "latency"))
    assert [p.trial for p in front] == [0, 1, 3, 5]
    # Only the chosen objectives count: on accuracy alone, the single most accurate point remains.
    assert [p.trial for p in pareto_front(pts, ("accuracy",))] == [5]


def test_pareto_front_in_three_objectives_each_with_its_own_direction() -> None:
    objectives = ("accuracy", "throughput", "memory")  # max, max, min
    pts = [
        point(0, accuracy=0.9, throughput=100.0, memory=50.0),
        point(1, accuracy=0.9, throughput=100.0, memory=60.0),  # dominated by 0: more memory, nothing better
        point(2, accuracy=0.8, throughput=300.0, memory=40.0),  # trades accuracy for memory
        point(3, accuracy=0.8, throughput=200.0, memory=60.0),  # dominated by 2
        point(4, accuracy=0.7, throughput=50.0, memory=10.0),  # least memory
        point(5, accuracy=0.9, throughput=float("inf"), memory=50.0),  # dominates 0 (and 1)
        point(6, accuracy=float("nan"), throughput=1.0, memory=99.0),  # NaN compares false both ways: stays
    ]
    assert [p.trial for p in pareto_front(pts, objectives)] == [2, 4, 5, 6]
    assert pareto_front([], objectives) == []


def test_speedups_are_above_one_when_better_whatever_the_direction() -> None:
    base = {"accuracy": 0.9, "train_time": 10.0, "latency": 2.0, "throughput": 100.0, "memory": 50.0}
    cand = {"accuracy": 0.8, "train_time": 5.0, "latency": 4.0, "throughput": 300.0, "memory": 25.0}
    got = {k: v["value"] for k, v in results.single_speedups(cand, base).items()}
    assert got == pytest.approx({"train_time": 2.0, "latency": 0.5, "throughput": 3.0, "memory": 2.0})
    # A zero (e.g. train_time of pretrained weights) has no ratio rather than a division by zero.
    assert "train_time" not in results.single_speedups({**cand, "train_time": 0.0}, base)


def test_speed_score_is_the_geometric_mean_over_speed_objectives() -> None:
    assert speed_score(point(1, speedup={"train_time": 4.0, "latency": 1.0}), OBJECTIVES) == pytest.approx(2.0)
    assert speed_score(point(1, speedup={"train_time": 2.0, "latency": 0.5}), OBJECTIVES) == pytest.approx(1.0)
    # Speedups on objectives not searched do not count.
    assert speed_score(point(1, speedup={"memory": 9.0}), OBJECTIVES) == 1.0


# --- summarize_study on a real study ------------------------------------------------------------------------


def add(study: optuna.Study, dtype: str, acc: float, train_time: float, latency: float, **attrs: Any) -> None:
    metrics = {"accuracy": acc, "train_time": train_time, "latency": latency, "throughput": 100.0, "memory": 50.0}
    role = attrs.get("role", "candidate")
    config = {} if dtype == "fp32" else {"precision.dtype": dtype}
    user_attrs = {"metrics": metrics, "ci95": {"accuracy": [acc - 0.02, acc + 0.02]}, "config": config,
                  "goal": "baseline" if role == "baseline" else "train", **attrs}
    study.add_trial(optuna.trial.create_trial(params={"precision.dtype": dtype}, distributions={"precision.dtype": DTYPE},
                                              values=[acc, train_time, latency], user_attrs=user_attrs))


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    s = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s",
                            directions=["maximize", "minimize", "minimize"])
    add(s, "fp32", 0.900, 10.0, 2.0, role="baseline")  # 0
    add(s, "bf16", 0.905, 5.0, 1.0)  # 1: 2x faster on both, as accurate
    add(s, "fp16", 0.800, 1.0, 0.5)  # 2: fastest, but loses 10 points of accuracy
    add(s, "fp16", 0.895, 8.0, 0.9)  # 3: a trade-off with 1, within the budget
    add(s, "bf16", 0.905, 5.0, 1.0, duplicate_of=1)  # 4: a reused measurement
    s.add_trial(optuna.trial.create_trial(params={"precision.dtype": "fp16"}, distributions={"precision.dtype": DTYPE},
                                          state=TrialState.FAIL, user_attrs={"failure_kind": "crash", "reason": "worker died"}))
    return s


def test_summary_front_recommendation_and_failures(study: optuna.Study) -> None:
    summary = summarize_study(study, OBJECTIVES, max_drop=0.01)
    assert summary.baseline.trial == 0 and summary.baseline.role == "baseline"
    assert sorted(p.trial for p in summary.points) == [0, 1, 2, 3], "duplicates are not points of their own"
    by_trial = {p.trial: p for p in summary.points}
    assert not by_trial[2].feasible and by_trial[2].accuracy_drop["value"] == pytest.approx(0.10)
    assert by_trial[3].feasible and by_trial[3].accuracy_drop["value"] == pytest.approx(0.005)
    # The baseline is dominated by trial 1; trial 2 is infeasible; 1 and 3 trade accuracy for latency.
    assert sorted(p.trial for p in summary.pareto) == [1, 3]
    # Without a re-measurement the train answer rests on single measurements, and says so.
    assert summary.recommended.trial == 1
    train = summary.answer("train")
    assert train is not None and train.given and train.trial == 1 and train.source == "trial"
    assert train.speedup["train_time"]["value"] == pytest.approx(2.0)
    assert "not yet re-measured" in train.verdict and "training 2.00x" in train.verdict
    serve = summary.answer("serve")
    assert serve is not None and not serve.given and "no candidate" in serve.verdict
    assert [(f.trial, f.kind, f.reason) for f in summary.failures] == [(5, "crash", "worker died")]


def test_a_tight_budget_leaves_the_baseline_recommended(study: optuna.Study) -> None:
    summary = summarize_study(study, ("accuracy", "latency"), max_drop=0.0)
    # Only 0 and 1 are feasible, and 1 beats the baseline on accuracy and latency.
    assert [p.trial for p in summary.pareto] == [1]
    slow = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    add(slow, "fp32", 0.9, 1.0, 1.0, role="baseline")
    add(slow, "bf16", 0.9, 2.0, 2.0)
    summary = summarize_study(slow, OBJECTIVES, max_drop=0.01)
    assert summary.recommended is summary.baseline
    assert "keep your training recipe" in summary.verdict and "trial 1" in summary.verdict


def test_a_candidate_within_noise_after_remeasurement_is_not_recommended(study: optuna.Study) -> None:
    within_noise = {"value": 1.02, "ci95": [0.95, 1.10], "label": "no faster than baseline (within noise)"}
    study.set_user_attr("remeasure", {"baseline": 0, "rounds": 7, "trials": {
        "1": {"objectives": {"train_time": within_noise, "latency": within_noise}},
    }})
    summary = summarize_study(study, OBJECTIVES, max_drop=0.01)
    assert summary.remeasured
    assert summary.recommended.trial != 1
    one = next(p for p in summary.pareto if p.trial == 1)
    assert one.speedup["train_time"]["ci95"] == [0.95, 1.10]


def test_no_baseline_is_an_error() -> None:
    s = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    add(s, "bf16", 0.9, 1.0, 1.0)
    with pytest.raises(ValueError, match="no completed baseline"):
        summarize_study(s, OBJECTIVES, 0.01)


def test_output_texts(study: optuna.Study) -> None:
    summary = summarize_study(study, OBJECTIVES, max_drop=0.01)
    texts = output_texts(summary, {"task": "tiny", "study": "s"})
    data = json.loads(texts["pareto.json"])
    assert {"baseline", "pareto", "recommended", "task", "study"} <= set(data)
    for p in [data["baseline"], data["recommended"], *data["pareto"]]:
        assert {"trial", "params", "metrics"} <= set(p)
    assert [p["trial"] for p in data["pareto"]] == [p.trial for p in summary.pareto]
    assert [a["goal"] for a in data["answers"]] == ["train", "serve"]
    assert {"goal", "trial", "params", "speedup", "accuracy_drop", "verdict"} <= set(data["answers"][0])
    recipe = yaml.safe_load(texts["recipe.yaml"])
    assert recipe["trial"] == 1 and recipe["params"] == {"precision.dtype": "bf16"} and recipe["task"] == "tiny"
    assert recipe["goal"] == "train" and list(recipe["answers"]) == ["train"]
