"""What the paired bootstrap of whole-set and torchmetrics metrics costs on a 10,000-sample validation set.

    python bench/metric_bootstrap.py [--samples 10000] [--classes 10]

Each row evaluates an identity model over precomputed class scores (so the figure is the metric's cost, not a
model's), in batches of 256, as a trial does: the value, its interval and the 200 replicates that pair the drop
between two trials. The first row (accuracy, streamed rows and Wilson's interval, no bootstrap) is the reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from autoaccel import Pipeline, Task  # noqa: E402
from autoaccel.trial import evaluate


def balanced_accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """A user's callable: the mean of per-class recalls."""
    predicted = outputs.argmax(dim=1)
    return float(torch.stack([(predicted[targets == c] == c).float().mean() for c in targets.unique()]).mean())


def cases(classes: int) -> list[tuple[str, Any, bool]]:
    out: list[tuple[str, Any, bool]] = [("accuracy (rows, Wilson)", "accuracy", False),
                                        ("callable balanced_accuracy", balanced_accuracy, False),
                                        ("named macro_f1 (scikit-learn)", "macro_f1", False),
                                        ("named auroc (scikit-learn)", "auroc", False)]
    try:
        import torchmetrics
    except ImportError:
        return out
    out += [("torchmetrics BinaryF1Score (streamed, Poisson)", torchmetrics.classification.BinaryF1Score(), True),
            (f"torchmetrics MulticlassF1Score({classes}) (streamed)",
             torchmetrics.classification.MulticlassF1Score(num_classes=classes, average="macro"), False),
            ("torchmetrics BinaryAUROC (list state, resampled)", torchmetrics.classification.BinaryAUROC(), True)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, args.classes, (args.samples,), generator=g)
    scores = torch.randn(args.samples, args.classes, generator=g) + 2.0 * nn.functional.one_hot(targets, args.classes)
    binary = (targets == 1).long()
    logit = scores[:, 1] - scores[:, 0]
    plan = Pipeline(device="cpu", batch_size=256, lr=0.1, epochs=1, eval_batch_size=256)
    print(f"{args.samples} validation samples, {args.classes} classes, batches of 256; median of {args.repeats} runs")
    for label, metric, is_binary in cases(args.classes):
        data = TensorDataset(logit, binary) if is_binary else TensorDataset(scores, targets)
        task = Task(model=nn.Identity, train_data=data, val_data=data, metric=metric)
        resolved = task.metric_fn()
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            got = evaluate(nn.Identity(), task, plan, resolved)
            seconds.append(time.perf_counter() - started)
        print(f"  {label:<52} {statistics.median(seconds):6.2f} s   value {got.value:.4f} "
              f"[{got.ci95[0]:.4f}, {got.ci95[1]:.4f}]")


if __name__ == "__main__":
    main()
