"""The Python API: autoaccel.optimize(task_object, ...) -> Result. The Task is pickled to the isolated worker
with cloudpickle (its model factory lives in an importable module, tiny_digits)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import autoaccel
from autoaccel import AutoaccelError, Task, hookimpl
from autoaccel.plugin._registry import plugin_manager
from autoaccel.trial._record import TrialRecord

STRATEGIES = "precision,batch_size,dataloader,scheduler"


class Recorder:
    """A reporter plugin: sees every finished trial through the autoaccel_trial_finished hook."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    @hookimpl
    def autoaccel_trial_finished(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def test_optimize_a_task_object(tiny_task: Task, tmp_path: Path) -> None:
    pm = plugin_manager()
    recorder = Recorder()
    pm.register(recorder)
    out = tmp_path / "out"
    result = autoaccel.optimize(tiny_task, trials=3, out=str(out), target="cpu", strategies=STRATEGIES,
                                timing_budget_s=0.05, remeasure_rounds=2, quiet=True, pm=pm)
    assert isinstance(result, autoaccel.Result)
    assert result.baseline.trial == 0 and result.baseline.role == "baseline"
    assert result.pareto and result.recommended in [result.baseline, *result.pareto]
    assert result.out_dir == out
    assert result.verdict
    assert {"accuracy", "train_time", "latency"} <= set(result.baseline.metrics)
    assert result.baseline.metrics["accuracy"] > 0.5, "the worker really trained the model"
    counted = [t for t in result.study.get_trials() if "duplicate_of" not in t.user_attrs]
    assert len(counted) == 3
    data = json.loads((out / "pareto.json").read_text())
    assert data["baseline"]["trial"] == 0
    # One record per trial the worker ran, in order, each with the documented keys: the stored trial record
    # (autoaccel.trial._record.TrialRecord.describe()), whose state is complete or failed.
    assert [r["number"] for r in recorder.records] == [t.number for t in counted]
    for r in recorder.records:
        assert set(r) == {f.name for f in dataclasses.fields(TrialRecord)}
        assert {"number", "state", "params", "config", "goal", "metrics", "ci95", "details", "failure_kind", "reason"} <= set(r)
        assert r["state"] in ("complete", "failed")


def test_unknown_option_is_refused_before_anything_runs(tiny_task: Task, tmp_path: Path) -> None:
    with pytest.raises(AutoaccelError, match=r"^optimize\(\): unknown option 'trails'; did you mean 'trials'\?"):
        autoaccel.optimize(tiny_task, trails=3, out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_an_invalid_task_object_is_refused_before_anything_runs(tiny_task: Task, tmp_path: Path) -> None:
    import dataclasses

    with pytest.raises(AutoaccelError, match=r"^Task\.epochs: must be a positive integer, but got 0"):
        autoaccel.optimize(dataclasses.replace(tiny_task, epochs=0), trials=1, out=str(tmp_path / "out"), target="cpu")
    assert not (tmp_path / "out").exists()


def test_a_budget_stops_the_search_and_leaves_time_to_finish(tiny_task: Task, tmp_path: Path) -> None:
    # 0.1 minute: the searching share (70%, 4.2 s) ends after a few trials; the run still finishes with answers.

    from autoaccel.options import FINISH_SHARE

    result = autoaccel.optimize(tiny_task, budget=0.1, out=str(tmp_path / "out"), target="cpu", strategies=STRATEGIES,
                                timing_budget_s=0.05, remeasure_rounds=2, quiet=True, isolate=False)
    searched = [t for t in result.study.get_trials() if t.user_attrs.get("role") not in ("ablation", "combined")]
    first = min(t.datetime_start for t in searched)
    last = max(t.datetime_start for t in searched)
    # No search trial started after the searching share (a trial in flight then may end a little later).
    assert (last - first).total_seconds() <= 0.1 * 60 * (1 - FINISH_SHARE) + 0.5
    assert result.baseline.trial == 0 and result.verdict


def test_a_relative_quality_budget_becomes_absolute_once_the_baseline_is_measured(tiny_task: Task, tmp_path: Path) -> None:
    result = autoaccel.optimize(tiny_task, trials=2, max_accuracy_drop="5%", out=str(tmp_path / "out"), target="cpu",
                                strategies=STRATEGIES, timing_budget_s=0.05, remeasure_rounds=0, quiet=True, isolate=False)
    base = result.baseline.metrics["accuracy"]
    assert result.study.user_attrs["max_accuracy_drop"] == pytest.approx(0.05 * base)
    data = json.loads((tmp_path / "out" / "pareto.json").read_text())
    assert data["max_accuracy_drop"] == pytest.approx(0.05 * base)
    for t in result.study.get_trials():
        if t.state.name == "COMPLETE" and "metrics" in t.user_attrs:
            # the constraint Optuna saw is the drop beyond 5% of the baseline's accuracy
            drop = base - t.user_attrs["metrics"]["accuracy"]
            assert t.user_attrs["constraint"] == pytest.approx(drop - 0.05 * base)
