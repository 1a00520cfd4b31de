"""`autoaccel confirm` without training the user's recipe again: from its trained weights (Task.weights, evaluated
here, and the serve answer evaluated on them) or from the metric the user states (--baseline-metric). Real
trainings of the answers, a real SQLite study."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import autoaccel
from autoaccel.task._loading import load_task
from autoaccel.trial._record import TrialRecord, read
from study_snapshot import sqlite_url
from tiny_digits import slow_training_source, task_source, write_model

pytestmark = pytest.mark.slow  # searches and confirms

STEP_S = 0.01  # 4 epochs of 45 steps: a whole training about 2 s, a quarter of it about 0.5 s


def _search(tmp_path: Path, mode: str, weights: Path | None = None) -> tuple[Path, optuna.Study, list[TrialRecord]]:
    source = slow_training_source(STEP_S, epochs=4)
    if weights is not None:
        source += f"\nimport dataclasses\ntask = dataclasses.replace(task, weights={str(weights)!r})\n"
    model = write_model(tmp_path, source)
    out = tmp_path / "out"
    # In both modes a serving technique too, so the study has a serve goal to answer.
    strategies = ("precision",) if mode == "train" else ("precision", "quantization")
    autoaccel.optimize(model, trials=2, fidelity="1/4", out=str(out), target="cpu", strategies=strategies,
                       mode=mode, remeasure_rounds=0, ablation=False, quiet=True)
    study = optuna.load_study(study_name=f"tiny-cpu-{mode}", storage=sqlite_url(out / "study.db"))
    return out, study, [read(t) for t in study.get_trials() if t.state == TrialState.COMPLETE]


def _answer(goal: str, trial: int, params: dict) -> dict:
    """An answer as the finish gives one (the tiny model gives no reliable speedup to find here)."""
    return {"goal": goal, "given": True, "trial": trial, "params": params,
            "speedup": {"train_time": {"value": 1.2, "ci95": [1.1, 1.3], "label": "faster"}},
            "accuracy_drop": {"value": 0.0, "ci95": [0.0, 0.0]}, "verdict": f"{goal} 1.20x faster",
            "evidence": {"quality": {"fraction": 0.25, "search_fraction": 0.25}}}


def test_confirm_evaluates_task_weights_instead_of_training_the_recipe_whole(tmp_path: Path) -> None:
    # The user's trained weights: here a model's initial state (its accuracy is far from the answer's, so the
    # figures show which model each came from).
    torch.manual_seed(7)
    weights = tmp_path / "recipe.pt"
    plain = load_task(write_model(tmp_path, slow_training_source(STEP_S, epochs=4), "plain.py"))
    model = plain.model()
    torch.save(model.state_dict(), weights)
    model.eval()
    with torch.no_grad():
        x, y = plain.val_data.tensors
        expected = float((model(x).argmax(1) == y).float().mean())

    out, study, records = _search(tmp_path, "both", weights)
    base = next(r for r in records if r.role == "baseline")
    candidate = next(r for r in records if r.role != "baseline")
    study.set_user_attr("answers", {"baseline": base.number, "goals": {
        "train": _answer("train", candidate.number, candidate.settings),
        "serve": _answer("serve", base.number, {"quantization.method": "dynamic_int8"})}})
    done = subprocess.run([sys.executable, "-m", "autoaccel.cli", "confirm", str(out)], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    assert "1 whole training(s); your recipe's quality from your trained weights (Task.weights)" in done.stderr + done.stdout

    study = optuna.load_study(study_name="tiny-cpu-both", storage=sqlite_url(out / "study.db"))
    confirms = [read(t) for t in study.get_trials() if read(t).role == "confirm"]
    # Only the train answer trained whole: the recipe came from its weights, the serve answer was evaluated on them.
    assert len(confirms) == 1 and confirms[0].config == candidate.config and confirms[0].fraction == 1.0
    answers = {a["goal"]: a for a in json.loads((out / "pareto.json").read_text())["answers"]}
    train = answers["train"]
    drop = train["accuracy_drop"]["value"] if train["given"] else None
    assert train["given"], train["verdict"]  # the answer trained whole beats an untrained model by far
    assert abs(drop - (expected - confirms[0].metrics["accuracy"])) < 1e-9
    assert train["evidence"]["speed"]["kind"] == "full" and train["evidence"]["speed"]["baseline"] == "projected"
    assert abs(train["evidence"]["speed"]["baseline_s"] - base.metrics["train_time"]) < 1e-9
    assert "as projected from its steady steps" in " ".join(train["notes"])
    assert "against your recipe's projected time" in done.stdout  # the evidence line says it too
    serve = answers["serve"]
    assert serve["evidence"]["quality"]["fraction"] == 1.0
    assert "the answer served from your trained weights" in " ".join(serve["notes"]) + serve["verdict"]
    assert study.user_attrs["confirmation"]["baseline"] == "your trained weights (Task.weights)"


def test_a_stated_baseline_metric_saves_the_recipe_and_judges_the_answer_against_it(tmp_path: Path) -> None:
    out, study, records = _search(tmp_path, "train")
    base = next(r for r in records if r.role == "baseline")
    candidate = next(r for r in records if r.role != "baseline")
    study.set_user_attr("answers", {"baseline": base.number,
                                    "goals": {"train": _answer("train", candidate.number, candidate.settings)}})
    # A value no model reaches: the answer's drop against it is over budget, and it is withdrawn saying why.
    done = subprocess.run([sys.executable, "-m", "autoaccel.cli", "confirm", str(out), "--baseline-metric", "1.5"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="tiny-cpu-train", storage=sqlite_url(out / "study.db"))
    confirms = [read(t) for t in study.get_trials() if read(t).role == "confirm"]
    assert [r.config for r in confirms] == [candidate.config]  # the recipe was not trained whole
    train = next(a for a in json.loads((out / "pareto.json").read_text())["answers"] if a["goal"] == "train")
    assert not train["given"]
    assert "vs 1.5000 at full length" in train["verdict"] and "the value you stated (--baseline-metric)" in train["verdict"]


def test_a_baseline_metric_that_is_not_a_number_is_one_line(tmp_path: Path) -> None:
    model = write_model(tmp_path, task_source())
    done = subprocess.run([sys.executable, "-m", "autoaccel.cli", "optimize", str(model), "--baseline-metric", "nan",
                           "--trials", "1", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("autoaccel: error: --baseline-metric: must be a finite number"), done.stderr
    assert not (tmp_path / "out").exists()  # refused before anything ran
