"""torch.compile (default, reduce-overhead, max-autotune-no-cudagraphs) for training and inference."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from typing import Any

from autoaccel import Capability, Phase, Pipeline, Strategy, Target, hookimpl


class CompileStrategy(Strategy):
    name = "compile"
    phase = Phase.MODEL
    description = "torch.compile; compile time is reported separately from steady-state speed."

    def check(self, target: Target) -> Capability:
        if target.kind not in ("cpu", "cuda"):
            return Capability(False, f"torch.compile is not offered on {target.kind} here")
        if target.kind == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
            return Capability(False, "torch.compile on CPU generates C++ and needs a compiler (g++ or clang++) on PATH")
        modes = ["off", "default", "max-autotune-no-cudagraphs"]
        reason = ""
        if target.kind == "cuda":
            modes.append("reduce-overhead")
        else:
            reason = "reduce-overhead dropped: it relies on CUDA graphs"
        return Capability(True, reason, {"mode": modes})

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        mode = str(params.get("mode", "off"))
        return pipeline if mode == "off" else pipeline.replace(compile_mode=mode)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(CompileStrategy())
