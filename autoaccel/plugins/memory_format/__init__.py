"""channels_last memory format for 4-D activations and convolution weights (CPU and CUDA)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from autoaccel.plugin import Capability, Phase, Pipeline, Section, ServeContext, Strategy, Target, TrainingSetup, hookimpl


@dataclass(frozen=True)
class MemoryFormatSection(Section):
    format: str = "channels_last"

    def keeps_math(self) -> bool:
        return True  # the same convolutions on another layout: only rounding differs


def _channels_last(model: nn.Module) -> nn.Module:
    """``model.to(memory_format=torch.channels_last)``, in place (it returns ``model``). Module.to accepts
    ``memory_format`` (it hands it to each tensor's ``to``), but torch's overloads of Module.to leave it out."""
    to = cast("Callable[..., nn.Module]", model.to)
    return to(memory_format=torch.channels_last)


class MemoryFormatStrategy(Strategy[Section]):
    name = "memory_format"
    phase = Phase.MODEL
    relieves = ("forward", "backward")
    changes_training = True
    description = "channels_last (NHWC) layout for convolutional models, in training and inference."

    def check(self, target: Target) -> Capability:
        if target.kind in ("cpu", "cuda", "mps"):
            return Capability(True)
        return Capability(False, f"channels_last is not offered on {target.kind}")

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        fmt = str(params.get("format", "contiguous"))
        return pipeline if fmt == "contiguous" else pipeline.with_section(self, MemoryFormatSection(fmt))

    def configure_training(self, section: Section, setup: TrainingSetup) -> None:
        # In place: the parameters of whatever model was built (the task's, a smaller one) take the layout.
        _channels_last(setup.model)

    def serve(self, section: Section, model: nn.Module, ctx: ServeContext) -> nn.Module:
        # Also for a model trained by another recipe (inference mode): its conv weights take the layout here.
        return _channels_last(model)

    def prepare_input(self, section: Section, inputs: torch.Tensor, plan: Pipeline) -> torch.Tensor:
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.ndim == 4 else inputs


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(MemoryFormatStrategy())
