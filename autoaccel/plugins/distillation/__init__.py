"""Knowledge distillation: train Task.student(size) against the trained model of the user's own recipe (the
baseline's, from the checkpoint cache, or Task.weights)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoaccel.plugin import (
    BuildContext,
    Capability,
    Phase,
    Pipeline,
    Section,
    Strategy,
    Target,
    Task,
    TrainingSetup,
    TrialFailure,
    call,
    hookimpl,
    prediction,
)


@dataclass(frozen=True)
class DistillSection(Section):
    """Train ``task.student(student_size)`` with loss alpha * T^2 KL(teacher_T || student_T) + (1 - alpha) * task loss."""

    temperature: float = 4.0
    alpha: float = 0.5
    student_size: float = 0.5


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, kind: str = "classification") -> torch.Tensor:
    """Hinton et al.'s distillation term: KL between softened distributions, scaled by T^2 so its gradient
    magnitude does not shrink as T grows; token scores are distilled per token. A regression's student learns
    the teacher's predictions by mean squared error (no distribution to soften)."""
    if kind == "regression":
        return nn.functional.mse_loss(student.float(), teacher.float().reshape(student.shape))
    t = temperature
    if kind == "sequence":  # (..., classes) scores: every token is one distribution
        student, teacher = student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1])
    return nn.functional.kl_div(
        nn.functional.log_softmax(student.float() / t, dim=1),
        nn.functional.log_softmax(teacher.float() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)


class DistillationStrategy(Strategy[DistillSection]):
    name = "distillation"
    phase = Phase.TRAIN
    relieves = ("forward", "backward")  # a smaller student is cheaper to run forward and backward
    changes_training = True
    description = "Knowledge distillation into Task.student(size); temperature, mixing weight and size searched."

    def fits(self, model: nn.Module, task: Task, target: Target) -> Capability:
        if task.student is None:
            return Capability(False, "Task.student is not set (a factory taking a size, for the smaller model)")
        if task.resolved_kind() == "generative":
            return Capability(False, "a generative model has no prediction for a student to learn from its teacher")
        return Capability(True)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        if not params.get("enabled", False):
            return pipeline
        return pipeline.with_section(self, DistillSection(temperature=float(params.get("temperature", 4.0)),
                                                          alpha=float(params.get("alpha", 0.5)),
                                                          student_size=float(params.get("student_size", 0.5))))

    def build_model(self, section: DistillSection, model: nn.Module | None, ctx: BuildContext) -> nn.Module:
        if ctx.task.student is None:
            raise TrialFailure("distillation needs Task.student (a factory for the smaller model)", kind="unsupported")
        return ctx.task.student(section.student_size).to(ctx.plan.device)

    def configure_training(self, section: DistillSection, setup: TrainingSetup) -> None:
        if setup.finetuning:
            return  # fine-tuning a transformed student recovers it on the task's own loss
        teacher = setup.baseline().eval()
        task_loss, alpha, temperature = setup.loss, section.alpha, section.temperature
        kind = setup.task.resolved_kind()

        def loss(outputs: Any, targets: Any, inputs: Any) -> torch.Tensor:
            # The teacher sees the student's very inputs (as the default step or the user's own step called it).
            with torch.no_grad():
                soft = prediction(call(teacher, inputs))
            return (1 - alpha) * task_loss(outputs, targets, inputs) + alpha * kd_loss(prediction(outputs), soft, temperature, kind)

        setup.loss = loss


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(DistillationStrategy())
