"""The ensemble modules the ensembling strategy serves: averaged probabilities, or a stacking combiner."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from torch import nn

from autoaccel.plugin import prediction, with_prediction


class AverageEnsemble(nn.Module):
    """The members' predictions combined as the task's kind wants: class or token scores as the mean of their
    softmax probabilities, returned as log-probabilities (argmax and cross-entropy still work); real-valued
    predictions (regression) as their plain mean. Members are called as the task calls its model."""

    def __init__(self, members: list[nn.Module], kind: str = "classification") -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.kind = kind

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        full = [m(*args, **kwargs) for m in self.members]
        outs = [prediction(o).float() for o in full]
        if self.kind == "regression":
            combined = torch.stack(outs).mean(dim=0)
        else:
            axis = -1 if self.kind == "sequence" else 1  # a token model's classes are on its last axis
            combined = torch.stack([o.softmax(dim=axis) for o in outs]).mean(dim=0).clamp_min(1e-12).log()
        # Shaped as the first member's outputs ((output, hidden) stays a pair), the prediction replaced.
        return with_prediction(full[0], combined)


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
