"""Resume after a hard kill: `python -m autoaccel.cli optimize` is SIGKILLed mid-trial; re-running the same
command keeps every completed trial and records the interrupted one as failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from study_snapshot import TINY_STUDY, sqlite_url
from tiny_digits import slow_training_source, write_model

# Training sleeps 50 ms a step (45 steps): each trial spends over 2 s training, so a kill lands mid-trial.
SLOW_TRAINING = slow_training_source(0.05)


def command(model: Path, out: Path, trials: int) -> list[str]:
    # Two strategies and no re-measurement keep this about resuming, not about the search's length.
    return [sys.executable, "-m", "autoaccel.cli", "optimize", str(model), "--trials", str(trials), "--out", str(out),
            "--target", "cpu", "--strategies", "precision,scheduler", "--remeasure-rounds", "0"]


def trials_of(out: Path) -> list[FrozenTrial] | None:
    """The study's trials, or None while the study (or its db) does not exist yet or is busy."""
    if not (out / "study.db").exists():
        return None
    try:
        return optuna.load_study(study_name=TINY_STUDY, storage=sqlite_url(out / "study.db")).get_trials()
    except (KeyError, SQLAlchemyError):  # not created yet, or being created by the search right now
        return None


def wait_until_mid_trial(proc: subprocess.Popen[bytes], out: Path, completed: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the search ended early with {proc.returncode}"
        trials = trials_of(out)
        if trials is not None:
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            if done >= completed and any(t.state == TrialState.RUNNING for t in trials):
                return
        time.sleep(0.1)
    pytest.fail(f"no trial was running after {completed} completed within {timeout:.0f}s")


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_resumes(tmp_path: Path) -> None:
    model = write_model(tmp_path, SLOW_TRAINING)
    out = tmp_path / "out"
    log = (tmp_path / "first.log").open("wb")
    # A session of its own, so the kill reaches the search process and its trial worker together.
    proc = subprocess.Popen(command(model, out, trials=50), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_mid_trial(proc, out, completed=2, timeout=240)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()  # reaped: its pid no longer answers, as after a real crash
        log.close()

    killed = trials_of(out)
    assert killed is not None
    completed = {t.number: t for t in killed if t.state == TrialState.COMPLETE}
    running = [t.number for t in killed if t.state == TrialState.RUNNING]
    assert len(completed) >= 2 and len(running) == 1, (tmp_path / "first.log").read_text()

    rerun = subprocess.run(command(model, out, trials=2), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"marked interrupted trial(s) [{running[0]}] as failed" in rerun.stderr

    after = {t.number: t for t in trials_of(out) or []}
    for number, before in completed.items():
        assert after[number].state == TrialState.COMPLETE
        assert after[number].values == before.values and after[number].params == before.params
    interrupted = after[running[0]]
    assert interrupted.state == TrialState.FAIL
    assert "interrupted" in interrupted.user_attrs["reason"]
    new = [t for t in after.values() if t.number > max(killed_t.number for killed_t in killed)]
    assert sum(t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs for t in new) == 2
    assert [t.number for t in after.values() if t.user_attrs.get("role") == "baseline"] == [0], "baseline not redone"
