"""Ensembling: serve k trained models (the trial's and k - 1 the core chose) averaged, or combined by stacking."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from autoaccel.plugin import (
    Capability,
    Phase,
    Pipeline,
    Section,
    Strategy,
    Target,
    Task,
    TransformContext,
    TrialFailure,
    hookimpl,
    materialize,
    split,
)
from autoaccel.plugins.ensembling.models import AverageEnsemble, StackingEnsemble, fit_stacking


@dataclass(frozen=True)
class EnsembleSection(Section):
    k: int
    method: str = "average"


def ensemble(model: nn.Module, ctx: TransformContext, k: int, method: str) -> nn.Module:
    """Wrap the trial's model with the plan's members: other feasible trained recipes the core chose, each
    loaded from the checkpoint cache or trained from its own recipe (``autoaccel apply`` without a cache).

    A stacking ensemble has the trial judged on its out-of-fold predictions on the validation set
    (``ctx.judge_on``), not on the combiner's in-sample outputs.
    """
    if len(ctx.plan.members) < k - 1:
        # Serving fewer models than the configuration says would measure another configuration under its name.
        raise TrialFailure(f"an ensemble of {k} needs {k - 1} other feasible trained model(s), and the study has "
                           f"{len(ctx.plan.members)} so far; it becomes possible after more trials have trained", kind="infeasible")
    if ctx.trained is None:
        raise TrialFailure("ensembling needs the Task to load or train its members; pass the Task, not a bare model",
                           kind="unsupported")
    device = ctx.plan.device
    members = [model.eval()] + [ctx.trained(m.plan).to(device).eval() for m in ctx.plan.members]
    if method == "average":
        return AverageEnsemble(members, ctx.task.resolved_kind())
    probe = StackingEnsemble(members, np.zeros((2, 1)), np.zeros(2))  # only its features() is used
    inputs, targets = materialize(ctx.task.val_data)
    with torch.no_grad():
        feats = torch.cat([probe.features(inputs[i:i + 512].to(device)).cpu() for i in range(0, len(inputs), 512)]).numpy()
    clf, oof = fit_stacking(feats, targets.numpy(), ctx.seed)
    stacked = StackingEnsemble(members, clf.coef_, clf.intercept_)
    n_classes = int(max(int(targets.max()) + 1, len(clf.classes_)))
    oof_outputs = torch.zeros(len(oof), n_classes)
    oof_outputs[torch.arange(len(oof)), torch.from_numpy(oof).long()] = 1.0
    ctx.judge_on(oof_outputs)
    return stacked


class EnsemblingStrategy(Strategy[EnsembleSection]):
    name = "ensembling"
    # Runtime phase: an ensemble is what gets served (and then quantized, which says it acts after this).
    phase = Phase.RUNTIME
    needs_training = True
    description = "Ensembles of k trained models: averaged probabilities or stacking; pays for all k trainings."

    def fits(self, model: nn.Module, task: Task, target: Target) -> Capability:
        kind = task.resolved_kind()
        if kind == "generative":
            return Capability(False, "a generative model's outputs (reconstructions, latents) have no prediction to average")
        plain = isinstance(split(task.val_data[0])[0], torch.Tensor)
        if kind != "classification" or task.training_step is not None or task.evaluation_step is not None or not plain:
            # Stacking fits a logistic regression over class probabilities of one tensor input: a regression has
            # no classes; a sequence model, one run by the user's own steps or one taking several inputs has no
            # per-input class scores it can compute.
            why = ("stacking dropped: it combines class probabilities of one tensor input, and this is a "
                   + (f"{kind} task" if kind != "classification" else
                      "model run by the Task's own steps" if plain else "model taking several inputs"))
            return Capability(True, why, {"method": ["average"]})
        return Capability(True)

    def members_needed(self, params: Mapping[str, Any]) -> int:
        return max(0, int(params.get("k", 1)) - 1)

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        k = int(params.get("k", 1))
        if k <= 1:
            return pipeline
        return pipeline.with_section(self, EnsembleSection(k, str(params.get("method", "average"))))

    def transform(self, section: EnsembleSection, model: nn.Module, ctx: TransformContext) -> nn.Module:
        return ensemble(model, ctx, section.k, section.method)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(EnsemblingStrategy())
