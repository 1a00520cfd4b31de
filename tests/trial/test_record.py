"""The trial record: one typed view of what a trial stored, written and read in one place."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from autoaccel.trial import _record as record


def test_what_is_written_reads_back_typed() -> None:
    study = optuna.create_study(directions=["maximize"])
    trial = study.ask({"a.x": optuna.distributions.CategoricalDistribution([1, 2])})
    record.write(trial, config={"a.x": 2}, goal="serve", metrics={"accuracy": 0.9}, ci95={"accuracy": (0.8, 0.95)},
                 details={"members": [{"trial": 3, "train_time": 1.5}]}, constraint=-0.01)
    study.tell(trial, [0.9])
    r = record.read(study.trials[0])
    assert r.state == TrialState.COMPLETE and r.measured and r.feasible
    assert r.ci95 == {"accuracy": [0.8, 0.95]}  # intervals come back as the JSON lists they are stored as
    assert r.settings == {"a.x": 2} and r.members == [{"trial": 3, "train_time": 1.5}] and r.values == [0.9]


def test_a_misspelt_field_is_refused_not_stored() -> None:
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(KeyError, match="metric"):
        record.write(trial, metric={"accuracy": 1.0})
    assert trial.user_attrs == {}


def test_a_record_without_config_is_defined_by_its_params_and_over_budget_is_infeasible() -> None:
    study = optuna.create_study()
    trial = study.ask({"b.y": optuna.distributions.IntDistribution(0, 3)})
    record.write(trial, constraint=0.2)
    study.tell(trial, state=TrialState.FAIL)
    r = record.read(study.trials[0])
    assert r.settings == r.params and not r.feasible and not r.measured
