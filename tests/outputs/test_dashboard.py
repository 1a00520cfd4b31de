"""The study stays in storage in a form optuna-dashboard reads: it lists studies through the storage API,
shows directions and metric names, and renders every trial's params, values and JSON user attributes."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.trial import TrialState

import autoaccel


def test_study_loads_through_optunas_public_storage_api(tmp_path: Path, tiny_task_file: Path) -> None:
    autoaccel.optimize(str(tiny_task_file), target="cpu", trials=3, out=str(tmp_path), strategies="batch_size",
                       objectives="accuracy,train_time", timing_budget_s=0.05, remeasure_rounds=2, ablation=False)
    # What `optuna-dashboard sqlite:///.../study.db` does first: open the storage and list its studies.
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    summaries = storage.get_all_studies()
    assert [s.study_name for s in summaries] == ["tiny-cpu-both"]  # the workers' claims live in OUT/workers.db
    frozen = summaries[0]
    claims = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'workers.db'}")
    held = claims.get_all_trials(claims.get_all_studies()[0]._study_id)
    assert held and all(t.user_attrs["claim"] in ("worker", "config", "baseline", "finish") for t in held)
    assert all(t.state == TrialState.COMPLETE for t in held), "a finished run holds no claim"
    assert [d.name for d in frozen.directions] == ["MAXIMIZE", "MINIMIZE"]
    study = optuna.load_study(study_name="tiny-cpu-both", storage=storage)
    assert study.metric_names == ["accuracy", "train_time"]  # the dashboard labels its axes with these
    trials = storage.get_all_trials(frozen._study_id)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(len(t.values) == 2 for t in complete)
    for t in trials:
        json.dumps(t.user_attrs)  # the dashboard serialises user attributes as JSON
        assert all(isinstance(k, str) for k in t.params)
    json.dumps(study.user_attrs)
    assert "answers" in study.user_attrs and "environment" in study.user_attrs
