"""A model that aborts, raises and hangs for different batch sizes still yields a finished study."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest

import autoaccel
from autoaccel import Phase, Pipeline, Strategy, hookimpl
from autoaccel.plugin._registry import plugin_manager
from autoaccel.plugin._space import Categorical, Space

pytestmark = pytest.mark.slow  # a study of failing trials

FAULTY = Path(__file__).parent.parent / "fixtures" / "faulty_model.py"


class FaultBatch(Strategy):
    """Exactly the sizes the faulty model reacts to, so a 5-point grid reaches every fault kind."""

    name = "fault_batch"
    phase = Phase.DATA

    def space(self, task: Any = None) -> Space:
        return {"size": Categorical((8, 16, 32, 64, 128), 8)}

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.replace(batch_size=int(params["size"]))


def local_plugin() -> types.ModuleType:
    module = types.ModuleType("fault_plugin")

    @hookimpl
    def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
        register(FaultBatch())

    module.autoaccel_register_strategies = autoaccel_register_strategies  # type: ignore[attr-defined]
    return module


def test_faults_become_failed_trials_and_the_study_finishes(tmp_path: Path, capsys: Any) -> None:
    pm = plugin_manager(load_entrypoints=False)
    pm.register(local_plugin())
    out = tmp_path / "out"
    result = autoaccel.optimize(str(FAULTY), pm=pm, target="cpu", sampler="grid", trials=5, trial_timeout=15,
                                objectives="accuracy,train_time", remeasure_rounds=3, out=str(out), timing_budget_s=0.2,
                                debug=True)
    study = optuna.load_study(study_name="faulty-cpu-both", storage=f"sqlite:///{out / 'study.db'}")
    by_size: dict[int, optuna.trial.FrozenTrial] = {}
    for t in study.trials:  # the grid may propose the baseline's size again: that repeat is reused, not run
        by_size.setdefault(t.params["fault_batch.size"], t)
    assert sorted(by_size) == [8, 16, 32, 64, 128]
    fail = optuna.trial.TrialState.FAIL
    assert by_size[16].state == fail and by_size[16].user_attrs["failure_kind"] == "crash"
    assert "SIGABRT" in by_size[16].user_attrs["reason"]
    assert by_size[32].state == fail and by_size[32].user_attrs["failure_kind"] == "error"
    assert "refuses batches of 32" in by_size[32].user_attrs["reason"]
    assert by_size[64].state == fail and by_size[64].user_attrs["failure_kind"] == "timeout"
    assert "--trial-timeout" in by_size[64].user_attrs["reason"]
    assert by_size[8].state == by_size[128].state == optuna.trial.TrialState.COMPLETE
    # A recommendation is made (the baseline or trial of batch 128), and the failures are reported with reasons.
    assert result.recommended.trial in {by_size[8].number, by_size[128].number}
    pareto = json.loads((out / "pareto.json").read_text())
    assert {f["kind"] for f in pareto["failures"]} == {"crash", "error", "timeout"}
    # Each says where, in the model's own file (an abort and a hang from the worker's stack), and keeps the trace.
    assert all(re.search(r"faulty_model\.py:\d+ in forward", f["where"]) for f in pareto["failures"]), pareto["failures"]
    assert all(t.user_attrs.get("traceback") for t in study.trials if t.state == fail and "duplicate_of" not in t.user_attrs)
    assert pareto["trials"]["by_kind"] == {"crash": 1, "error": 1, "timeout": 1} and pareto["trials"]["failed"] == 3
    # --debug: each failure's whole traceback under its one-line outcome.
    said = capsys.readouterr().err
    assert "Traceback (most recent call last)" in said and "ValueError: this model refuses batches of 32" in said
    report = (out / "report.html").read_text()
    assert "3 failed (" in report and "faulty_model.py:" in report
    assert sys.modules.get("fault_plugin") is None  # the local plugin never had to be importable by the worker
