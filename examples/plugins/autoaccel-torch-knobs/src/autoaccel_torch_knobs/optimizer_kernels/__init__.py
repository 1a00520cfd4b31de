"""Optimizer kernels: the user's optimizer rebuilt with ``foreach=True`` or ``fused=True``.

A training technique: it changes what the training loop runs, so it declares ``changes_training`` and each of
its trials trains its own model. It acts before the scheduler (which binds to the optimizer it is given).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autoaccel.plugin import Phase, Pipeline, Section, Strategy, TrainingSetup, TrialFailure, hookimpl


@dataclass(frozen=True)
class KernelSection(Section):
    implementation: str  # foreach or fused

    def keeps_math(self) -> bool:
        return True  # the same update, computed in fewer kernel launches


class OptimizerKernelsStrategy(Strategy[KernelSection]):
    name = "optimizer_kernels"
    phase = Phase.TRAIN
    relieves = ("optimizer",)
    changes_training = True
    # The scheduler wraps whatever optimizer it finds: it must find the rebuilt one.
    before = ("scheduler",)
    description = "Optimizer step with foreach (multi-tensor) or fused kernels instead of the per-parameter loop."

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        implementation = str(params.get("implementation", "default"))
        return pipeline if implementation == "default" else pipeline.with_section(self, KernelSection(implementation))

    def configure_training(self, section: KernelSection, setup: TrainingSetup) -> None:
        old = setup.optimizer
        flags = {"foreach": section.implementation == "foreach", "fused": section.implementation == "fused"}
        # Same class, same parameter groups and hyper-parameters: only the kernel changes.
        groups = [{k: v for k, v in g.items() if k not in flags} for g in old.param_groups]
        try:
            setup.optimizer = type(old)(groups, **{**old.defaults, **flags})
        except (TypeError, RuntimeError, ValueError) as exc:
            raise TrialFailure(f"{type(old).__name__} has no {section.implementation} implementation here: {exc}",
                               kind="unsupported") from exc


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy[Any]], None]) -> None:
    register(OptimizerKernelsStrategy())
