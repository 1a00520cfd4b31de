"""Pruning: unstructured magnitude, structured channel/neuron removal, 2:4 semi-structured; optional fine-tuning."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from autoaccel.plugin import Capability, Param, Phase, Pipeline, Section, Strategy, Target, Task, TransformContext, hookimpl
from autoaccel.plugins.pruning.surgery import (
    find_chains,
    prune_semi_structured,
    prune_structured,
    prune_unstructured,
)


@dataclass(frozen=True)
class PruningSection(Section):
    method: str
    amount: float = 0.5
    finetune_epochs: int = 0


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


class PruningStrategy(Strategy[PruningSection]):
    name = "pruning"
    phase = Phase.POST_TRAIN
    description = "Pruning: structured (shrinks layers), unstructured magnitude, 2:4 semi-structured; optional fine-tuning."
    hints = {
        "method=unstructured": "unstructured pruning only zeroes weights: dense kernels still multiply the zeros, so it "
                               "saves time only with sparse kernels",
        "method=semi_structured_2_4": "2:4 sparsity pays off only on sparse tensor cores (compute capability 8.0+) and on "
                                      "large layers",
    }

    def check(self, target: Target) -> Capability:
        methods = ["none", "unstructured", "structured"]
        reason = "semi_structured_2_4 dropped: needs a CUDA GPU of compute capability 8.0 or newer"
        if target.kind == "cuda" and target.compute_capability and target.compute_capability >= (8, 0):
            methods.append("semi_structured_2_4")
            reason = ""
        if target.kind != "cuda":
            reason += "; unstructured zeros are rarely faster on dense CPU kernels (measured, not assumed)"
        return Capability(True, reason.lstrip("; "), {"method": methods})

    def probes(self, space: Mapping[str, Param]) -> list[dict[str, Any]]:
        # Most promising first: structured pruning makes dense layers smaller (faster on any kernel); unstructured
        # zeros are rarely faster on dense kernels, so they are tried after it.
        return sorted(super().probes(space), key=lambda p: p.get("method") != "structured")

    def fits(self, model: nn.Module, task: Task, target: Target) -> Capability:
        # Structured pruning rewrites a torch.fx trace of the model: one that does not trace, or has no
        # Linear/Conv pair to shrink (a recurrent model), is ruled out here, not after a training run.
        try:
            chains = find_chains(fx.symbolic_trace(model))
        except Exception as exc:  # noqa: BLE001 - data-dependent control flow, recurrent layers and the like
            why = f"structured dropped: the model does not trace with torch.fx ({type(exc).__name__})"
            return Capability(True, why, {"method": ["none", "unstructured", "semi_structured_2_4"]})
        if not chains:
            return Capability(True, "structured dropped: no Linear/Conv2d pair to shrink in this model",
                              {"method": ["none", "unstructured", "semi_structured_2_4"]})
        return Capability(True)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        method = str(params.get("method", "none"))
        if method == "none":
            return pipeline
        amount = 0.5 if method == "semi_structured_2_4" else float(params.get("amount", 0.5))  # 2:4 fixes its own
        return pipeline.with_section(self, PruningSection(method, amount, int(params.get("finetune_epochs", 0))))

    def transform(self, section: PruningSection, model: nn.Module, ctx: TransformContext) -> nn.Module:
        return prune(model, ctx, section.method, section.amount, section.finetune_epochs)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(PruningStrategy())
