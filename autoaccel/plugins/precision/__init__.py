"""Mixed precision: fp32, tf32 (CUDA), bf16 autocast, fp16 autocast with a GradScaler."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoaccel.plugin import Capability, Phase, Pipeline, Section, Strategy, Target, Task, TrainingSetup, hookimpl

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class PrecisionSection(Section):
    dtype: str  # tf32, bf16 or fp16 (fp32 is the absence of a section)


@contextlib.contextmanager
def tf32() -> Iterator[None]:
    """TF32 matmuls and convolutions for the duration only, so one trial's setting never leaks into the next."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


class PrecisionStrategy(Strategy[PrecisionSection]):
    name = "precision"
    phase = Phase.TRAIN
    relieves = ("forward", "backward")
    changes_training = True
    description = "Mixed precision for training and inference (tf32, bf16, fp16 with loss scaling)."

    def check(self, target: Target) -> Capability:
        allowed = [p for p in ("fp32", "tf32", "bf16", "fp16") if p in target.precisions]
        dropped = [p for p in ("tf32", "bf16", "fp16") if p not in allowed]
        reasons = {
            "tf32": "tf32 needs a CUDA GPU of compute capability 8.0 or newer",
            "bf16": "bf16 needs compute capability 8.0 or newer on CUDA",
            "fp16": "fp16 is not offered on this target",
        }
        reason = "; ".join(reasons[p] for p in dropped)
        return Capability(True, f"dropped: {reason}" if reason else "", {"dtype": allowed})

    def fits(self, model: nn.Module, task: Task, target: Target) -> Capability:
        if target.kind == "cpu" and any(isinstance(m, nn.RNNBase) for m in model.modules()):
            # oneDNN has no fp16 recurrent kernel: autocast fails inside the LSTM's forward ("could not create a
            # primitive descriptor"), measured with torch 2.13; bf16 runs.
            return Capability(True, "fp16 dropped: fp16 autocast of recurrent layers (LSTM, GRU, RNN) fails on CPU",
                              {"dtype": ["fp32", "tf32", "bf16"]})
        return Capability(True)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        dtype = str(params.get("dtype", "fp32"))
        return pipeline if dtype == "fp32" else pipeline.with_section(self, PrecisionSection(dtype))

    def configure_training(self, section: PrecisionSection, setup: TrainingSetup) -> None:
        if section.dtype == "tf32":
            setup.contexts.append(tf32())
            return
        kind, dtype = setup.plan.device.split(":")[0], AUTOCAST_DTYPES[section.dtype]
        setup.autocast = lambda: torch.autocast(kind, dtype=dtype)
        if section.dtype == "fp16":
            # fp16's narrow exponent underflows small gradients; a GradScaler is the standard remedy.
            setup.scaler = torch.amp.GradScaler(kind)

    def inference_context(self, section: PrecisionSection, plan: Pipeline) -> contextlib.AbstractContextManager[Any] | None:
        if section.dtype == "tf32":
            return tf32()
        # A model served in its own numeric format (int8, half weights, another engine) must not be autocast.
        if plan.fixes_precision():
            return None
        return torch.autocast(plan.device.split(":")[0], dtype=AUTOCAST_DTYPES[section.dtype])

    def recipe(self, section: PrecisionSection) -> dict[str, Any]:
        return {"dtype": section.dtype, "autocast_dtype": {"bf16": "torch.bfloat16", "fp16": "torch.float16"}.get(section.dtype),
                "grad_scaler": section.dtype == "fp16", "allow_tf32": section.dtype == "tf32"}


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(PrecisionStrategy())
