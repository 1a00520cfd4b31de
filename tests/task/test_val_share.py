"""--val-fraction: quality measured on a fixed, seeded share of the validation set, the same rows every trial."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import autoaccel
from autoaccel.confirm import load_run
from autoaccel.options import parse_val_fraction as parse
from autoaccel.task._loading import load_task
from autoaccel.task._val_share import bound
from autoaccel.trial._record import read
from tiny_digits import make_task, task_source, write_model


def test_a_share_is_a_fraction_a_ratio_or_a_percentage_in_0_1() -> None:
    assert parse(0.1) == parse("1/10") == parse("10%") == pytest.approx(0.1)
    assert parse("1") == 1.0
    for bad in ("0", "1.5", "-1/4", "nan", "a tenth", "0%"):
        with pytest.raises((ValueError, ZeroDivisionError)):
            parse(bad)


def test_the_cut_keeps_the_same_rows_in_their_order_for_every_call() -> None:
    task = make_task()
    n = len(task.val_data)
    cut, again = bound(task, 0.25), bound(task, 0.25)
    assert len(cut.val_data) == math.ceil(n / 4)
    assert cut.val_data.indices == again.val_data.indices == sorted(cut.val_data.indices)
    assert len(set(cut.val_data.indices)) == len(cut.val_data)
    assert bound(task, 1.0) is task


def test_every_trial_is_judged_on_the_share(tmp_path: Path) -> None:
    model = write_model(tmp_path, task_source())
    out = tmp_path / "out"
    autoaccel.optimize(model, trials=2, out=str(out), target="cpu", strategies=("runtime",),
                       val_fraction="1/4", remeasure_rounds=0, quiet=True)
    study = load_run(out, None, None)
    n = len(load_task(str(model)).val_data)
    measured = [read(t) for t in study.get_trials() if read(t).measured]
    assert len(measured) == 2 and study.user_attrs["val_fraction"] == 0.25
    # In the worker that re-imported model.py too: a quarter of the rows, per-sample correctness kept for pairing.
    assert {r.details["correct_n"] for r in measured} == {math.ceil(n / 4)}
