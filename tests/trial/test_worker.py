"""worker.py: trials run in a spawned worker; errors, native crashes and hangs become TrialFailures with a
kind and a reason, and the runner replaces a dead worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoaccel import Pipeline, TrialFailure
from autoaccel.task._loading import load_task
from autoaccel.trial._isolation import IsolatedRunner, TaskSource
from autoaccel.trial._run import TrialResult
from tiny_digits import task_source, write_model

# The model misbehaves on purpose, keyed on the size of the batch it is given: a training batch of 5 aborts
# the process (a native crash), 6 raises, 7 hangs. Evaluation and timing use batches of 1, 104 and 256.
TRIPWIRE = task_source(
    prelude='''
        import os
        import resource


        class Tripwire(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

            def forward(self, x):
                if x.shape[0] == 5:
                    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file to write
                    os.abort()
                if x.shape[0] == 6:
                    raise ValueError("tripwire: a batch of 6")
                if x.shape[0] == 7:
                    time.sleep(3600)
                return self.net(x)
    ''',
    model="Tripwire()",
)

BUDGET = 0.02  # seconds of timing per figure: these tests are about isolation, not speed


def _line(text: str) -> int:
    """The line of model.py (as write_model writes it) that holds ``text``."""
    return next(i for i, line in enumerate(TRIPWIRE.splitlines(), 1) if text in line)


def plan(batch_size: int) -> Pipeline:
    return Pipeline(device="cpu", batch_size=batch_size, lr=0.1, epochs=1)


@pytest.fixture(scope="module")
def tripwire_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("tripwire"), TRIPWIRE)


@pytest.fixture(scope="module")
def runner(tripwire_file: Path) -> Iterator[IsolatedRunner]:
    """One runner for the module (each fresh worker costs seconds); every test leaves it able to run plans."""
    r = IsolatedRunner(TaskSource(path=str(tripwire_file)), trial_timeout=120.0)
    try:
        yield r
    finally:
        r.close()


def assert_good(result: TrialResult, batch_size: int) -> None:
    assert result.metrics["accuracy"] > 0.5
    assert result.details["train_steps"] == -(-1437 // batch_size)
    assert {"train_time", "latency", "throughput", "memory"} <= set(result.metrics)


def test_runs_a_plan_in_another_process(runner: IsolatedRunner) -> None:
    result = runner.run(plan(32), seed=0, timing_budget_s=BUDGET)
    assert_good(result, 32)
    assert runner.proc is not None and runner.proc.pid != os.getpid()
    # The worker is long-lived: the next plan runs in the same process.
    pid = runner.proc.pid
    assert_good(runner.run(plan(64), seed=0, timing_budget_s=BUDGET), 64)
    assert runner.proc.pid == pid


def test_a_model_that_raises_is_an_error_and_the_worker_survives(runner: IsolatedRunner) -> None:
    with pytest.raises(TrialFailure, match=r"ValueError: tripwire: a batch of 6") as info:
        runner.run(plan(6), seed=0, timing_budget_s=BUDGET)
    assert info.value.kind == "error"
    # Where: the line of the model's forward that raised (the user's code), and the whole traceback.
    assert info.value.where.endswith(f"model.py:{_line('raise ValueError')} in forward"), info.value.where
    assert "Traceback" in info.value.trace and "tripwire: a batch of 6" in info.value.trace
    pid = runner.proc.pid
    assert_good(runner.run(plan(32), seed=0, timing_budget_s=BUDGET), 32)
    assert runner.proc.pid == pid


def test_a_native_crash_is_a_crash_and_the_runner_restarts(runner: IsolatedRunner) -> None:
    assert_good(runner.run(plan(32), seed=0, timing_budget_s=BUDGET), 32)
    first = runner.proc.pid
    with pytest.raises(TrialFailure, match=r"SIGABRT") as info:
        runner.run(plan(5), seed=0, timing_budget_s=BUDGET)
    assert info.value.kind == "crash"
    assert "worker process died of signal SIGABRT" in info.value.reason
    # The worker's stack as faulthandler wrote it when it aborted: the user's line, then the library's.
    assert f"model.py:{_line('os.abort()')} in forward" in info.value.where, info.value.where
    # The next plan gets a fresh worker and runs fine.
    assert_good(runner.run(plan(16), seed=0, timing_budget_s=BUDGET), 16)
    assert runner.proc.pid != first


def test_a_hang_past_the_trial_timeout_is_a_timeout(runner: IsolatedRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "trial_timeout", 3.0)
    with pytest.raises(TrialFailure, match=r"hang: no result within --trial-timeout 3s") as info:
        runner.run(plan(7), seed=0, timing_budget_s=BUDGET)
    assert info.value.kind == "timeout"
    assert runner.proc is None, "the hung worker was killed"
    # Asked for its stack before it was killed: where it hung.
    assert info.value.where.endswith(f"model.py:{_line('time.sleep(3600)')} in forward"), info.value.where
    assert_good(runner.run(plan(32), seed=0, timing_budget_s=BUDGET), 32)


def test_a_task_file_that_fails_in_the_worker_is_a_crash_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "gone.py"
    r = IsolatedRunner(TaskSource(path=str(missing)), trial_timeout=60.0)
    try:
        with pytest.raises(TrialFailure, match=r"worker failed while loading the task: worker process exited with status 1") as info:
            r.run(plan(32), seed=0, timing_budget_s=BUDGET)
        assert info.value.kind == "crash"
    finally:
        r.close()


def test_a_task_object_loaded_from_a_file_runs_isolated(tiny_task_file: Path) -> None:
    task = load_task(tiny_task_file)
    r = IsolatedRunner(TaskSource.of(task, None), trial_timeout=120.0)
    try:
        assert_good(r.run(plan(32), seed=0, timing_budget_s=BUDGET), 32)
    finally:
        r.close()


# The model writes, when the worker builds it, the environment it sees: the variable the test sets, and the temp dir.
SEES = task_source(
    prelude='''
        import os
        import tempfile


        def _seen():
            with open(os.environ["AUTOACCEL_TEST_SEEN"], "a") as fh:
                fh.write(f"{os.environ.get('AUTOACCEL_TEST_MARK')} {tempfile.gettempdir()} {os.getpid()}\\n")
            return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    ''',
    model="_seen()",
)


def test_a_worker_forked_later_takes_the_search_processes_environment_as_it_is_then(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "seen.txt"
    monkeypatch.setenv("AUTOACCEL_TEST_SEEN", str(seen))
    model = write_model(tmp_path, SEES)
    rows = []
    for mark in ("first", "second"):  # the second worker comes from the server the first one started (or found)
        scratch = tmp_path / mark
        scratch.mkdir()
        monkeypatch.setenv("AUTOACCEL_TEST_MARK", mark)
        monkeypatch.setenv("TMPDIR", str(scratch))
        runner = IsolatedRunner(TaskSource(path=str(model)), trial_timeout=120)
        try:
            assert isinstance(runner.run(plan(32), 0, BUDGET), TrialResult)
        finally:
            runner.close()
        rows.append(seen.read_text().splitlines()[-1].split())
    assert [r[:2] for r in rows] == [["first", str(tmp_path / "first")], ["second", str(tmp_path / "second")]]
    assert rows[0][2] != rows[1][2] and os.getpid() not in {int(r[2]) for r in rows}
