"""A plan whose model needs more training than its own run (an ensemble's members) is re-measured paired: each
member's recipe is timed in the same rounds, so its training speedup gets an interval, not one measurement.
Real trainings on the tiny digits task, a real SQLite study."""

from __future__ import annotations

from pathlib import Path

import autoaccel
from autoaccel.confirm import load_run
from autoaccel.finish._finisher import BEYOND, Finisher
from autoaccel.options import Options
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search import _study as studies
from autoaccel.search._search import Search
from autoaccel.task._loading import load_task
from autoaccel.trial._isolation import InProcessRunner
from autoaccel.trial._record import read
from tiny_digits import task_source, write_model


def test_an_ensembles_training_is_remeasured_with_its_members_in_the_same_rounds(tmp_path: Path) -> None:
    model = write_model(tmp_path, task_source())
    out = tmp_path / "out"
    strategies = ("batch_size", "ensembling")
    autoaccel.optimize(model, trials=1, out=str(out), target="cpu", strategies=strategies, remeasure_rounds=0,
                       max_accuracy_drop=0.1, isolate=False, quiet=True)
    study = load_run(out, None, None)
    options = Options(out=str(out), target="cpu", strategies=strategies, remeasure_rounds=3, isolate=False, quiet=True,
                      max_accuracy_drop=0.1)
    task = load_task(str(model))
    search = Search(task, model, options, plugin_manager())
    runner = InProcessRunner(task, options.checkpoints(task.name))
    search.attach(study, studies.open_storage(f"sqlite:///{(out / 'workers.db').resolve()}", options.heartbeat))
    try:
        other = search.executor.run_fixed(study, runner, {"batch_size.size": 16}, "ablation")  # a second trained recipe (a finish role: no speed bar)
        ensemble = search.executor.run_fixed(study, runner, {"ensembling.k": 2}, "ablation")
    finally:
        search.team.crew.release_all()
        search.team.heartbeat.close()
    assert other is not None and ensemble is not None
    members = read(ensemble).members
    assert [m["trial"] for m in members] == [other.number]

    finisher = Finisher(search.finish_inputs(study), study, runner)
    assert finisher.remeasure([ensemble.number])
    train = study.user_attrs["remeasure"]["trials"][str(ensemble.number)]["objectives"]["train_time"]
    lo, hi = train["ci95"]
    # Two trainings (its own, the baseline's recipe, and its member's) against one: about half the speed, with
    # an interval from the paired rounds, and it says how it was measured.
    assert train["source"] == BEYOND
    assert 0.0 < lo <= train["value"] <= hi < float("inf"), train
    assert train["value"] < 0.8, train  # (its interval may reach past 1 on a loaded machine: three rounds only)

