"""Checkpoint reuse: post-training variants share one training run; the key tracks what changes training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna

import autoaccel
from autoaccel.cache import DERIVED_FIELDS, SERVING_FIELDS, CheckpointCache, training_key
from autoaccel.pipeline import DistillPlan, LoaderPlan, Member, Pipeline, RuntimePlan, SchedulePlan
from autoaccel.plugins.quantization import dynamic_int8
from autoaccel.train import train
from autoaccel.trial import build_model, run_trial, trainable

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


# A value other than the default for every Pipeline field; a field added to the plan must be added here, which
# is the point: its author then decides, and this test checks, whether training reads it.
VARIANTS: dict[str, Any] = {
    "device": "cuda:0", "batch_size": 64, "lr": 0.2, "epochs": 2, "precision": "bf16", "loss_scaling": True,
    "schedule": SchedulePlan("cosine", 0.1), "loader": LoaderPlan(num_workers=1), "eval_batch_size": 8, "train": False,
    "memory_format": "channels_last", "compile_mode": "default", "cudnn_benchmark": True, "matmul_precision": "high",
    "cuda_graphs": True, "quantized": True, "distill": DistillPlan(), "runtime": RuntimePlan("onnxruntime"),
    "teacher_key": "abc", "weights_from": BASE, "model_transforms": (dynamic_int8,),
    "members": (Member(1, "k", BASE, {}, 1.0),), "extras": {"third_party": 1},
}


def test_every_plan_field_outside_the_serving_set_keys_training(tiny_task) -> None:  # type: ignore[no-untyped-def]
    assert set(VARIANTS) == {f.name for f in dataclasses.fields(Pipeline)}, "a new plan field needs a VARIANTS entry"
    key = training_key(tiny_task, BASE)
    for name, value in VARIANTS.items():
        changed = training_key(tiny_task, BASE.replace(**{name: value})) != key
        assert changed == (name not in SERVING_FIELDS | DERIVED_FIELDS), name


class RecordingPipeline(Pipeline):
    """A plan that notes every field the code reading it touches."""

    def __getattribute__(self, name: str) -> Any:
        if name in VARIANTS:
            READ.add(name)
        return super().__getattribute__(name)


READ: set[str] = set()


def test_training_reads_no_field_that_the_key_leaves_out(tiny_task) -> None:  # type: ignore[no-untyped-def]
    """What the training loop really reads, recorded on a real run: none of it may be a serving-only field, or
    a recipe differing only there would reuse another's checkpoint and its train_time."""
    for plan in (RecordingPipeline(device="cpu", batch_size=32, lr=0.1, epochs=1),
                 RecordingPipeline(device="cpu", batch_size=32, lr=0.1, epochs=1, precision="bf16",
                                   loader=LoaderPlan(cache=True), schedule=SchedulePlan("onecycle", 0.05))):
        READ.clear()
        model = trainable(build_model(tiny_task, plan), plan)
        train(model, tiny_task, plan, seed=0)
        assert {"batch_size", "lr", "epochs", "precision", "loader", "schedule"} <= READ
        assert not READ & SERVING_FIELDS, READ & SERVING_FIELDS


def test_compile_and_matmul_precision_train_their_own_model(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A trial that only turns on torch.compile or TF32 must not report the baseline's cached train_time."""
    run_trial(tiny_task, BASE, timing_budget_s=0.02, cache_dir=str(tmp_path))
    tf32 = run_trial(tiny_task, BASE.replace(matmul_precision="high"), timing_budget_s=0.02, cache_dir=str(tmp_path))
    assert tf32.details["cached_training"] is False
