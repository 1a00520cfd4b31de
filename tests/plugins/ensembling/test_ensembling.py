"""ensembling: contract, members drawn from the cache, stacking scored out of fold."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoaccel.errors import TrialFailure
from autoaccel.plugin._pipeline import Member, Pipeline
from autoaccel.plugin.testing import StrategyContract
from autoaccel.plugins.ensembling import EnsemblingStrategy
from autoaccel.plugins.ensembling.models import AverageEnsemble, StackingEnsemble
from autoaccel.trial._checkpoints import training_key
from autoaccel.trial._run import run_trial, served_model


class TestEnsemblingContract(StrategyContract):
    strategy_class = EnsemblingStrategy


def test_ensembles_need_members_then_pay_for_all_of_them(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = str(tmp_path)
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    s = EnsemblingStrategy()
    assert s.members_needed({"k": 3}) == 2 and s.members_needed({"k": 1}) == 0
    avg = s.apply(base, {"k": 2, "method": "average"})
    with pytest.raises(TrialFailure, match="needs 1 other feasible trained model"):
        run_trial(tiny_task, avg, timing_budget_s=0.05, cache_dir=cache)
    other = base.replace(lr=0.05)
    alone = run_trial(tiny_task, other, timing_budget_s=0.05, cache_dir=cache)  # a second trained model
    member = Member(7, training_key(tiny_task, other), other, {"scheduler.lr_factor": 0.5}, alone.metrics["train_time"], 100.0)
    avg = avg.replace(members=(member,))
    own = run_trial(tiny_task, base, timing_budget_s=0.05, cache_dir=cache)
    result = run_trial(tiny_task, avg, timing_budget_s=0.05, cache_dir=cache)
    assert result.metrics["accuracy"] > 0.8
    # Whoever reuses a model pays for it: the ensemble's training is its own plus its member's.
    assert result.metrics["train_time"] == pytest.approx(own.metrics["train_time"] + alone.metrics["train_time"])
    assert result.metrics["memory"] >= 100.0
    assert result.details["members"] == [{"trial": 7, "train_time": alone.metrics["train_time"]}]
    assert isinstance(served_model(tiny_task, avg, cache_dir=cache), AverageEnsemble)
    # Without a cache (autoaccel apply), the member is trained from its own recipe instead of failing.
    assert isinstance(served_model(tiny_task, avg), AverageEnsemble)
    stacked_plan = s.apply(base, {"k": 2, "method": "stacking"}).replace(members=(member,))
    stacked = served_model(tiny_task, stacked_plan, cache_dir=cache)
    assert isinstance(stacked, StackingEnsemble)
    # The trial is judged on the combiner's out-of-fold predictions, handed to the core through the context.
    from autoaccel.trial._checkpoints import CheckpointCache
    from autoaccel.trial._run import trained_model, transformed

    trained = trained_model(tiny_task, stacked_plan, 0, CheckpointCache(cache)).model
    _, held_out = transformed(tiny_task, stacked_plan, 0, trained, CheckpointCache(cache))
    assert held_out is not None and held_out.shape == (len(tiny_task.val_data), 10)
    assert run_trial(tiny_task, stacked_plan, timing_budget_s=0.05, cache_dir=cache).metrics["accuracy"] > 0.8


def test_k1_is_off() -> None:
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    assert EnsemblingStrategy().apply(base, {"k": 1, "method": "stacking"}) == base
