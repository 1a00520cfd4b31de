"""Pruning: unstructured magnitude, structured channel/neuron removal, 2:4 semi-structured; optional fine-tuning."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from torch import nn

from autoaccel import Capability, Phase, Pipeline, Strategy, Target, hookimpl
from autoaccel.pipeline import TransformContext
from autoaccel.surgery import (
    prune_semi_structured,
    prune_structured,
    prune_unstructured,
)


def prune(model: nn.Module, ctx: TransformContext, method: str, amount: float, finetune_epochs: int) -> nn.Module:
    if method == "structured":
        model = prune_structured(model, amount)
    elif method == "unstructured":
        model = prune_unstructured(model, amount)
    elif method == "semi_structured_2_4":
        model = prune_semi_structured(model)
    # Fine-tuning recovers accuracy; for unstructured pruning re-training would revive zeroed weights, so the
    # masks are re-applied (by pruning again) after it.
    model = ctx.finetune(model, finetune_epochs)
    if method == "unstructured" and finetune_epochs:
        model = prune_unstructured(model, amount)
    return model


class PruningStrategy(Strategy):
    name = "pruning"
    phase = Phase.POST_TRAIN
    description = "Pruning: structured (shrinks layers), unstructured magnitude, 2:4 semi-structured; optional fine-tuning."

    def check(self, target: Target) -> Capability:
        methods = ["none", "unstructured", "structured"]
        reason = "semi_structured_2_4 dropped: needs a CUDA GPU of compute capability 8.0 or newer"
        if target.kind == "cuda" and target.compute_capability and target.compute_capability >= (8, 0):
            methods.append("semi_structured_2_4")
            reason = ""
        if target.kind != "cuda":
            reason += "; unstructured zeros are rarely faster on dense CPU kernels (measured, not assumed)"
        return Capability(True, reason.lstrip("; "), {"method": methods})

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        method = params.get("method", "none")
        if method == "none":
            return pipeline
        return pipeline.add_transform(partial(prune, method=method, amount=float(params.get("amount", 0.5)),
                                              finetune_epochs=int(params.get("finetune_epochs", 0))))


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(PruningStrategy())
