"""Ensembles of trained models drawn from the checkpoint cache: averaged probabilities, or stacking."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from torch import nn

from autoaccel.data import materialize
from autoaccel.errors import TrialFailure
from autoaccel.pipeline import TransformContext


class AverageEnsemble(nn.Module):
    """Mean of the members' softmax probabilities, returned as log-probabilities (argmax and CE still work)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(dim=1) for m in self.members]).mean(dim=0)
        return probs.clamp_min(1e-12).log()


class StackingEnsemble(nn.Module):
    """A multinomial logistic regression over the members' concatenated log-probabilities."""

    def __init__(self, members: list[nn.Module], coef: np.ndarray, intercept: np.ndarray) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        if coef.shape[0] == 1:
            # Binary problems get one logit from scikit-learn; as [0, z] it argmaxes like the two-class case.
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros_like(intercept), intercept])
        self.combiner = nn.Linear(coef.shape[1], coef.shape[0])
        with torch.no_grad():
            self.combiner.weight.copy_(torch.from_numpy(coef).float())
            self.combiner.bias.copy_(torch.from_numpy(intercept).float())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x).float().log_softmax(dim=1) for m in self.members], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combiner(self.features(x))



def fit_stacking(features: np.ndarray, targets: np.ndarray, seed: int) -> tuple[LogisticRegression, np.ndarray]:
    """Fit the combiner; return it (fitted on everything) and out-of-fold predicted classes for honest scoring.

    Scoring a combiner on the samples it was fitted on would flatter it; cross-fitting gives every validation
    sample a prediction from a combiner that never saw it.
    """
    classes, counts = np.unique(targets, return_counts=True)
    folds = int(min(5, counts.min())) if len(classes) > 1 else 0
    oof = np.empty(len(targets), dtype=targets.dtype)
    if folds >= 2:
        for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, targets):
            clf = LogisticRegression(max_iter=1000).fit(features[train_idx], targets[train_idx])
            oof[test_idx] = clf.predict(features[test_idx])
    full = LogisticRegression(max_iter=1000).fit(features, targets)
    if folds < 2:
        oof = full.predict(features)
    return full, oof


def ensemble(model: nn.Module, ctx: TransformContext, k: int, method: str) -> nn.Module:
    """Wrap the trial's model with the plan's members: other feasible trained recipes the core chose, each
    loaded from the checkpoint cache or trained from its own recipe (``autoaccel apply`` without a cache).

    A stacking ensemble carries ``oof_outputs``: out-of-fold predictions on the validation set, which the trial
    scores instead of the combiner's in-sample outputs.
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
        return AverageEnsemble(members)
    probe = StackingEnsemble(members, np.zeros((2, 1)), np.zeros(2))  # only its features() is used
    inputs, targets = materialize(ctx.task.val_data)
    with torch.no_grad():
        feats = torch.cat([probe.features(inputs[i:i + 512].to(device)).cpu() for i in range(0, len(inputs), 512)]).numpy()
    clf, oof = fit_stacking(feats, targets.numpy(), ctx.seed)
    stacked = StackingEnsemble(members, clf.coef_, clf.intercept_)
    n_classes = int(max(int(targets.max()) + 1, len(clf.classes_)))
    oof_outputs = torch.zeros(len(oof), n_classes)
    oof_outputs[torch.arange(len(oof)), torch.from_numpy(oof).long()] = 1.0
    stacked.oof_outputs = oof_outputs
    return stacked
