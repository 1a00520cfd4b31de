"""Checkpoint reuse: post-training variants share one training run; the key tracks what changes training."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

import autoaccel
from autoaccel.cache import CheckpointCache, training_key
from autoaccel.pipeline import LoaderPlan, Pipeline, RuntimePlan
from autoaccel.plugins.quantization import dynamic_int8
from autoaccel.trial import run_trial

BASE = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)


def test_key_ignores_post_training_and_tracks_training(tiny_task) -> None:  # type: ignore[no-untyped-def]
    key = training_key(tiny_task, BASE)
    assert training_key(tiny_task, BASE.add_transform(dynamic_int8)) == key
    assert training_key(tiny_task, BASE.replace(runtime=RuntimePlan("onnxruntime"), eval_batch_size=8)) == key
    assert training_key(tiny_task, BASE.replace(lr=0.05)) != key
    assert training_key(tiny_task, BASE.replace(loader=LoaderPlan(cache=True))) != key  # changes the train time
    assert training_key(tiny_task, BASE.replace(precision="bf16")) != key


def test_variants_reuse_one_training_run(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = run_trial(tiny_task, BASE, timing_budget_s=0.05, cache_dir=str(tmp_path))
    assert first.details["cached_training"] is False
    entry = CheckpointCache(tmp_path).get(training_key(tiny_task, BASE))
    assert entry is not None and entry.meta["accuracy"] == first.metrics["accuracy"]
    second = run_trial(tiny_task, BASE.add_transform(dynamic_int8), timing_budget_s=0.05, cache_dir=str(tmp_path))
    assert second.details["cached_training"] is True
    assert second.metrics["train_time"] == first.metrics["train_time"]  # the recipe's cost, measured once


def test_inference_mode_trains_once_and_searches_post_training(tmp_path: Path, tiny_task_file: Path) -> None:
    result = autoaccel.optimize(str(tiny_task_file), mode="inference", target="cpu", trials=4, out=str(tmp_path),
                                strategies="quantization,pruning", timing_budget_s=0.05, remeasure_rounds=2)
    assert result.summary.objectives == ("accuracy", "latency")
    trials = [t for t in result.study.trials if t.state == optuna.trial.TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    trained = [t for t in trials if not t.user_attrs["details"].get("cached_training", False)]
    assert len(trained) == 1  # only the first trial trained; every variant started from its checkpoint
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["mode"] == "inference"
    assert Path(pareto["export"]["files"]["state_dict"]).exists()
