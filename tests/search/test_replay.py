"""The replay benchmark on a small recorded table (digits: batch size x precision x quantization, 24
configurations measured on this machine): no training here, only the search logic and its cost accounting."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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
    from autoaccel.task._loading import load_task

    table = replay.Table(str(TABLE))
    task = load_task(table.model)
    for method in replay.METHODS:
        r = replay.run_method(method, table, 0, task)
        assert r.cost > 0
    ours = replay.run_method("autoaccel", table, 0, task)
    assert ours.done, ours.reached


def test_a_fixed_trial_budget_is_spent_exactly_and_a_short_run_builds_on_what_helped(replay) -> None:  # type: ignore[no-untyped-def]
    from autoaccel.task._loading import load_task
    from autoaccel.trial import _record as record

    table = replay.Table(str(TABLE))
    task = load_task(table.model)
    for method in replay.METHODS:
        assert replay.run_method(method, table, 0, task, trials=4).measured == 4, method
    # The shipped digits table (six techniques): 8 trials cannot screen each alone.
    table = replay.Table(str(ROOT / "bench" / "tables" / "digits_cpu.json"))
    ours = replay.run_method("autoaccel", table, 0, load_task(table.model), trials=8)
    assert ours.search.policy.stages.short and ours.measured == 8
    records = [record.read(t) for t in ours.study.get_trials(deepcopy=False)]
    on_top = [r for r in records if r.role == "screen" and r.over is not None and r.duplicate_of is None]
    assert on_top, [(r.role, r.settings) for r in records]
    for r in on_top:  # each adds one technique to a measured configuration, the rest of it unchanged
        over = records[r.over].settings
        added = {k.partition(".")[0] for k, v in r.settings.items() if over.get(k) != v}
        assert len(added) == 1 and records[r.over].measured and not added & {k.partition(".")[0] for k in over}
        assert over.items() <= r.settings.items()


FIDELITY_TABLE = ROOT / "tests" / "fixtures" / "tables" / "digits_fidelity_mini.json"


@pytest.fixture(scope="module")
def fidelity_replay(bench_script):  # type: ignore[no-untyped-def]
    """bench/fidelity_replay.py, loaded as a module beside search_replay.py."""
    return bench_script("fidelity_replay")


def test_a_fidelity_table_charges_each_method_its_runs_at_their_share_of_the_schedule(fidelity_replay) -> None:  # type: ignore[no-untyped-def]
    from autoaccel.task._loading import load_task

    table = fidelity_replay.FidelityTable(str(FIDELITY_TABLE))
    task = load_task(str(ROOT / table.model))
    whole = {fidelity_replay.key(r["config"]): r["at"]["1.0"]["wall_s"] for r in table.rows}
    # Plain TPE trains every trial whole: its cost is a sum of full-length runs.
    tpe = fidelity_replay.run_method("tpe", table, 0, task)
    assert tpe.reached is not None and tpe.history[0][0] == pytest.approx(whole["[]"])
    # Hyperband's trials start at 1/16: the first one (the recipe) costs its run there first, and a pruned trial
    # costs less than a whole training.
    hb = fidelity_replay.run_method("tpe+hyperband", table, 0, task)
    assert hb.cost > 0 and all(b >= a for (a, _), (b, _) in zip(hb.history, hb.history[1:]))
    # Ours, planned as a run of a quarter of a minute plans it: compressed rungs, each trial charged its run there.
    ours = fidelity_replay.ours(table, 0, 2 * len(table.rows), task, budget_min=0.25)
    search_rung, answer_rung = ours.rungs
    assert search_rung < 1.0 and answer_rung >= search_rung
    assert ours.cost < sum(whole.values())
    assert not ours.wrong  # whatever it answers holds at full length (its quality rule is the search's own)
    # A default 5-minute run affords whole trainings of this quick recipe: the search trains them whole.
    assert fidelity_replay.ours(table, 0, 8, task).rungs == (1.0, 1.0)


@pytest.mark.slow
def test_search_replay_prints_a_fidelity_tables_comparison(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "bench" / "search_replay.py"), "--table", str(FIDELITY_TABLE),
                           "--seeds", "2", "--budget", "0.25", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["methods"]) == {"autoaccel", "tpe", "tpe+hyperband", "random"}
    assert result["methods"]["autoaccel"]["rungs"][0] < 1.0
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "search_replay.py"), "--table", str(FIDELITY_TABLE),
                          "--budget", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--budget: expected a positive number of minutes" in bad.stderr
