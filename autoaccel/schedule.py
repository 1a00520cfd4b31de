"""LR schedules as a multiplier of the peak LR per optimizer step (one LambdaLR serves them all)."""

from __future__ import annotations

import math
from collections.abc import Callable

from autoaccel.pipeline import SCHEDULES, SchedulePlan

ONECYCLE_START = 1 / 25  # torch's OneCycleLR default div_factor
ONECYCLE_RAMP = 0.3  # torch's OneCycleLR default pct_start
FINAL = 1e-4


def lr_multiplier(plan: SchedulePlan, total_steps: int) -> Callable[[int], float]:
    """Return ``f(step) -> factor``; the peak LR is the plan's lr, the shape is ``plan.kind``."""
    if plan.kind not in SCHEDULES:
        raise ValueError(f"schedule kind must be one of {SCHEDULES}, but got {plan.kind!r}")
    total = max(1, total_steps)
    warmup = int(round(plan.warmup * total))

    def shape(step: int) -> float:
        t = min(1.0, step / total)
        if plan.kind == "constant":
            return 1.0
        if plan.kind == "step":
            # Decay by 10x at half and at three quarters of training, the classic ResNet recipe.
            return 0.1 ** ((t >= 0.5) + (t >= 0.75))
        if plan.kind == "cosine":
            return FINAL + (1 - FINAL) * 0.5 * (1 + math.cos(math.pi * t))
        # One-cycle: ramp up (unless a warm-up already does), then cosine-anneal to nearly zero.
        ramp = 0.0 if warmup else ONECYCLE_RAMP
        if t < ramp:
            return ONECYCLE_START + (1 - ONECYCLE_START) * t / ramp
        u = (t - ramp) / (1 - ramp)
        return FINAL + (1 - FINAL) * 0.5 * (1 + math.cos(math.pi * u))

    def factor(step: int) -> float:
        value = shape(step)
        if warmup and step < warmup:
            value *= (step + 1) / warmup
        return value

    return factor
