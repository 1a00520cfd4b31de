"""The Pipeline: an immutable plan of one trial that the core's training loop and runtime honour.

Strategies never patch models or loops; they return a new Pipeline with some fields changed
(``dataclasses.replace``). The core reads the plan and does the work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
SCHEDULES = ("constant", "step", "cosine", "onecycle")


@dataclass(frozen=True)
class LoaderPlan:
    """DataLoader settings; ``cache`` materialises the dataset as tensors once and slices batches from it."""

    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int = 2
    cache: bool = False


@dataclass(frozen=True)
class SchedulePlan:
    """LR schedule over the whole run; ``warmup`` is the fraction of steps spent ramping up linearly."""

    kind: str = "constant"
    warmup: float = 0.0


ModelTransform = Callable[[nn.Module], nn.Module]


@dataclass(frozen=True)
class Pipeline:
    device: str
    batch_size: int
    lr: float
    epochs: int
    precision: str = "fp32"
    loss_scaling: bool = False
    schedule: SchedulePlan = field(default_factory=SchedulePlan)
    loader: LoaderPlan = field(default_factory=LoaderPlan)
    eval_batch_size: int = 256
    train: bool = True
    # Post-training transforms, applied in phase order after training (pruning before quantization, ...).
    model_transforms: tuple[ModelTransform, ...] = ()
    # Free-form fields a third-party strategy and its companion hooks agree on; read-only.
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def replace(self, **changes: Any) -> "Pipeline":
        """A new plan with ``changes``; the receiver is never modified."""
        if "extras" in changes:
            changes["extras"] = MappingProxyType(dict(changes["extras"]))
        return dataclasses.replace(self, **changes)

    def with_extra(self, key: str, value: Any) -> "Pipeline":
        return self.replace(extras={**self.extras, key: value})

    def describe(self) -> dict[str, Any]:
        """A JSON-able view of the plan, for recipes and reports."""
        return {
            "device": self.device,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "epochs": self.epochs,
            "precision": self.precision,
            "loss_scaling": self.loss_scaling,
            "schedule": dataclasses.asdict(self.schedule),
            "loader": dataclasses.asdict(self.loader),
            "train": self.train,
            "model_transforms": [getattr(t, "__name__", repr(t)) for t in self.model_transforms],
            "extras": {k: repr(v) for k, v in self.extras.items()},
        }
