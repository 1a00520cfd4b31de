"""distillation: contract, the student really is smaller and learns from the cached baseline teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from autoaccel.errors import TrialFailure
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin.testing import StrategyContract
from autoaccel.plugins.distillation import DistillationStrategy, kd_loss
from autoaccel.task import Target
from autoaccel.trial._checkpoints import training_key
from autoaccel.trial._run import run_trial
from tiny_digits import make_task

CPU = Target("cpu", "cpu", "test cpu", 2, 8.0)


class TestDistillationContract(StrategyContract):
    strategy_class = DistillationStrategy


def wide() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


def student(size: float = 0.5) -> nn.Module:
    return nn.Sequential(nn.Linear(64, max(4, int(64 * size))), nn.ReLU(), nn.Linear(max(4, int(64 * size)), 10))


def test_without_a_student_it_does_not_fit_the_task() -> None:
    task = make_task()
    cap = DistillationStrategy().fits(task.model(), task, CPU)
    assert not cap.supported and "Task.student" in cap.reason
    with_student = make_task(student=student)
    assert DistillationStrategy().fits(with_student.model(), with_student, CPU).supported


def test_kd_loss_is_zero_for_identical_logits_and_positive_otherwise() -> None:
    logits = torch.randn(8, 10)
    assert float(kd_loss(logits, logits, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(logits, torch.randn(8, 10), 4.0)) > 0


def test_student_trains_against_the_cached_teacher_and_is_smaller(tmp_path: Path) -> None:
    task = make_task(model=wide, student=student, epochs=2)
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=2)
    base = base.replace(baseline_key=training_key(task, base))
    plan = DistillationStrategy().apply(base, {"enabled": True, "temperature": 4.0, "alpha": 0.5, "student_size": 0.25})
    with pytest.raises(TrialFailure, match="baseline's checkpoint is not cached"):
        run_trial(task, plan, timing_budget_s=0.05, cache_dir=str(tmp_path / "empty"))
    teacher = run_trial(task, base, timing_budget_s=0.05, cache_dir=str(tmp_path))  # caches the teacher
    distilled = run_trial(task, plan, timing_budget_s=0.05, cache_dir=str(tmp_path))
    assert distilled.details["parameters"] < teacher.details["parameters"] / 5
    assert distilled.metrics["accuracy"] > 0.8
    assert training_key(task, plan) != training_key(task, base)  # a student never reuses the teacher's cache entry
