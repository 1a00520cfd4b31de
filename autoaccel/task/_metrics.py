"""Task metrics of sums: built in by name (with their direction), accumulated batch by batch; and resolving
``Task.metric`` into one of the three kinds quality.py evaluates (these rows; a whole-set metric, whole_set.py; a
torchmetrics Metric, torchmetric.py).

A metric of sums turns each evaluation batch into *rows* of sums (one row per sample, or one per batch for metrics of
a whole batch, such as a sequence model's loss); its value is a function of the column totals. Holding rows,
not outputs, keeps evaluation memory bounded (torchmetrics-style state), and the rows are what the confidence
interval resamples: Wilson's interval for proportions (accuracy), a bootstrap over rows for anything else.

Inside the search every metric is oriented so that higher is better (``Metric.sign``): a lower-is-better
metric's *quality* is its negated value, and every output shows the metric's own value under its own name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autoaccel.errors import AutoaccelError, did_you_mean

MetricFn = Callable[[torch.Tensor, Any], float]
# rows of one batch from (prediction, targets, the batch's loss or None); shape (rows, columns)
RowsFn = Callable[[torch.Tensor, Any, "torch.Tensor | None"], np.ndarray]
IGNORE_INDEX = -100  # target positions that do not count (padding): PyTorch's and Hugging Face's convention
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Metric:
    """A named metric: how a batch becomes rows of sums, and how column totals become its value.

    ``finish`` takes totals of shape (..., columns) and returns values of shape (...): vectorised, so a
    bootstrap evaluates all its resamples at once. ``proportion``: each row is (hits, count) of independent
    samples, so the exact binomial (Wilson) interval applies. ``needs_loss``: rows come from the batch's loss.
    """

    name: str
    direction: str
    rows: RowsFn
    finish: Callable[[np.ndarray], np.ndarray]
    proportion: bool = False
    needs_loss: bool = False
    per_batch: bool = False  # one row per batch (a bootstrap over batches), not per sample

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is: quality = sign * value."""
        return 1.0 if self.direction == "maximize" else -1.0

    def value(self, totals: np.ndarray) -> float:
        return float(self.finish(np.asarray(totals, dtype=np.float64)))

    def __call__(self, prediction: torch.Tensor, targets: Any, loss: torch.Tensor | None = None) -> float:
        """The metric of one set of outputs (tests, one-off use): rows of it, totalled, finished."""
        return self.value(self.rows(prediction, targets, loss).sum(axis=0))


def ratio_of_sums(totals: np.ndarray) -> np.ndarray:
    return totals[..., 0] / np.maximum(totals[..., 1], 1e-300)


def _hits(prediction: torch.Tensor, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k hits of class scores against integer targets, and which positions count (not IGNORE_INDEX).
    Scores may be (N, C), (..., C) matching targets (...), or (N, C, ...) as CrossEntropyLoss lays them out."""
    targets = torch.as_tensor(targets)
    if prediction.ndim < 2:
        raise ValueError(f"needs class scores (N, C), but got outputs of shape {tuple(prediction.shape)}")
    if prediction.shape[:-1] == targets.shape:
        scores = prediction
    elif prediction.ndim >= 2 and prediction.shape[0] == targets.shape[0] and prediction.shape[2:] == targets.shape[1:]:
        scores = prediction.movedim(1, -1)
    else:
        raise ValueError(f"class scores of shape {tuple(prediction.shape)} do not match targets of shape {tuple(targets.shape)}")
    top = scores.topk(min(k, scores.shape[-1]), dim=-1).indices
    hit = (top == targets.unsqueeze(-1)).any(dim=-1)
    return hit, targets != IGNORE_INDEX


def _accuracy_rows(k: int) -> RowsFn:
    def rows(prediction: torch.Tensor, targets: Any, loss: torch.Tensor | None) -> np.ndarray:
        hit, counts = _hits(prediction, targets, k)
        if hit.ndim == 1:  # one row per sample: (hit, 1)
            return torch.stack([(hit & counts).double(), counts.double()], dim=1).numpy()
        # Per-token hits of one sequence are not independent: one row per sample, its tokens summed.
        flat = lambda t: t.reshape(t.shape[0], -1).double().sum(dim=1)  # noqa: E731
        return torch.stack([flat(hit & counts), flat(counts)], dim=1).numpy()
    return rows


def _errors(prediction: torch.Tensor, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and targets as float (N, values), the prediction reshaped to the targets' shape when only
    their layout differs ((N, 1) against (N,))."""
    targets = torch.as_tensor(targets).double()
    prediction = prediction.double()
    if prediction.shape != targets.shape:
        if prediction.numel() != targets.numel():
            raise ValueError(f"outputs of shape {tuple(prediction.shape)} do not match targets of shape {tuple(targets.shape)}")
        prediction = prediction.reshape(targets.shape)
    n = targets.shape[0] if targets.ndim else 1
    return prediction.reshape(n, -1), targets.reshape(n, -1)


def _mean_rows(error: Callable[[torch.Tensor], torch.Tensor]) -> RowsFn:
    def rows(prediction: torch.Tensor, targets: Any, loss: torch.Tensor | None) -> np.ndarray:
        p, t = _errors(prediction, targets)
        return torch.stack([error(p - t).mean(dim=1), torch.ones(len(t), dtype=torch.float64)], dim=1).numpy()
    return rows


def _r2_rows(prediction: torch.Tensor, targets: Any, loss: torch.Tensor | None) -> np.ndarray:
    p, t = _errors(prediction, targets)
    return torch.stack([((p - t) ** 2).sum(1), t.sum(1), (t ** 2).sum(1), torch.full((len(t),), float(t.shape[1]), dtype=torch.float64)],
                       dim=1).numpy()


def _r2(totals: np.ndarray) -> np.ndarray:
    # 1 - SSE / SST, with SST = sum y^2 - (sum y)^2 / n: the coefficient of determination over all values.
    sse, s, s2, n = (totals[..., i] for i in range(4))
    sst = s2 - s * s / np.maximum(n, 1e-300)
    return 1.0 - sse / np.maximum(sst, 1e-300)


def _loss_rows(prediction: torch.Tensor, targets: Any, loss: torch.Tensor | None) -> np.ndarray:
    if loss is None:
        raise ValueError("needs the batch's loss, and none was computed")
    n = prediction.shape[0] if prediction.ndim else 1
    return np.array([[float(loss) * n, n]], dtype=np.float64)


def _value_rows(fn: MetricFn) -> RowsFn:
    def rows(prediction: torch.Tensor, targets: Any, loss: torch.Tensor | None) -> np.ndarray:
        n = prediction.shape[0] if prediction.ndim else 1
        return np.array([[float(fn(prediction, targets)) * n, n]], dtype=np.float64)
    return rows


def accuracy_metric(k: int = 1) -> Metric:
    name = "accuracy" if k == 1 else f"top{k}_accuracy"
    return Metric(name, "maximize", _accuracy_rows(k), ratio_of_sums, proportion=True)


BUILTIN_METRICS: dict[str, Metric] = {
    "accuracy": accuracy_metric(1),
    "top5_accuracy": accuracy_metric(5),
    "mse": Metric("mse", "minimize", _mean_rows(lambda d: d * d), ratio_of_sums),
    "mae": Metric("mae", "minimize", _mean_rows(torch.abs), ratio_of_sums),
    "r2": Metric("r2", "maximize", _r2_rows, _r2),
    # The task's own loss, and its exponential (a language model's perplexity when the loss is cross-entropy),
    # weighted by batch size over the validation batches.
    "loss": Metric("loss", "minimize", _loss_rows, ratio_of_sums, needs_loss=True, per_batch=True),
    "perplexity": Metric("perplexity", "minimize", _loss_rows, lambda t: np.exp(ratio_of_sums(t)), needs_loss=True, per_batch=True),
}
ALIASES = {"acc": "accuracy", "top1_accuracy": "accuracy", "mean_squared_error": "mse", "mean_absolute_error": "mae",
           "r^2": "r2", "r_squared": "r2", "ppl": "perplexity"}
accuracy = BUILTIN_METRICS["accuracy"]
TOPK = re.compile(r"^top[-_ ]?(\d+)[-_ ]accuracy$")


def _label(fn: Any) -> str:
    label = getattr(fn, "__name__", type(fn).__name__)
    return "metric" if label == "<lambda>" else label


def custom_metric(fn: MetricFn, direction: str, name: str | None = None) -> Metric:
    """The user's callable ``(outputs, targets) -> float`` as a batch average (``Task.metric_reduction="mean"``):
    evaluated on each validation batch, weighted by the batch's size, streamed; its interval bootstraps over
    batches. Without that reduction a callable is a whole-set metric (whole_set.py)."""
    return Metric(name or _label(fn), direction, _value_rows(fn), ratio_of_sums, per_batch=True)


REDUCTIONS = ("whole", "mean")


def resolve_metric(metric: Any, direction: str | None = None, reduction: str | None = None) -> Any:
    """Turn ``Task.metric`` (and ``Task.direction``, ``Task.metric_reduction``) into a metric: a Metric of rows,
    a whole-set metric (a callable, a named scorer), or a torchmetrics Metric; or raise one clear line naming
    the field."""
    from autoaccel.task._torchmetric import TorchMetric, is_torchmetric
    from autoaccel.task._whole_set import SCORERS, WholeSetMetric, scorer

    if direction is not None and direction not in DIRECTIONS:
        raise AutoaccelError(f"Task.direction: expected 'maximize' or 'minimize', but got {direction!r}")
    if reduction is not None and reduction not in REDUCTIONS:
        raise AutoaccelError(f"Task.metric_reduction: expected 'whole' (the default: a callable sees the whole "
                             f"validation set) or 'mean' (averaged over batches), but got {reduction!r}")
    if isinstance(metric, (Metric, WholeSetMetric, TorchMetric)):
        return metric
    if is_torchmetric(metric):
        return TorchMetric.of(metric, direction)
    if isinstance(metric, str) and (key := metric.strip().lower().replace(" ", "_").replace("-", "_")) in SCORERS:
        if direction is not None and direction != "maximize":
            raise AutoaccelError(f"Task.direction: {key} is always maximized; leave Task.direction unset")
        return scorer(key)
    if isinstance(metric, str):
        key = metric.strip().lower().replace(" ", "_").replace("-", "_")
        key = ALIASES.get(key, key)
        if (m := TOPK.match(key)) and int(m.group(1)) >= 1:
            found = accuracy_metric(int(m.group(1)))
        elif key in BUILTIN_METRICS:
            found = BUILTIN_METRICS[key]
        else:
            names = sorted([*BUILTIN_METRICS, *SCORERS])
            raise AutoaccelError(f"Task.metric: unknown metric '{metric}'{did_you_mean(metric, names)} (built in: "
                                 f"{', '.join(names)}, topK_accuracy; or pass a callable (outputs, targets) -> float with "
                                 "Task.direction, or a torchmetrics Metric)")
        if direction is not None and direction != found.direction:
            raise AutoaccelError(f"Task.direction: {found.name} is always {found.direction}d; leave Task.direction unset "
                                 f"for a built-in metric")
        return found
    if callable(metric):
        # Higher is better unless the task says otherwise (the contract before directions existed).
        if reduction == "mean":
            return custom_metric(metric, direction or "maximize")
        return WholeSetMetric(_label(metric), direction or "maximize", metric)
    raise AutoaccelError(f"Task.metric: expected a metric name, a callable (outputs, targets) -> float or a "
                         f"torchmetrics Metric, but got {type(metric).__name__}")



def finisher(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """How a metric of this name turns column totals into its value: a built-in's own, else a ratio (a
    top-k accuracy, a callable's batch-weighted mean under Task.metric_reduction="mean")."""
    key = ALIASES.get(name, name)
    return BUILTIN_METRICS[key].finish if key in BUILTIN_METRICS else ratio_of_sums


def paired_drop(base: np.ndarray, cand: np.ndarray, name: str, direction: str, seed: int = 0,
                resamples: int = 200) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the quality drop (base minus candidate, oriented so that worse is
    positive) from the two trials' rows over the *same* samples or batches, resampled together: what the
    samples' shared difficulty contributes cancels, as it does for paired accuracy."""
    finish, sign, n = finisher(name), (1.0 if direction == "maximize" else -1.0), len(base)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    drops = sign * (finish(base[idx].sum(axis=1)) - finish(cand[idx].sum(axis=1)))
    return float(np.percentile(drops, 2.5)), float(np.percentile(drops, 97.5))


@dataclass(frozen=True)
class Shown:
    """How outputs show the quality slot (``metrics["accuracy"]``, higher is better): under the metric's own
    name, at its own sign. A study remembers it (user attr ``metric``); older studies show accuracy."""

    name: str = "accuracy"
    direction: str = "maximize"

    @classmethod
    def of(cls, stored: Any) -> "Shown":
        if isinstance(stored, dict) and stored.get("direction") in DIRECTIONS:
            return cls(str(stored.get("name") or "metric"), str(stored["direction"]))
        return cls()

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "direction": self.direction}

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "maximize" else -1.0

    def value(self, quality: float) -> float:
        """The metric's own value of a quality."""
        return self.sign * quality

    def interval(self, ci: Any) -> tuple[float, float]:
        low, high = sorted((self.sign * ci[0], self.sign * ci[1]))
        return low, high

    def fmt(self, quality: float) -> str:
        value = self.value(quality)
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.4g}" if abs(value) < 1e4 else f"{value:.4e}"

    @property
    def drop_word(self) -> str:
        """What losing quality is called: an accuracy *drop*, a perplexity *rise*."""
        return f"{self.name} drop" if self.direction == "maximize" else f"{self.name} rise"
