"""A worker's part in a run shared with other workers of one study (search/team/_coordinator.py): joining the
run, its trial budget, waiting for the user's recipe, failing the trials of workers that died, settling before the
finish and deciding who finishes. The other workers are claims another process (another host) holds in the
study's companion, written there as that process would write them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from autoaccel.errors import AutoaccelError
from autoaccel.options import Options
from autoaccel.outputs import Progress
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search._budget import Budget
from autoaccel.search._setup import Setup, set_up_search
from autoaccel.search._study import open_storage
from autoaccel.search.team import Coordinator
from autoaccel.search.team._claims import companion_name
from autoaccel.search.team._claims import me as this_worker
from autoaccel.task import Task
from autoaccel.trial import InProcessRunner, TrialRecord, record
from study_snapshot import sqlite_url
from tiny_digits import make_task

ELSEWHERE = {"host": "elsewhere", "pid": 4242}  # a worker on another host: alive as long as its claims are
OBJECTIVES = ("accuracy", "train_time", "latency")


@pytest.fixture(scope="module")
def task() -> Task:
    return make_task()


@pytest.fixture(scope="module")
def setup(task: Task) -> Setup:
    return set_up_search(task, Options(trials=5, target="cpu", strategies=("precision",)), plugin_manager())


@pytest.fixture
def made() -> Iterator[list[Coordinator]]:
    """Coordinators made by a test; their heartbeat threads are stopped after it."""
    made: list[Coordinator] = []
    yield made
    for c in made:
        c.heartbeat.close()


def new_study(storage: Any = None, name: str = "shared") -> optuna.Study:
    return optuna.create_study(storage=storage or optuna.storages.InMemoryStorage(), study_name=name,
                               directions=["maximize", "minimize", "minimize"])


def coordinator(task: Task, setup: Setup, study: optuna.Study, made: list[Coordinator], **options: Any) -> Coordinator:
    c = Coordinator(task, Options(**{"trials": 5, "target": "cpu", "heartbeat": 1, **options}), setup, Progress(quiet=False),
                    study.study_name)
    c.attach(study)
    made.append(c)
    return c


def other_worker(study: optuna.Study, kind: str = "worker", key: str = "search", **attrs: Any) -> int:
    """A claim held by a worker of another host, in the study's companion (as its Workers.claim writes one)."""
    storage = study._storage
    companion = optuna.create_study(storage=storage, study_name=companion_name(study.study_name), load_if_exists=True)
    template = optuna.trial.create_trial(state=TrialState.RUNNING,
                                         user_attrs={"claim": kind, "key": key, "worker": ELSEWHERE, "attrs": attrs})
    trial_id = storage.create_new_trial(companion._study_id, template_trial=template)
    return storage.get_trial(trial_id).number


def live_claims(study: optuna.Study, kind: str) -> list[dict[str, Any]]:
    companion = optuna.load_study(study_name=companion_name(study.study_name), storage=study._storage)
    return [t.user_attrs["worker"] for t in companion.get_trials(states=(TrialState.RUNNING,)) if t.user_attrs["claim"] == kind]


def waiting_baselines(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(states=(TrialState.WAITING,)) if t.user_attrs.get("role") == "baseline"]


def finished_trial(study: optuna.Study, state: TrialState = TrialState.COMPLETE, **fields: Any) -> int:
    values = [0.9, 1.0, 0.01] if state == TrialState.COMPLETE else None
    study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=record.enqueued(**fields)))
    return study.get_trials()[-1].number


def read(study: optuna.Study, number: int) -> TrialRecord:
    return record.read(study.get_trials()[number])


def test_a_lone_worker_keeps_the_users_seed_and_sampler_and_queues_the_users_recipe_once(
        task: Task, setup: Setup, made: list[Coordinator]) -> None:
    study = new_study()
    sampler = study.sampler
    first = coordinator(task, setup, study, made, seed=11)
    budget = Budget(deadline=time.monotonic() + 60.0, why="--timeout reached")
    deadline = budget.deadline
    first.join(study, budget)
    assert study.sampler is sampler and first.crew.registration is not None
    assert first.crew.registration.attrs["seed"] == 11
    assert (budget.deadline, budget.why) == (deadline, "--timeout reached")  # nobody's deadline to adopt
    (queued,) = waiting_baselines(study)
    assert queued.system_attrs["fixed_params"] == setup.defaults
    # Whoever joins next (or this worker again) finds it queued: never twice.
    coordinator(task, setup, study, made).join(study, Budget())
    assert len(waiting_baselines(study)) == 1


def test_a_worker_joining_a_live_run_adopts_its_deadline_and_budget_and_samples_apart(
        task: Task, setup: Setup, made: list[Coordinator], capsys: pytest.CaptureFixture[str]) -> None:
    study = new_study()
    sampler = study.sampler
    other_worker(study, seed=0, deadline=time.time() + 50.0, budget_end=time.time() + 100.0, run=0)
    me = coordinator(task, setup, study, made, seed=0)
    budget = Budget(deadline=time.monotonic() + 1000.0, why="--timeout reached", end=time.monotonic() + 2000.0)
    me.join(study, budget)
    now = time.monotonic()
    assert budget.deadline is not None and now + 45.0 < budget.deadline <= now + 50.0
    assert budget.end is not None and now + 95.0 < budget.end <= now + 100.0
    assert budget.why == "the run's deadline (set by worker elsewhere:4242) reached"
    # Its own seed and a sampler that knows others are searching, so the workers do not propose in lockstep.
    assert isinstance(study.sampler, optuna.samplers.TPESampler) and study.sampler is not sampler
    assert me.crew.registration is not None and me.crew.registration.attrs["seed"] != 0
    assert me.crew.run == 0  # the founder's run: the trial budget is shared with it
    assert "joins 1 other worker(s) on study 'shared'" in capsys.readouterr().err


def test_a_worker_on_shared_storage_says_its_checkpoints_stay_on_this_host(
        task: Task, setup: Setup, made: list[Coordinator], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path / "study.db")
    study = new_study(url)
    sampler = study.sampler
    me = coordinator(task, setup, study, made, storage=url, seed=5)
    me.join(study, Budget())
    assert study.sampler is not sampler  # another worker may join at any time
    assert me.crew.registration is not None and me.crew.registration.attrs["seed"] == 5  # alone: the user's seed
    err = capsys.readouterr().err
    assert "on this host only" in err and "--cache-dir" in err
    other_url = sqlite_url(tmp_path / "other.db")
    other = new_study(other_url)
    coordinator(task, setup, other, made, storage=other_url, cache_dir=str(tmp_path / "cache")).join(other, Budget())
    assert "on this host only" not in capsys.readouterr().err  # --cache-dir given: a folder every host shares


def test_the_runs_trial_budget_counts_every_workers_trials_of_this_run_but_not_reuses_or_queued_ones(
        task: Task, setup: Setup, made: list[Coordinator]) -> None:
    study = new_study()
    me = coordinator(task, setup, study, made)
    me.join(study, Budget())
    run = me.crew.run
    assert run is not None and me.used(study) == 0
    finished_trial(study, role="baseline", run=run)
    finished_trial(study, TrialState.FAIL, role="candidate", run=run, failure_kind="oom", worker=ELSEWHERE)
    running = study.ask()  # the queued baseline, asked: running now
    record.write(running, run=run)
    finished_trial(study, role="candidate", run=run, duplicate_of=0)  # reused: cost nothing
    finished_trial(study, TrialState.FAIL, role="candidate", run=run, not_run=True, failure_kind="busy")
    finished_trial(study, role="candidate", run=run + 99)  # another run of the study (an earlier one)
    finished_trial(study, role="candidate")  # from before runs were recorded
    study.enqueue_trial({"precision.dtype": "bf16"}, user_attrs=record.enqueued("local", run=run))
    assert me.used(study) == 3


def test_the_next_trial_can_start_once_the_users_recipe_is_measured_or_queued(
        task: Task, setup: Setup, made: list[Coordinator]) -> None:
    study = new_study()
    me = coordinator(task, setup, study, made)
    me.join(study, Budget())
    assert me.baseline_ready(study)  # queued, for this worker to take
    measured = new_study()
    finished_trial(measured, role="baseline")
    other = coordinator(task, setup, measured, made)
    other.join(measured, Budget())
    assert other.baseline_ready(measured) and not waiting_baselines(measured)


def test_while_another_worker_measures_the_users_recipe_the_next_trial_waits(
        task: Task, setup: Setup, made: list[Coordinator]) -> None:
    study = new_study()
    me = coordinator(task, setup, study, made)
    me.join(study, Budget())
    taken = study.ask()  # another worker took the queued recipe
    record.write(taken, worker=ELSEWHERE)
    assert me.baseline_ready(study) is False
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]  # nothing queued meanwhile


def test_a_baseline_that_failed_on_another_worker_stops_the_run_with_its_reason(
        task: Task, setup: Setup, made: list[Coordinator]) -> None:
    study = new_study()
    finished_trial(study, TrialState.FAIL, role="baseline", failure_kind="error", worker=ELSEWHERE,
                   reason="RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    me = coordinator(task, setup, study, made)
    with pytest.raises(AutoaccelError, match=r"the baseline \(trial 0, your own recipe\) failed on worker elsewhere:4242: "
                                             r"RuntimeError: mat1 and mat2"):
        me.baseline_ready(study)


# None: failed by fail_interrupted (its process ended mid-trial), which records only the reason.
@pytest.mark.parametrize("kind", [None, "interrupted", "busy"])
def test_a_baseline_that_was_interrupted_is_queued_again(task: Task, setup: Setup, made: list[Coordinator],
                                                         kind: str | None) -> None:
    study = new_study()
    finished_trial(study, TrialState.FAIL, role="baseline", failure_kind=kind, worker=ELSEWHERE,
                   reason="interrupted: process 4242 ended mid-trial")
    me = coordinator(task, setup, study, made)
    assert me.baseline_ready(study)
    assert len(waiting_baselines(study)) == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the search beats from its own thread (claims.py)
def test_the_trial_of_a_worker_that_stopped_beating_is_failed_and_queued_again(
        task: Task, setup: Setup, made: list[Coordinator], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "study.db"
    storage = open_storage(sqlite_url(db), heartbeat_s=1)
    assert isinstance(storage, optuna.storages.RDBStorage)
    study = new_study(storage)
    me = coordinator(task, setup, study, made)
    dead = study.ask()
    record.write(dead, role="candidate", config={"precision.dtype": "bf16"}, worker=ELSEWHERE)
    storage.record_heartbeat(dead._trial_id)
    alive = study.ask()
    record.write(alive, role="candidate", config={"precision.dtype": "fp16"}, worker=ELSEWHERE)
    storage.record_heartbeat(alive._trial_id)
    with sqlite3.connect(db) as conn:  # its worker died a minute ago: its last beat is that old
        conn.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-60 seconds') WHERE trial_id = ?",
                     (dead._trial_id,))
    me.fail_stale(study)
    failed = read(study, dead.number)
    assert failed.state == TrialState.FAIL and failed.failure_kind == "interrupted"
    assert failed.reason == "interrupted: worker elsewhere:4242 sent no heartbeat for 3 s"
    assert read(study, alive.number).state == TrialState.RUNNING
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert record.read(retry).retry_of == dead.number and record.read(retry).role == "candidate"
    assert retry.system_attrs["fixed_params"] == {**setup.defaults, "precision.dtype": "bf16"}
    assert f"trial(s) [{dead.number}] failed: their worker stopped sending heartbeats; queued again" in capsys.readouterr().err
    me.fail_stale(study)  # nothing new: nothing said, nothing queued twice
    assert "failed" not in capsys.readouterr().err and len(study.get_trials(states=(TrialState.WAITING,))) == 1


def test_settling_drops_the_proposals_no_worker_took_and_keeps_the_retries(
        task: Task, setup: Setup, made: list[Coordinator], capsys: pytest.CaptureFixture[str]) -> None:
    study = new_study()
    finished_trial(study, role="baseline")
    me = coordinator(task, setup, study, made)
    me.join(study, Budget())
    left = study.ask()  # a trial another worker left running on a storage without heartbeats
    study.enqueue_trial({**setup.defaults, "precision.dtype": "bf16"}, user_attrs=record.enqueued("local"))
    study.enqueue_trial({**setup.defaults, "precision.dtype": "fp16"}, user_attrs=record.enqueued("candidate", retry_of=0))
    runner = InProcessRunner(task)
    runner.threads = 1
    me.settle(study, runner)
    assert runner.threads is None  # the finish runs alone: every core this worker would use
    dropped = read(study, 2)
    assert dropped.state == TrialState.FAIL and dropped.not_run and dropped.failure_kind == "busy"
    assert dropped.reason == "queued, not run: the run's trial budget was spent"
    assert read(study, 3).state == TrialState.WAITING and read(study, 3).retry_of == 0  # the caller runs it
    assert read(study, left.number).state == TrialState.RUNNING
    assert f"trial(s) [{left.number}] are still marked running with no live worker" in capsys.readouterr().err


def test_a_worker_alone_at_the_end_finishes_the_run(task: Task, setup: Setup, made: list[Coordinator]) -> None:
    study = new_study()
    me = coordinator(task, setup, study, made)
    me.join(study, Budget())
    assert me.finishing(study) is True and me.finished_by is None
    assert live_claims(study, "worker") == []  # it has stopped searching
    assert live_claims(study, "finish") == [this_worker()]


def test_a_worker_that_stops_while_others_still_search_leaves_the_finish_to_the_last(
        task: Task, setup: Setup, made: list[Coordinator], capsys: pytest.CaptureFixture[str]) -> None:
    study = new_study()
    me = coordinator(task, setup, study, made)
    me.join(study, Budget())
    other_worker(study, seed=1, run=me.crew.run)
    assert me.finishing(study) is False and me.finished_by == "elsewhere:4242"
    assert live_claims(study, "finish") == []
    assert "1 other worker(s) are still searching (latest elsewhere:4242)" in capsys.readouterr().err


def test_only_one_worker_finishes_the_oldest_claim_on_the_finish_wins(
        task: Task, setup: Setup, made: list[Coordinator], capsys: pytest.CaptureFixture[str]) -> None:
    study = new_study()
    me = coordinator(task, setup, study, made)
    me.join(study, Budget())
    other_worker(study, kind="finish", key="answer")  # stopped searching a moment before this one, finishing now
    assert me.finishing(study) is False and me.finished_by == "elsewhere:4242"
    assert live_claims(study, "finish") == [ELSEWHERE]  # this worker's own claim on the finish is released
    assert "worker elsewhere:4242 is re-measuring the finalists and writing the answer of study 'shared'" in capsys.readouterr().err
