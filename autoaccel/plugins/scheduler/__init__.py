"""LR schedule: constant, step, cosine or one-cycle (torch.optim.lr_scheduler), with an optional linear warm-up
and the peak LR searched around the user's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
)

from autoaccel.plugin import Phase, Pipeline, Section, Strategy, TrainingSetup, hookimpl

KINDS = ("constant", "step", "cosine", "onecycle")
ONECYCLE_RAMP = 0.3  # torch's OneCycleLR default pct_start
FINAL = 1e-4  # where cosine and one-cycle end, as a fraction of the peak LR


@dataclass(frozen=True)
class ScheduleSection(Section):
    kind: str = "constant"
    warmup: float = 0.0  # fraction of all steps spent ramping up linearly


def scheduler(optimizer: Optimizer, kind: str, warmup: float, total_steps: int) -> LRScheduler:
    """The schedule over ``total_steps`` optimizer steps; the peak LR is the optimizer's."""
    if kind not in KINDS:
        raise ValueError(f"schedule kind must be one of {KINDS}, but got {kind!r}")
    total = max(1, total_steps)
    warm = min(int(round(warmup * total)), total - 1)
    if kind == "onecycle":
        # One-cycle has its own ramp: the warm-up fraction replaces its default 30%. The user's momentum is kept.
        peak = [g["lr"] for g in optimizer.param_groups]
        if warm == 1:
            # A one-step ramp ends where it starts, at the peak: OneCycleLR cannot take it (its ramp would span zero
            # steps and divide by zero at the first step); what is left is exactly its cosine anneal to FINAL.
            return CosineAnnealingLR(optimizer, T_max=total - 1, eta_min=min(peak) * FINAL)
        return OneCycleLR(optimizer, max_lr=peak, total_steps=total, pct_start=(warm / total) if warm else ONECYCLE_RAMP,
                          anneal_strategy="cos", cycle_momentum=False, div_factor=25.0, final_div_factor=1 / (25.0 * FINAL))
    rest = total - warm
    main: LRScheduler
    if kind == "step":
        # Decay by 10x at half and at three quarters of training, the classic ResNet recipe.
        main = MultiStepLR(optimizer, milestones=[int(rest * 0.5), int(rest * 0.75)], gamma=0.1)
    elif kind == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=rest, eta_min=min(g["lr"] for g in optimizer.param_groups) * FINAL)
    else:
        main = LinearLR(optimizer, start_factor=1.0, end_factor=1.0, total_iters=1)  # constant
    if not warm:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm)
    return SequentialLR(optimizer, [ramp, main], milestones=[warm])


class SchedulerStrategy(Strategy[ScheduleSection]):
    name = "scheduler"
    phase = Phase.TRAIN
    changes_training = True
    description = "LR schedule (constant, step, cosine, one-cycle) with warm-up and the peak LR searched around yours."

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        section = ScheduleSection(kind=str(params.get("kind", "constant")), warmup=float(params.get("warmup", 0.0)))
        pipeline = pipeline.replace(lr=pipeline.lr * float(params.get("lr_factor", 1.0)))
        return pipeline if section == ScheduleSection() else pipeline.with_section(self, section)

    def configure_training(self, section: ScheduleSection, setup: TrainingSetup) -> None:
        setup.scheduler = scheduler(setup.optimizer, section.kind, section.warmup, setup.optimizer_steps)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(SchedulerStrategy())
