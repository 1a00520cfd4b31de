"""A search at a compressed fidelity, then `autoaccel confirm`: killed midway, run again, the answer's evidence
becomes full-length. Real trainings, a real SQLite study, a real SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import autoaccel
from autoaccel.trial._record import read
from study_snapshot import sqlite_url
from tiny_digits import slow_training_source, write_model

pytestmark = pytest.mark.slow  # searches, then trains whole recipes in `autoaccel confirm`

# 4 epochs of 45 steps, 20 ms a step: a whole training takes over 3.6 s, a quarter of it about 1 s.
SLOW = slow_training_source(0.02, epochs=4)

STUDY = "tiny-cpu-train"  # --mode train


def _confirm(out: Path) -> list[str]:
    return [sys.executable, "-m", "autoaccel.cli", "confirm", str(out)]


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=sqlite_url(out / "study.db"))


def test_search_at_a_quarter_then_confirm_after_a_kill(tmp_path: Path) -> None:
    model = write_model(tmp_path, SLOW)
    out = tmp_path / "out"
    autoaccel.optimize(model, trials=3, fidelity="1/4", out=str(out), target="cpu", strategies=("precision",),
                       mode="train", remeasure_rounds=0, quiet=True)
    study = _study(out)
    records = [read(t) for t in study.get_trials() if t.state == TrialState.COMPLETE]
    # Every search trial trained a quarter of the schedule, and its train_time is the whole recipe's, projected.
    assert {r.fraction for r in records if r.role != "rung"} == {0.25}
    # The recipe's ladder: a replica at the search's rung and the rung above it (where quality could be judged).
    assert {(r.fraction, r.replica) for r in records if r.role == "rung"} >= {(0.25, 1), (0.5, None)}
    base = next(r for r in records if r.role == "baseline")
    assert base.details["fidelity"]["steps"] == 45 and base.details["fidelity"]["full_steps"] == 180
    assert base.details["fidelity"]["projected"] and base.metrics["train_time"] > 3 * base.details["fidelity"]["own_s"]
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["fidelity"]["search"] == 0.25 and pareto["fidelity"]["how"] == "set by --fidelity"

    # The run's train answer, as a finish gives one (the tiny model gives no reliable speedup to find here).
    candidate = next(r for r in records if r.role not in ("baseline", "rung"))
    answer = {"goal": "train", "given": True, "trial": candidate.number, "params": candidate.settings,
              "speedup": {"train_time": {"value": 1.2, "ci95": [1.1, 1.3], "label": "faster"}},
              "accuracy_drop": {"value": 0.0, "ci95": [0.0, 0.0]}, "verdict": "training 1.20x faster",
              "evidence": {"quality": {"fraction": 0.25, "search_fraction": 0.25}}}
    study.set_user_attr("answers", {"baseline": base.number, "goals": {"train": answer}})

    # Killed once its first whole training (your recipe's) is recorded.
    proc = subprocess.Popen(_confirm(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = [read(t) for t in _study(out).get_trials() if t.state == TrialState.COMPLETE]
        if any(r.role == "confirm" for r in done):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    first = [read(t) for t in _study(out).get_trials() if read(t).role == "confirm" and t.state == TrialState.COMPLETE]
    assert len(first) == 1 and first[0].fraction == 1.0 and first[0].config == {}
    assert first[0].details["fidelity"]["steps"] == 180 and not first[0].details["fidelity"]["projected"]

    # Run again: the recipe's whole training is reused, the answer's is trained, the answers are updated.
    done = subprocess.run(_confirm(out), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "confirmed at full length: training" in done.stdout
    confirms = [read(t) for t in _study(out).get_trials() if read(t).role == "confirm"]
    assert any(r.duplicate_of == first[0].number for r in confirms)  # reused, not trained again
    trained = [r for r in confirms if r.duplicate_of is None and r.state == TrialState.COMPLETE]
    assert len(trained) == 2 and all(r.fraction == 1.0 for r in trained)
    pareto = json.loads((out / "pareto.json").read_text())
    train = next(a for a in pareto["answers"] if a["goal"] == "train")
    if train["given"]:
        assert train["evidence"]["speed"]["kind"] == "full" and train["evidence"]["quality"]["fraction"] == 1.0
        assert train["evidence"]["speed"]["baseline_trial"] == first[0].number
    else:
        # At full length its accuracy fell over the budget: withdrawn, saying so with the figures.
        assert "trained at full length" in train["verdict"]
    assert "confirmation" in _study(out).user_attrs


# Its answer must be given: a speedup beyond noise in 2 re-measurement rounds, which a machine loaded by the
# parallel part of the suite did not always show (twice in four runs on 2026-12-06). Run with the others alone.
@pytest.mark.alone
def test_optimize_with_confirm_trains_the_answer_whole_at_the_end_of_the_run(tmp_path: Path) -> None:
    model = write_model(tmp_path, SLOW)
    out = tmp_path / "out"
    # A larger batch takes fewer of the model's 40 ms steps: a real training answer; a loose budget keeps it.
    autoaccel.optimize(model, trials=3, fidelity="1/4", confirm=True, out=str(out), target="cpu",
                       strategies=("batch_size",), choices={"batch_size.size": (128,)}, mode="train",
                       remeasure_rounds=2, ablation=False, max_accuracy_drop=0.5, quiet=True)
    study = _study(out)
    train = study.user_attrs["answers"]["goals"]["train"]
    assert train["given"], (train["verdict"], train.get("notes"))
    # Confirmed in the same run: whole trainings of the recipe and the answer, the evidence full-length.
    assert train["evidence"]["speed"]["kind"] == "full" and train["evidence"]["quality"]["fraction"] == 1.0
    # Promoted first (a quarter times four: full length), beside the recipe; the confirmation reuses those runs.
    promoted = [read(t) for t in study.get_trials() if read(t).role == "promotion"]
    assert len(promoted) == 2 and {r.fraction for r in promoted} == {1.0}, [(r.role, r.fraction) for r in promoted]
    confirms = [read(t) for t in study.get_trials() if read(t).role == "confirm"]
    assert len(confirms) == 2 and {r.fraction for r in confirms} == {1.0}
    published = json.loads((out / "pareto.json").read_text())["answers"]
    assert next(a for a in published if a["goal"] == "train")["evidence"]["speed"]["kind"] == "full"
