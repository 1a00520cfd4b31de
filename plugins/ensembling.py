"""Ensembling: serve k trained models (from the checkpoint cache) averaged, or combined by stacking."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from autoaccel import Phase, Pipeline, Strategy, hookimpl
from autoaccel.ensemble import ensemble


class EnsemblingStrategy(Strategy):
    name = "ensembling"
    # Runtime phase, before quantization by name: an ensemble is what gets served, and then quantized.
    phase = Phase.RUNTIME
    needs_training = True
    description = "Ensembles of k trained models: averaged probabilities or stacking; pays for all k trainings."

    def members_needed(self, params: Mapping[str, Any]) -> int:
        return max(0, int(params.get("k", 1)) - 1)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        k = int(params.get("k", 1))
        if k <= 1:
            return pipeline
        return pipeline.add_transform(partial(ensemble, k=k, method=str(params.get("method", "average"))))


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(EnsemblingStrategy())
