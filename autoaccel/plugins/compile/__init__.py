"""torch.compile (default, reduce-overhead, max-autotune-no-cudagraphs) for training and inference."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from autoaccel.plugin import (
    Capability,
    Phase,
    Pipeline,
    Section,
    ServeContext,
    Strategy,
    Target,
    TrainingSetup,
    hookimpl,
)

# Where a trained model keeps its compiled wrapper: re-measurement trains the same model round after round, and
# compiling it anew each time would hit dynamo's recompile limit and silently fall back to eager. Kept on the
# model itself (a reference cycle the collector frees with it), not in a module-level cache that would keep
# every compiled model of a long-lived worker alive.
WRAPPER = "_autoaccel_compiled"


@dataclass(frozen=True)
class CompileSection(Section):
    mode: str

    def options(self) -> dict[str, Any]:
        return {"mode": None if self.mode == "default" else self.mode}

    def keeps_math(self) -> bool:
        return True  # the same graph, fused: only rounding differs


class CompileStrategy(Strategy[CompileSection]):
    name = "compile"
    phase = Phase.MODEL
    relieves = ("forward", "backward")
    one_off_cost = True  # the compilation, before the first step (tens of seconds on a CPU)
    changes_training = True
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
        return pipeline if mode == "off" else pipeline.with_section(self, CompileSection(mode))

    def start(self, section: CompileSection, plan: Pipeline) -> None:
        import torch._dynamo

        # Graphs compiled by earlier plans in this process are forgotten: torch.compile caches per code object, and
        # the same forward compiled plan after plan would reach the recompile limit and quietly run eager.
        torch._dynamo.reset()
        # Several compiled finalists re-measured side by side each keep their graphs.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)

    def configure_training(self, section: CompileSection, setup: TrainingSetup) -> None:
        if setup.finetuning:
            return  # a short fine-tuning of a transformed model: compiling it would cost more than it saves
        # The wrapper shares the model's parameters: training it trains the model whose state dict is cached.
        model = setup.model
        if WRAPPER not in model.__dict__:
            model.__dict__[WRAPPER] = torch.compile(model, **section.options())  # not a submodule: not in its state dict
        setup.model = model.__dict__[WRAPPER]
        setup.recompiles = True

    def serve(self, section: CompileSection, model: nn.Module, ctx: ServeContext) -> nn.Module:
        if ctx.plan.engine() is not None:
            return model  # another engine serves the model: nothing for torch.compile to do
        # dynamic=False: inference shapes repeat, and static shapes let inductor specialise (and graph-capture).
        # torch.compile of a Module returns an OptimizedModule (a Module); its stubs only promise a callable.
        return cast(nn.Module, torch.compile(model, dynamic=False, **section.options()))


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(CompileStrategy())
