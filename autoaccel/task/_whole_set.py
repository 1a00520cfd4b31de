"""Metrics of the whole validation set: a user's callable, and the common scorers that are not averages of samples.

Balanced accuracy, F1, AUROC, precision and recall are computed on the whole set (as scikit-learn's scorers
are): a mean of per-batch values is wrong, and a batch without one class gives NaN. So a callable metric is
called once, with the model's outputs over the whole validation set joined along the batch axis, in the same
structure the model returns and the loss receives (a tensor, a tuple, a dict or a ModelOutput), and the
targets likewise. The evaluation keeps those outputs on the CPU for the length of the evaluation: the memory of
one pass's outputs over the validation set (--val-fraction bounds it on a huge set).

Its interval, and the paired interval of a drop between two trials, come from the same bootstrap: the metric
is recomputed on ``RESAMPLES`` resamples of the validation samples, drawn with a fixed seed, so two trials are
resampled alike and each replicate's difference is one paired draw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autoaccel.task._batches import prediction
from autoaccel.task._batches import size as batch_size

RESAMPLES = 200
PAIRING_SEED = 0  # the same resamples for every trial of a run (and every run on the same validation set)
WholeSetFn = Callable[[Any, Any], float]


class JoinError(ValueError):
    """Outputs that cannot be joined along the batch axis (the batch on another axis, ragged shapes)."""


def _where(path: str) -> str:
    return f"outputs{path}" if path else "the outputs"


def check_batched(outputs: Any, n: int, path: str = "") -> None:
    """Raise JoinError unless every tensor in ``outputs`` has the batch of ``n`` samples on its first axis."""
    if isinstance(outputs, torch.Tensor):
        if outputs.ndim == 0 or outputs.shape[0] != n:
            raise JoinError(f"{_where(path)} has shape {tuple(outputs.shape)}: its first axis is not the batch of {n}")
    elif isinstance(outputs, Mapping) or hasattr(outputs, "keys"):
        for key in outputs.keys():
            value = outputs[key]
            if value is not None and not (key == "loss" and isinstance(value, torch.Tensor) and value.ndim == 0):
                check_batched(value, n, f"{path}[{key!r}]")
    elif isinstance(outputs, (tuple, list)):
        for i, value in enumerate(outputs):
            check_batched(value, n, f"{path}[{i}]")
    elif outputs is not None:
        raise JoinError(f"{_where(path)} is a {type(outputs).__name__}, not a tensor")


def _rebuild(template: Any, values: dict[Any, Any]) -> Any:
    if isinstance(template, Mapping) and type(template) is not dict and hasattr(type(template), "__dataclass_fields__"):
        return type(template)(**values)  # a ModelOutput, rebuilt as its own class
    return dict(values)


def join(parts: list[Any]) -> Any:
    """Batches of outputs (or targets) joined along the batch axis, their structure kept. A scalar loss in a
    ModelOutput is dropped (it is one batch's, not the set's)."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping) or hasattr(first, "keys"):
        keys = [k for k in first.keys() if first[k] is not None
                and not (k == "loss" and isinstance(first[k], torch.Tensor) and first[k].ndim == 0)]
        return _rebuild(first, {k: join([p[k] for p in parts]) for k in keys})
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(join([p[i] for p in parts]) for i in range(len(first))))
    if isinstance(first, (tuple, list)):
        return type(first)(join([p[i] for p in parts]) for i in range(len(first)))
    return first


def take(joined: Any, index: torch.Tensor) -> Any:
    """The samples at ``index`` of joined outputs or targets, their structure kept."""
    if isinstance(joined, torch.Tensor):
        return joined.index_select(0, index)
    if isinstance(joined, Mapping) or hasattr(joined, "keys"):
        return _rebuild(joined, {k: take(joined[k], index) for k in joined.keys()})
    if isinstance(joined, tuple) and hasattr(joined, "_fields"):
        return type(joined)(*(take(v, index) for v in joined))
    if isinstance(joined, (tuple, list)):
        return type(joined)(take(v, index) for v in joined)
    return joined


def resamples(n: int, count: int = RESAMPLES) -> np.ndarray:
    """The bootstrap's resamples of ``n`` samples (count x n indices), the same for every trial."""
    return np.random.default_rng(PAIRING_SEED).integers(0, n, size=(count, n))


@dataclass(frozen=True)
class WholeSetMetric:
    """A metric computed once on the whole validation set: ``fn(outputs, targets) -> float``."""

    name: str
    direction: str
    fn: WholeSetFn = field(repr=False)
    # The metric on every resample at once ((outputs, targets, resamples x n indices) -> values), where calling
    # ``fn`` once per resample would take too long (AUROC); None: ``fn`` per resample.
    vectorized: Callable[[Any, Any, np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    needs_loss: bool = False
    per_batch: bool = False
    proportion: bool = False

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def __call__(self, outputs: Any, targets: Any, loss: torch.Tensor | None = None) -> float:
        return float(self.fn(outputs, targets))

    def replicates(self, outputs: Any, targets: Any) -> np.ndarray:
        """The metric on each of the bootstrap's resamples (the same resamples for every trial)."""
        n = len(targets) if targets is not None and not isinstance(targets, Mapping) else batch_size(outputs)
        if self.vectorized is not None:
            return np.asarray(self.vectorized(outputs, targets, resamples(n)), dtype=np.float64)
        return np.array([self._safe(take(outputs, torch.from_numpy(idx)), take(targets, torch.from_numpy(idx)))
                         for idx in resamples(n)], dtype=np.float64)

    def _safe(self, outputs: Any, targets: Any) -> float:
        # A resample may miss a class a scorer needs (AUROC of one class): that replicate is NaN, left out of the
        # interval (and of the paired one, on both sides).
        try:
            return float(self.fn(outputs, targets))
        except (ValueError, ZeroDivisionError, RuntimeError):
            return float("nan")


# The common scorers, on the whole set through scikit-learn. Class scores (N, C) predict their argmax; a single
# score per sample (N,) or (N, 1) is a probability when it lies in [0, 1] (threshold 0.5), else a logit (0).


def _scores(outputs: Any) -> torch.Tensor:
    scores = prediction(outputs).detach().float().cpu()
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.ndim not in (1, 2):
        raise ValueError(f"needs one score per sample (N,) or class scores (N, C), but got outputs of shape "
                         f"{tuple(scores.shape)}")
    return scores


def _labels(scores: torch.Tensor) -> np.ndarray:
    if scores.ndim == 2:
        return scores.argmax(dim=1).numpy()
    threshold = 0.5 if bool(((scores >= 0) & (scores <= 1)).all()) else 0.0
    return (scores > threshold).long().numpy()


def _binary(name: str, scores: torch.Tensor) -> None:
    if scores.ndim == 2 and scores.shape[1] > 2:
        raise ValueError(f"{name} is the binary score of class 1, but the model gives {scores.shape[1]} classes: "
                         f"use macro_{name} for several classes")


def _targets(targets: Any) -> np.ndarray:
    return torch.as_tensor(targets).detach().cpu().reshape(-1).long().numpy()


def _sklearn(name: str) -> WholeSetFn:
    from sklearn import metrics as skm

    def binary(score: Callable[..., float]) -> WholeSetFn:
        def fn(outputs: Any, targets: Any) -> float:
            scores = _scores(outputs)
            _binary(name, scores)
            return float(score(_targets(targets), _labels(scores), zero_division=0))
        return fn

    def macro_f1(outputs: Any, targets: Any) -> float:
        return float(skm.f1_score(_targets(targets), _labels(_scores(outputs)), average="macro", zero_division=0))

    def balanced(outputs: Any, targets: Any) -> float:
        return float(skm.balanced_accuracy_score(_targets(targets), _labels(_scores(outputs))))

    def auroc(outputs: Any, targets: Any) -> float:
        scores, y = _scores(outputs), _targets(targets)
        if scores.ndim == 1:
            return float(skm.roc_auc_score(y, scores.numpy()))
        probs = torch.softmax(scores, dim=1).numpy()
        if probs.shape[1] == 2:
            return float(skm.roc_auc_score(y, probs[:, 1]))
        return float(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=np.arange(probs.shape[1])))

    return {"f1": binary(skm.f1_score), "precision": binary(skm.precision_score), "recall": binary(skm.recall_score),
            "macro_f1": macro_f1, "balanced_accuracy": balanced, "auroc": auroc}[name]


def _auc(score: np.ndarray, positive: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The AUC of ``score`` for the ``positive`` samples under each row of sample multiplicities ``counts``
    (resamples x n): the Mann-Whitney statistic, P(a positive scores above a negative) + half the ties, from one
    sort shared by every resample. NaN where a resample has no positive or no negative."""
    order = np.argsort(score, kind="stable")
    ranked, pos = score[order], positive[order]
    weights = counts[:, order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # groups of tied scores
    p = np.add.reduceat(weights * pos, starts, axis=1)
    q = np.add.reduceat(weights * ~pos, starts, axis=1)
    below = np.cumsum(q, axis=1) - q
    with np.errstate(invalid="ignore", divide="ignore"):
        return (p * (below + 0.5 * q)).sum(axis=1) / (p.sum(axis=1) * q.sum(axis=1))


def _auroc_resampled(outputs: Any, targets: Any, indices: np.ndarray) -> np.ndarray:
    """AUROC on every resample at once, as scikit-learn computes it once: binary on the score of class 1, else
    one-vs-rest macro over softmax probabilities. Calling scikit-learn 200 times on a 10,000-sample set of ten
    classes took 8 s (bench/metric_bootstrap.py); this takes a fraction of a second."""
    scores, y = _scores(outputs), _targets(targets)
    n = len(y)
    counts = np.stack([np.bincount(row, minlength=n) for row in indices])
    if scores.ndim == 1:
        return _auc(scores.numpy().astype(np.float64), y == 1, counts)
    probs = torch.softmax(scores.double(), dim=1).numpy()
    if probs.shape[1] == 2:
        return _auc(probs[:, 1], y == 1, counts)
    return np.mean([_auc(probs[:, k], y == k, counts) for k in range(probs.shape[1])], axis=0)


SCORERS = ("f1", "macro_f1", "balanced_accuracy", "auroc", "precision", "recall")


def scorer(name: str) -> WholeSetMetric:
    """A named whole-set scorer (SCORERS), computed by scikit-learn."""
    return WholeSetMetric(name, "maximize", _sklearn(name), _auroc_resampled if name == "auroc" else None)
