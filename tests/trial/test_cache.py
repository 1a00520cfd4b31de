"""Checkpoint reuse: post-training variants share one training run; the key tracks what changes training."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from torch import nn

import autoaccel
from autoaccel.plugin._pipeline import Member, Pipeline
from autoaccel.plugin._space import Space
from autoaccel.plugin._strategy import Strategy
from autoaccel.trial import _lifecycle as lifecycle
from autoaccel.trial._checkpoints import CheckpointCache, training_key
from autoaccel.trial._run import run_trial
from autoaccel.trial._train import train
from tiny_digits import builtin_strategies, make_mlp, make_task, with_params

BASE = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
DYNAMIC_INT8 = {"quantization.method": "dynamic_int8"}


def test_key_ignores_post_training_and_tracks_training(tiny_task) -> None:  # type: ignore[no-untyped-def]
    key = training_key(tiny_task, BASE)
    assert training_key(tiny_task, with_params(BASE, DYNAMIC_INT8)) == key
    onnx = with_params(BASE, {"runtime.engine": "onnxruntime"}).replace(eval_batch_size=8)
    assert onnx.engine() == "onnxruntime" and training_key(tiny_task, onnx) == key
    assert training_key(tiny_task, BASE.replace(lr=0.05)) != key
    assert training_key(tiny_task, with_params(BASE, {"dataloader.cache": True})) != key  # changes the train time
    assert training_key(tiny_task, with_params(BASE, {"precision.dtype": "bf16"})) != key


def test_variants_reuse_one_training_run(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = run_trial(tiny_task, BASE, timing_budget_s=0.05, cache_dir=str(tmp_path))
    assert first.details["cached_training"] is False
    entry = CheckpointCache(tmp_path).get(training_key(tiny_task, BASE))
    assert entry is not None and entry.meta["accuracy"] == first.metrics["accuracy"]
    second = run_trial(tiny_task, with_params(BASE, DYNAMIC_INT8), timing_budget_s=0.05, cache_dir=str(tmp_path))
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
# is the point: its author then decides, and this test checks, whether it keys training (Pipeline.SERVING says
# which do not). The strategies' sections live in `steps`; which of them key training is checked per strategy below.
VARIANTS: dict[str, Any] = {
    "device": "cuda:0", "batch_size": 64, "lr": 0.2, "epochs": 2, "eval_batch_size": 8, "train": False,
    "baseline_key": "abc", "weights_from": BASE, "members": (Member(1, "k", BASE, {}, 1.0),),
    "steps": with_params(BASE, DYNAMIC_INT8).steps,  # a serving section: the per-strategy test covers the others
    "fraction": 0.25,  # a model trained on a compressed schedule is another model
    "replica": 1,  # another seed trains another model
}


def test_every_plan_field_outside_the_serving_set_keys_training(tiny_task) -> None:  # type: ignore[no-untyped-def]
    assert set(VARIANTS) == {f.name for f in dataclasses.fields(Pipeline)}, "a new plan field needs a VARIANTS entry"
    key = training_key(tiny_task, BASE)
    for name, value in VARIANTS.items():
        changed = training_key(tiny_task, BASE.replace(**{name: value})) != key
        assert changed == (name not in Pipeline.SERVING), name


def choices(space: Space) -> Iterator[dict[str, Any]]:
    """Each value of each parameter, with the siblings it needs to apply set to the first value that enables it."""
    for name, param in space.items():
        enabling: dict[str, Any] = {}
        for cond in param.when:
            sibling = space[cond.sibling]
            enabling[cond.sibling] = next(v for v in sibling.grid_values() if cond.holds(v, sibling.default))
        for value in param.grid_values():
            yield {**enabling, name: value}


@pytest.mark.parametrize("name", sorted(builtin_strategies()))
def test_every_choice_keys_training_iff_its_strategy_declares_it(tiny_task, name: str) -> None:  # type: ignore[no-untyped-def]
    """What keys the checkpoint cache is what each strategy declares (``changes_training``): every setting of a
    training strategy that changes the plan trains its own model, and no setting of a serving one does."""
    strategy = builtin_strategies()[name]
    key = training_key(tiny_task, BASE)
    changed_plans = 0
    for params in choices(strategy.space(tiny_task)):
        plan = strategy.apply(BASE, params)
        if plan == BASE:
            assert training_key(tiny_task, plan) == key, params  # off (or equal to it) is the user's recipe
            continue
        changed_plans += 1
        assert (training_key(tiny_task, plan) != key) == strategy.changes_training, (name, params)
    assert changed_plans, f"no setting of {name} changes the plan"


TRAINING_HOOKS = ("start", "build_model", "configure_training", "prepare_input")


def overrides(strategy: Strategy, hook: str) -> bool:
    return getattr(type(strategy), hook) is not getattr(Strategy, hook)


def test_strategies_acting_on_training_declare_it() -> None:
    """A hook that runs while the model is built or trained changes that training: its strategy must key it."""
    for strategy in builtin_strategies().values():
        acting = [h for h in TRAINING_HOOKS if h != "start" and overrides(strategy, h)]
        assert not acting or strategy.changes_training, (strategy.name, acting)


class RecordingPipeline(Pipeline):
    """A plan that notes every field the code reading it touches."""

    def __getattribute__(self, name: str) -> Any:
        if name in VARIANTS:
            READ.add(name)
        return super().__getattribute__(name)


READ: set[str] = set()
HOOKS_RUN: set[tuple[str, str]] = set()


def student(size: float = 0.5) -> nn.Module:
    return make_mlp()


def recording(name: str, hook: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def recorded(*args: Any) -> Any:
        HOOKS_RUN.add((name, hook))
        return original(*args)

    return recorded


def test_training_reads_nothing_that_the_key_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """What building and training really read, recorded on a real run: no serving-only plan field, and no
    section of a strategy that does not key training, or a recipe differing only there would reuse another's
    checkpoint and its train_time. The plan holds a section of (almost) every strategy."""
    task = make_task(student=student)
    for strategy in builtin_strategies().values():
        for hook in TRAINING_HOOKS:
            if overrides(strategy, hook):
                monkeypatch.setattr(strategy, hook, recording(strategy.name, hook, getattr(strategy, hook)))
    everything = {"batch_size.size": 64, "precision.dtype": "bf16", "dataloader.cache": True, "scheduler.kind": "onecycle",
                  "scheduler.warmup": 0.05, "memory_format.format": "channels_last", "cudnn_benchmark.enabled": True,
                  "distillation.enabled": True, "pruning.method": "unstructured", "ensembling.k": 2,
                  "runtime.engine": "onnxruntime", "cuda_graphs.enabled": True}  # torch.compile left out: slow on CPU
    plain = RecordingPipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    for plan in (plain, with_params(plain, everything)):
        assert isinstance(plan, RecordingPipeline)
        READ.clear()
        HOOKS_RUN.clear()
        lifecycle.start(plan)
        model = lifecycle.build_model(task, plan, seed=0)
        train(model, task, plan, seed=0, baseline=lambda: make_mlp().eval())
        assert {"batch_size", "lr", "epochs"} <= READ
        # `steps` is read to reach the sections; which sections acted is checked through the hooks that ran.
        assert not READ & (Pipeline.SERVING - {"steps"}), READ & Pipeline.SERVING
        strategies = builtin_strategies()
        assert all(strategies[name].changes_training for name, hook in HOOKS_RUN if hook != "start"), HOOKS_RUN
        if plan is not plain:
            assert set(plan.sections) >= {"precision", "dataloader", "scheduler", "pruning", "ensembling", "runtime"}
            assert {("precision", "configure_training"), ("dataloader", "configure_training"),
                    ("scheduler", "configure_training"), ("distillation", "build_model")} <= HOOKS_RUN


def test_compile_and_matmul_precision_train_their_own_model(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A trial that only turns on torch.compile or TF32 must not report the baseline's cached train_time."""
    run_trial(tiny_task, BASE, timing_budget_s=0.02, cache_dir=str(tmp_path))
    tf32 = run_trial(tiny_task, with_params(BASE, {"cudnn_benchmark.matmul_precision": "high"}), timing_budget_s=0.02,
                     cache_dir=str(tmp_path))
    assert tf32.details["cached_training"] is False
