"""Built-in task metrics (higher is better) and the resolution of ``Task.metric``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from autoaccel.errors import AutoaccelError, did_you_mean

MetricFn = Callable[[torch.Tensor, torch.Tensor], float]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy of class scores ``outputs`` (N, C) against integer ``targets`` (N,)."""
    if outputs.ndim < 2:
        raise ValueError(f"accuracy needs class scores of shape (N, C), but got outputs of shape {tuple(outputs.shape)}")
    return (outputs.argmax(dim=1) == targets).float().mean().item()


BUILTIN_METRICS: dict[str, MetricFn] = {"accuracy": accuracy}


def resolve_metric(metric: str | MetricFn) -> MetricFn:
    """Turn ``Task.metric`` into a callable, or raise one clear line naming the field."""
    if callable(metric):
        return metric
    if isinstance(metric, str):
        if metric in BUILTIN_METRICS:
            return BUILTIN_METRICS[metric]
        known = ", ".join(sorted(BUILTIN_METRICS))
        raise AutoaccelError(
            f"Task.metric: unknown metric '{metric}'{did_you_mean(metric, BUILTIN_METRICS)} (built in: {known}; "
            "or pass a callable (outputs, targets) -> float)"
        )
    raise AutoaccelError(
        f"Task.metric: expected a metric name or a callable (outputs, targets) -> float, but got {type(metric).__name__}"
    )
