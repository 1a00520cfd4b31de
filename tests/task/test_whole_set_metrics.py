"""Quality as users measure it: a callable metric on the whole validation set, in the structure the model returns;
torchmetrics Metrics; the named scorers; paired intervals from shared bootstrap resamples; and the one-line
error when outputs cannot be joined."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torchmetrics
from sklearn import metrics as sk
from torch import nn
from torch.utils.data import TensorDataset

import autoaccel
from autoaccel import Pipeline, Task
from autoaccel.errors import TrialFailure
from autoaccel.finish._summary import accuracy_drop
from autoaccel.task._loading import load_task
from autoaccel.trial._quality import evaluate
from autoaccel.trial._record import TrialRecord

ROOT = Path(__file__).resolve().parents[2]
PLAN = Pipeline(device="cpu", batch_size=16, lr=0.1, epochs=1, eval_batch_size=16)
G = torch.Generator().manual_seed(0)
# 300 samples, 3 classes; the class 2 is rare (about 1 in 20), so many batches of 16 lack it.
TARGETS = torch.where(torch.rand(300, generator=G) < 0.05, 2, torch.randint(0, 2, (300,), generator=G))
SCORES = torch.randn(300, 3, generator=G) + 1.5 * nn.functional.one_hot(TARGETS, 3)
BINARY = (TARGETS == 1).long()


def _task(metric: Any, scores: torch.Tensor = SCORES, targets: torch.Tensor = TARGETS, **fields: Any) -> Task:
    data = TensorDataset(scores, targets)
    return Task(model=nn.Identity, train_data=data, val_data=data, metric=metric, **fields)


def balanced_accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    predicted = outputs.argmax(dim=1)
    return float(torch.stack([(predicted[targets == c] == c).float().mean() for c in targets.unique()]).mean())


def test_a_whole_set_callable_gives_scikit_learns_balanced_accuracy_where_a_batch_mean_does_not() -> None:
    task = _task(balanced_accuracy)
    got = evaluate(nn.Identity(), task, PLAN, task.metric_fn())
    assert got.value == pytest.approx(sk.balanced_accuracy_score(TARGETS, SCORES.argmax(1)), abs=1e-6)  # float32 means
    assert got.ci95[0] < got.value < got.ci95[1] and len(got.pairing["metric_replicates"]) == 200
    # The old way, averaged per batch: batches without the rare class weigh its recall differently. Wrong.
    averaged = _task(balanced_accuracy, metric_reduction="mean")
    wrong = evaluate(nn.Identity(), averaged, PLAN, averaged.metric_fn()).value
    assert abs(wrong - got.value) > 0.01


def test_a_callable_sees_the_whole_set_not_a_batch() -> None:
    task = _task(lambda outputs, targets: len(targets))
    assert evaluate(nn.Identity(), task, PLAN, task.metric_fn()).value == 300


def test_mean_reduction_averages_over_batches_as_before() -> None:
    def mean_nll(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return float(nn.functional.cross_entropy(outputs, targets))

    task = _task(mean_nll, direction="minimize", metric_reduction="mean")
    got = evaluate(nn.Identity(), task, PLAN, task.metric_fn())
    assert got.value == pytest.approx(float(nn.functional.cross_entropy(SCORES, TARGETS)), rel=1e-6)
    assert "metric_rows" in got.pairing  # rows per batch, as before


@pytest.mark.parametrize(("name", "expected"), [
    ("balanced_accuracy", lambda: sk.balanced_accuracy_score(TARGETS, SCORES.argmax(1))),
    ("macro_f1", lambda: sk.f1_score(TARGETS, SCORES.argmax(1), average="macro")),
    ("auroc", lambda: sk.roc_auc_score(TARGETS, torch.softmax(SCORES, 1).numpy(), multi_class="ovr")),
])
def test_the_named_multiclass_scorers_are_scikit_learns(name: str, expected: Any) -> None:
    task = _task(name)
    assert evaluate(nn.Identity(), task, PLAN, task.metric_fn()).value == pytest.approx(expected(), abs=1e-12)


@pytest.mark.parametrize(("name", "expected"), [
    ("f1", sk.f1_score), ("precision", sk.precision_score), ("recall", sk.recall_score),
])
def test_the_named_binary_scorers_are_scikit_learns_on_class_1(name: str, expected: Any) -> None:
    logits = SCORES[:, :2]
    task = _task(name, logits, BINARY)
    got = evaluate(nn.Identity(), task, PLAN, task.metric_fn()).value
    assert got == pytest.approx(expected(BINARY, logits.argmax(1)), abs=1e-12)


def test_a_binary_scorer_on_many_classes_says_which_to_use_instead() -> None:
    from autoaccel.errors import AutoaccelError
    from autoaccel.task._task import validate_task

    with pytest.raises(AutoaccelError, match=r"^Task\.metric: failed .*f1 is the binary score of class 1, but the model "
                                             r"gives 3 classes: use macro_f1"):
        validate_task(Task(model=lambda: nn.Linear(3, 3), train_data=TensorDataset(SCORES, TARGETS),
                           val_data=TensorDataset(SCORES, TARGETS), metric="f1"))


def test_a_torchmetrics_metric_is_cloned_streamed_and_matches_scikit_learn() -> None:
    template = torchmetrics.classification.BinaryF1Score()
    logits = SCORES[:, 1] - SCORES[:, 0]
    task = _task(template, logits, BINARY)
    metric = task.metric_fn()
    assert metric.direction == "maximize" and metric.name == "binary_f1_score"
    got = evaluate(nn.Identity(), task, PLAN, metric)
    assert got.value == pytest.approx(sk.f1_score(BINARY, (logits > 0).long()), abs=1e-6)
    assert got.ci95[0] < got.value < got.ci95[1]
    assert not template.update_count  # the Task's own object is never updated: every evaluation works on clones
    again = evaluate(nn.Identity(), task, PLAN, metric)
    assert again.pairing == got.pairing  # the same Poisson resamples every time: what pairs two trials


def test_a_lower_is_better_torchmetric_takes_its_direction_from_it() -> None:
    task = _task(torchmetrics.MeanSquaredError(), SCORES[:, 0], SCORES[:, 1])
    metric = task.metric_fn()
    assert metric.direction == "minimize"
    got = evaluate(nn.Identity(), task, PLAN, metric)
    assert got.value == pytest.approx(float(((SCORES[:, 0] - SCORES[:, 1]) ** 2).mean()), rel=1e-5)


def test_outputs_with_the_batch_on_another_axis_are_one_line_naming_the_way_out() -> None:
    class WithHidden(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, torch.zeros(2, x.shape[0], 4)  # an LSTM's hidden state: (layers, batch, hidden)

    data = TensorDataset(SCORES, TARGETS)
    task = Task(model=WithHidden, train_data=data, val_data=data, metric=lambda o, t: float(o[0].argmax(1).eq(t).float().mean()))
    with pytest.raises(TrialFailure, match=r"^Task\.metric \(metric\) is computed on the whole validation set, but "
                                           r"outputs\[1\] has shape \(2, 16, 4\): its first axis is not the batch of 16: "
                                           r".*Task\.metric_reduction='mean'"):
        evaluate(WithHidden(), task, PLAN, task.metric_fn())


def _record(number: int, task: Task, scores: torch.Tensor) -> TrialRecord:
    from optuna.trial import TrialState

    metric = task.metric_fn()
    model = nn.Identity()
    got = evaluate(model, Task(model=nn.Identity, train_data=task.train_data, metric=task.metric,
                               val_data=TensorDataset(scores, TARGETS)), PLAN, metric)
    return TrialRecord(number=number, state=TrialState.COMPLETE, metrics={"accuracy": got.value},
                       ci95={"accuracy": list(got.ci95)}, details={**got.pairing, "metric": {"name": metric.name,
                                                                                             "direction": metric.direction}})


def test_the_drop_of_a_whole_set_metric_is_paired_over_the_same_resamples() -> None:
    task = _task(balanced_accuracy)
    base = _record(0, task, SCORES)
    same = _record(1, task, SCORES.clone())
    drop = accuracy_drop(base, same)
    assert drop["value"] == 0.0 and drop["ci95"] == [0.0, 0.0]  # the same outputs: every resample agrees exactly
    noisy = SCORES + 0.3 * torch.randn(SCORES.shape, generator=torch.Generator().manual_seed(1))
    paired = accuracy_drop(base, _record(2, task, noisy))
    unpaired_half = math.hypot(*((r.ci95["accuracy"][1] - r.ci95["accuracy"][0]) / 2 for r in (base, _record(3, task, noisy))))
    lo, hi = paired["ci95"]
    assert lo <= paired["value"] <= hi and (hi - lo) / 2 < unpaired_half  # shared difficulty cancels


def test_the_breast_cancer_example_runs_as_written_and_reports_scikit_learns_value(tmp_path: Path) -> None:
    result = autoaccel.optimize(str(ROOT / "examples" / "breast_cancer.py"), trials=2, mode="train", target="cpu",
                                strategies=("batch_size",), out=str(tmp_path / "out"), remeasure_rounds=0,
                                ablation=False, quiet=True)
    base = result.baseline
    assert math.isfinite(base.metrics["accuracy"]) and 0.5 < base.metrics["accuracy"] <= 1.0
    # The trial's value is scikit-learn's on the whole validation set, for the model the recipe trains.
    task = load_task(str(ROOT / "examples" / "breast_cancer.py"))
    from autoaccel.trial._run import run_trial

    trained = run_trial(task, Pipeline(device="cpu", batch_size=task.batch_size, lr=task.lr, epochs=task.epochs),
                        task.seed, 0.02)
    assert trained.metrics["accuracy"] == pytest.approx(base.metrics["accuracy"], abs=1e-12)


def test_the_vae_example_runs_as_written_with_a_metric_over_the_tuple(tmp_path: Path) -> None:
    from autoaccel.trial._run import run_trial

    task = load_task(str(ROOT / "examples" / "vae_digits.py"))
    plan = Pipeline(device="cpu", batch_size=task.batch_size, lr=task.lr, epochs=1)
    result = run_trial(task, plan, task.seed, 0.02)
    assert result.details["metric"] == {"name": "elbo", "direction": "maximize"}
    elbo = result.metrics["accuracy"]
    assert -60.0 < elbo < 0.0  # nats per 64-pixel image after one epoch: finite, and far from a batch's share
    assert len(result.details["metric_replicates"]) == 200


@pytest.mark.slow
def test_an_onnx_runtime_study_leaves_its_tmpdir_and_home_empty(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tiny_digits import task_source, write_model

    model = write_model(tmp_path, task_source())
    scratch, home = tmp_path / "tmp", tmp_path / "home"
    scratch.mkdir()
    home.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "HOME": str(home)}
    env.pop("ORT_DISABLE_TELEMETRY", None)
    done = subprocess.run([sys.executable, "-m", "autoaccel.cli", "optimize", str(model), "--mode", "inference",
                           "--strategies", "runtime", "--trials", "2", "--remeasure-rounds", "0", "--no-ablation",
                           "--out", str(tmp_path / "out"), "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = (tmp_path / "out" / "study.db")
    assert study.exists()
    # Only torch's own kernel cache, kept where torch keeps it on purpose (scratch.py: later runs compile from it);
    # torch makes the folder when export touches its compiler stack, as it would in the user's own export.
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")] == []
    assert sorted(p.name for p in home.iterdir()) == []
    import optuna

    trials = optuna.load_study(study_name=None, storage=f"sqlite:///{study}").trials
    assert any(t.state == optuna.trial.TrialState.COMPLETE and t.params.get("runtime.engine") == "onnxruntime"
               for t in trials), "an ONNX Runtime session was measured"


@pytest.mark.parametrize("classes", [1, 2, 3])
def test_auroc_on_every_resample_at_once_is_scikit_learns_on_each(classes: int) -> None:
    from autoaccel.task._whole_set import _auroc_resampled, resamples

    if classes == 1:  # one score per sample (a binary logit), with ties
        outputs, targets = torch.round(SCORES[:, 1] - SCORES[:, 0]), BINARY
    elif classes == 2:
        outputs, targets = SCORES[:, :2], BINARY
    else:
        outputs, targets = SCORES, TARGETS
    indices = resamples(len(targets), 5)
    fast = _auroc_resampled(outputs, targets, indices)
    metric = autoaccel.task._metrics.resolve_metric("auroc")
    for value, idx in zip(fast, indices):
        index = torch.from_numpy(idx)
        assert value == pytest.approx(metric(outputs.index_select(0, index), targets.index_select(0, index)), abs=1e-12)
