"""The finish fits the time the budget leaves: its finalists' re-measurement is cut (the lowest-ranked finalists
first, then rounds) to what that time affords, and says so. A real tiny digits study, a real SQLite storage."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import autoaccel
from autoaccel.confirm import load_run
from autoaccel.finish._finisher import FEWEST_ROUNDS, REMEASURE_SHARE, Finisher
from autoaccel.options import Options
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search._search import Search
from autoaccel.task._loading import load_task
from autoaccel.trial._isolation import InProcessRunner
from tiny_digits import task_source, write_model


def test_the_remeasurement_is_cut_to_the_time_left(tmp_path: Path) -> None:
    model = write_model(tmp_path, task_source())
    out = tmp_path / "out"
    autoaccel.optimize(model, trials=4, out=str(out), target="cpu", strategies=("batch_size",), remeasure_rounds=0,
                       max_accuracy_drop=0.5, isolate=False, quiet=True, sampler="random")
    study = load_run(out, None, None)
    options = Options(out=str(out), target="cpu", strategies=("batch_size",), remeasure_rounds=7, isolate=False,
                      quiet=True, max_accuracy_drop=0.5)
    task = load_task(str(model))
    search = Search(task, model, options, plugin_manager())
    runner = InProcessRunner(task, options.checkpoints(task.name))
    trials = [t.number for t in study.get_trials() if t.user_attrs.get("role") != "baseline" and t.values]
    assert len(trials) >= 2
    wanted = {"train": trials[:2], "serve": []}

    unlimited = Finisher(search.finish_inputs(study), study, runner)
    assert unlimited.fit(wanted) == (wanted, "") and unlimited.rounds == 7  # no budget: nothing is cut
    one_round = unlimited.round_s(trials[:2])
    assert one_round > 0

    # Time for the two finalists in 10 rounds: nothing is cut.
    given = dataclasses.replace(search.finish_inputs(study), budget_end=time.monotonic() + 10 * one_round / REMEASURE_SHARE)
    finisher = Finisher(given, study, runner)
    assert finisher.fit(wanted) == (wanted, "") and finisher.rounds == 7
    # Time for 4.5 rounds of both: the lowest-ranked finalist goes first, the rounds are kept as far as they fit.
    given = dataclasses.replace(given, budget_end=time.monotonic() + 4.5 * one_round / REMEASURE_SHARE)
    finisher = Finisher(given, study, runner)
    kept, said = finisher.fit(wanted)
    assert kept == {"train": trials[:1], "serve": []} and finisher.rounds >= FEWEST_ROUNDS
    assert "left of the budget affords" in said
    # Hardly any time: one finalist per goal, the fewest rounds.
    given = dataclasses.replace(given, budget_end=time.monotonic() + 0.1)
    finisher = Finisher(given, study, runner)
    kept, said = finisher.fit(wanted)
    assert kept == {"train": trials[:1], "serve": []} and finisher.rounds == FEWEST_ROUNDS
    assert "2 finalist(s) in 7 rounds wanted" in said
