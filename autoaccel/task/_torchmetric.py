"""A torchmetrics ``Metric`` as the Task's metric: cloned per trial, updated batch by batch, computed at the end.

torchmetrics is how the PyTorch ecosystem streams a metric with bounded state; Lightning logs it as it is. It is
not a dependency of autoaccel: a user who passes one has it installed (``pip install autoaccel[torchmetrics]``
installs it too). Its direction comes from its ``higher_is_better``.

Its interval is a bootstrap of the validation samples, paired between trials (the same draws for every trial):
- a metric whose state is sums (F1, precision, accuracy, mean squared error: tensors that ``update`` adds to)
  stays streamed: ``RESAMPLES`` clones are updated with each batch's samples repeated by Poisson(1) counts
  (the Poisson bootstrap, as torchmetrics' own BootStrapper draws it, here from a fixed seed);
- a metric that keeps every prediction anyway (a list state, as exact AUROC does) is recomputed on resamples
  of the whole set, as a whole-set callable is (whole_set.py).
"""

from __future__ import annotations

import copy
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autoaccel.task._batches import prediction
from autoaccel.task._whole_set import PAIRING_SEED, RESAMPLES, resamples

MAX_COUNT_CELLS = 50_000_000  # Poisson counts held at once (bytes): fewer resamples on a huge validation set


def is_torchmetric(metric: Any) -> bool:
    """Whether ``metric`` is a torchmetrics Metric (torchmetrics is imported by whoever built one)."""
    module = sys.modules.get("torchmetrics")
    return module is not None and isinstance(metric, module.Metric)


def preds_and_target(outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``update(preds, target)`` takes: the prediction in the model's outputs (logits of a ModelOutput, the
    first item of a tuple), a trailing axis of one dropped when the targets have none."""
    preds = prediction(outputs).detach()
    target = torch.as_tensor(targets).detach()
    if preds.ndim == target.ndim + 1 and preds.shape[-1] == 1:
        preds = preds.squeeze(-1)
    return preds.cpu(), target.cpu()


def _fresh(template: Any) -> Any:
    clone = copy.deepcopy(template)
    clone.reset()
    return clone


def _streams(template: Any) -> bool:
    """Whether every state of the metric is a tensor that updates add to (a Poisson-weighted clone is exact)."""
    defaults = getattr(template, "_defaults", {})
    return bool(defaults) and all(isinstance(v, torch.Tensor) for v in defaults.values())


@dataclass(frozen=True)
class TorchMetric:
    """The Task's torchmetrics Metric, never updated itself: each evaluation works on clones."""

    template: Any = field(repr=False)
    name: str
    direction: str
    needs_loss: bool = False
    per_batch: bool = False
    proportion: bool = False

    @classmethod
    def of(cls, metric: Any, direction: str | None) -> "TorchMetric":
        from autoaccel.errors import AutoaccelError

        better = getattr(metric, "higher_is_better", None)
        if better is None and direction is None:
            raise AutoaccelError(f"Task.direction: {type(metric).__name__} does not say whether higher is better "
                                 "(its higher_is_better is None): set Task.direction to 'maximize' or 'minimize'")
        found = direction or ("maximize" if better else "minimize")
        if direction is not None and better is not None and found != ("maximize" if better else "minimize"):
            raise AutoaccelError(f"Task.direction: {type(metric).__name__} has higher_is_better={better}, but "
                                 f"Task.direction is {direction!r}; leave Task.direction unset")
        return cls(metric, _name(metric), found)

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def __call__(self, outputs: Any, targets: Any, loss: torch.Tensor | None = None) -> float:
        one = _fresh(self.template)
        one.update(*preds_and_target(outputs, targets))
        return float(one.compute())

    def accumulator(self, n: int) -> "TorchAccumulator":
        return TorchAccumulator(self, n)


def _name(metric: Any) -> str:
    """BinaryF1Score -> binary_f1_score: the class name in the words the outputs use."""
    name = type(metric).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


class TorchAccumulator:
    """One evaluation of a TorchMetric over ``n`` validation samples, batch by batch."""

    def __init__(self, metric: TorchMetric, n: int) -> None:
        self.metric, self.n, self.offset = metric, n, 0
        self.main = _fresh(metric.template)
        self.streamed = _streams(metric.template)
        count = min(RESAMPLES, max(1, MAX_COUNT_CELLS // max(1, n)))
        if self.streamed:
            self.counts = np.random.default_rng(PAIRING_SEED).poisson(1.0, size=(count, n)).astype(np.uint8)
            self.clones = [_fresh(metric.template) for _ in range(count)]
        else:
            self.kept: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add(self, outputs: Any, targets: Any) -> None:
        preds, target = preds_and_target(outputs, targets)
        self.main.update(preds, target)
        k = preds.shape[0]
        if self.streamed:
            for clone, counts in zip(self.clones, self.counts[:, self.offset:self.offset + k]):
                index = torch.repeat_interleave(torch.arange(k), torch.from_numpy(counts.astype(np.int64)))
                if len(index):
                    clone.update(preds.index_select(0, index), target.index_select(0, index))
        else:
            self.kept.append((preds, target))
        self.offset += k

    def value(self) -> float:
        return float(self.main.compute())

    def replicates(self) -> np.ndarray:
        if self.streamed:
            return np.array([_computed(c) for c in self.clones], dtype=np.float64)
        preds = torch.cat([p for p, _ in self.kept])
        target = torch.cat([t for _, t in self.kept])
        out = []
        for idx in resamples(len(target)):
            one = _fresh(self.metric.template)
            index = torch.from_numpy(idx)
            one.update(preds.index_select(0, index), target.index_select(0, index))
            out.append(_computed(one))
        return np.array(out, dtype=np.float64)


def _computed(metric: Any) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "compute called before update" on a resample that drew no sample
            return float(metric.compute())
    except (ValueError, RuntimeError, ZeroDivisionError):
        return float("nan")  # a resample the metric cannot score: left out of the interval
