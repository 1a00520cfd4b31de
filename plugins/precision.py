"""Mixed precision: fp32, tf32 (CUDA), bf16 autocast, fp16 autocast with a GradScaler."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import Capability, Phase, Pipeline, Strategy, Target, hookimpl


class PrecisionStrategy(Strategy):
    name = "precision"
    phase = Phase.TRAIN
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

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        dtype = params.get("dtype", "fp32")
        # fp16's narrow exponent underflows small gradients; a GradScaler is the standard remedy.
        return pipeline.replace(precision=dtype, loss_scaling=dtype == "fp16")


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(PrecisionStrategy())
