"""A configuration the finish or a confirmation enqueues is the one it gets back: Optuna hands out the oldest
waiting trial, and a process killed between enqueueing and running leaves one behind (a confirmation killed
after its recipe's whole training got its answers' trainings swapped). Real tiny digits trainings, a real
SQLite study."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

import autoaccel
from autoaccel.confirm import load_run
from autoaccel.options import Options
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search import _study as studies
from autoaccel.search._search import Search
from autoaccel.task._loading import load_task
from autoaccel.trial import record
from autoaccel.trial._isolation import InProcessRunner
from tiny_digits import task_source, write_model


def test_a_trial_left_waiting_by_a_killed_process_does_not_take_the_place_of_the_one_asked_for(tmp_path: Path) -> None:
    model = write_model(tmp_path, task_source())
    out = tmp_path / "out"
    autoaccel.optimize(model, trials=1, out=str(out), target="cpu", strategies=("batch_size",), remeasure_rounds=0,
                       max_accuracy_drop=0.1, isolate=False, quiet=True)
    study = load_run(out, None, None)
    options = Options(out=str(out), target="cpu", strategies=("batch_size",), isolate=False, quiet=True,
                      remeasure_rounds=0, max_accuracy_drop=0.1)
    task = load_task(str(model))
    search = Search(task, model, options, plugin_manager())
    # What a killed process left: a configuration enqueued, never asked for.
    stale = {**search.setup.defaults, "batch_size.size": 16}
    study.enqueue_trial(stale, user_attrs=record.enqueued("ablation"))
    runner = InProcessRunner(task, options.checkpoints(task.name))
    search.attach(study, studies.open_storage(f"sqlite:///{(out / 'workers.db').resolve()}", options.heartbeat))
    try:
        asked = search.executor.run_fixed(study, runner, {"batch_size.size": 128}, "ablation")
        again = search.executor.run_fixed(study, runner, {"batch_size.size": 16}, "ablation")
    finally:
        search.team.crew.release_all()
        search.team.heartbeat.close()
    assert asked is not None and record.read(asked).config == {"batch_size.size": 128}
    # The one left waiting was measured too (somebody wanted it), so asking for it again reuses it.
    assert again is not None and record.read(again).config == {"batch_size.size": 16} and again.number < asked.number
    assert not study.get_trials(states=(TrialState.WAITING,))
