"""ensembling: contract, members drawn from the cache, stacking scored out of fold."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoaccel.ensemble import AverageEnsemble, StackingEnsemble
from autoaccel.errors import TrialFailure
from autoaccel.pipeline import Pipeline
from autoaccel.plugins.ensembling import EnsemblingStrategy
from autoaccel.testing import StrategyContract
from autoaccel.trial import run_trial, served_model


class TestEnsemblingContract(StrategyContract):
    strategy_class = EnsemblingStrategy


def test_ensembles_need_enough_cached_models_then_use_them(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = str(tmp_path)
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    s = EnsemblingStrategy()
    avg = s.apply(base, {"k": 2, "method": "average"})
    with pytest.raises(TrialFailure, match="needs 2 trained models"):
        run_trial(tiny_task, avg, timing_budget_s=0.05, cache_dir=cache)
    run_trial(tiny_task, base.replace(lr=0.05), timing_budget_s=0.05, cache_dir=cache)  # a second trained model
    result = run_trial(tiny_task, avg, timing_budget_s=0.05, cache_dir=cache)
    assert result.metrics["accuracy"] > 0.8
    assert isinstance(served_model(tiny_task, avg, cache_dir=cache), AverageEnsemble)
    stacked_plan = s.apply(base, {"k": 2, "method": "stacking"})
    stacked = served_model(tiny_task, stacked_plan, cache_dir=cache)
    assert isinstance(stacked, StackingEnsemble)
    assert stacked.oof_outputs.shape == (len(tiny_task.val_data), 10)
    assert run_trial(tiny_task, stacked_plan, timing_budget_s=0.05, cache_dir=cache).metrics["accuracy"] > 0.8


def test_k1_is_off() -> None:
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    assert EnsemblingStrategy().apply(base, {"k": 1, "method": "stacking"}) == base
