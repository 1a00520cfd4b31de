"""The replay benchmark on a small recorded table (digits: batch size x precision x quantization, 24
configurations measured on this machine): no training here, only the search logic and its cost accounting."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "tests" / "fixtures" / "tables" / "digits_mini.json"


def test_a_flat_suggestion_finds_the_row_of_the_plan_it_makes(replay) -> None:  # type: ignore[no-untyped-def]
    table = replay.Table(str(TABLE))
    # lr_scaling applies only when the batch size changed: at the user's size it is not part of the point.
    plain = table.lookup({"batch_size.size": 16, "batch_size.lr_scaling": "linear", "precision.dtype": "fp32",
                          "quantization.method": "none"})
    assert plain is table.base
    larger = table.lookup({"batch_size.size": 64, "batch_size.lr_scaling": "linear", "precision.dtype": "fp32",
                           "quantization.method": "none"})
    assert larger["params"] == {"batch_size.size": 64, "batch_size.lr_scaling": "linear"} and larger["goal"] == "train"


def test_training_is_charged_once_per_recipe_and_serving_variants_reuse_it(replay) -> None:  # type: ignore[no-untyped-def]
    table = replay.Table(str(TABLE))
    r = replay.Replay(table)
    r.measure(table.base)
    after_base = r.cost
    assert after_base == pytest.approx(table.base["train_seconds"] + table.base["eval_seconds"])
    served = table.lookup({"batch_size.size": 16, "precision.dtype": "fp32", "quantization.method": "static_int8_ort"})
    assert served["training_key"] == table.base["training_key"] and served["eval_seconds"] > 0
    r.measure(served)
    assert r.cost == pytest.approx(after_base + served["eval_seconds"])  # evaluation only


def test_every_method_replays_and_ours_reaches_both_goals(replay) -> None:  # type: ignore[no-untyped-def]
    from autoaccel.loading import load_task

    table = replay.Table(str(TABLE))
    task = load_task(table.model)
    for method in replay.METHODS:
        r = replay.run_method(method, table, 0, task)
        assert r.cost > 0
    ours = replay.run_method("autoaccel", table, 0, task)
    assert ours.done, ours.reached


def test_a_fixed_trial_budget_is_spent_exactly_and_a_short_run_builds_on_what_helped(replay) -> None:  # type: ignore[no-untyped-def]
    from autoaccel import record
    from autoaccel.loading import load_task

    table = replay.Table(str(TABLE))
    task = load_task(table.model)
    for method in replay.METHODS:
        assert replay.run_method(method, table, 0, task, trials=4).measured == 4, method
    # The shipped digits table (six techniques): 8 trials cannot screen each alone.
    table = replay.Table(str(ROOT / "bench" / "tables" / "digits_cpu.json"))
    ours = replay.run_method("autoaccel", table, 0, load_task(table.model), trials=8)
    assert ours.search.stages.short and ours.measured == 8
    records = [record.read(t) for t in ours.study.get_trials(deepcopy=False)]
    on_top = [r for r in records if r.role == "screen" and r.over is not None and r.duplicate_of is None]
    assert on_top, [(r.role, r.settings) for r in records]
    for r in on_top:  # each adds one technique to a measured configuration, the rest of it unchanged
        over = records[r.over].settings
        added = {k.partition(".")[0] for k, v in r.settings.items() if over.get(k) != v}
        assert len(added) == 1 and records[r.over].measured and not added & {k.partition(".")[0] for k in over}
        assert over.items() <= r.settings.items()
