"""Every built-in metric against scikit-learn's (or the formula), their directions, streaming over batches, and a
lower-is-better metric with a relative budget honoured end to end and named in every output."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as sk
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Pipeline, Task, TaskWarning
from autoaccel.task._metrics import BUILTIN_METRICS, resolve_metric
from autoaccel.task._task import validate_task
from autoaccel.trial._evaluate import metric_rows, score

G = torch.Generator().manual_seed(0)
SCORES = torch.randn(200, 7, generator=G)
CLASSES = torch.randint(0, 7, (200,), generator=G)
PRED = torch.randn(200, generator=G)
TRUE = PRED + 0.5 * torch.randn(200, generator=G)


def _batched(name: str, prediction: torch.Tensor, targets: torch.Tensor, losses: list[float] | None = None) -> float:
    """The metric streamed over batches of 64 (rows concatenated), as evaluation computes it."""
    metric = resolve_metric(name)
    rows = [metric.rows(prediction[i:i + 64], targets[i:i + 64], None if losses is None else torch.tensor(losses[i // 64]))
            for i in range(0, len(targets), 64)]
    return metric.value(np.concatenate(rows).sum(axis=0))


@pytest.mark.parametrize(("name", "direction", "expected"), [
    ("accuracy", "maximize", lambda: sk.accuracy_score(CLASSES, SCORES.argmax(1))),
    ("top5_accuracy", "maximize", lambda: sk.top_k_accuracy_score(CLASSES, SCORES, k=5, labels=range(7))),
    ("top-2 accuracy", "maximize", lambda: sk.top_k_accuracy_score(CLASSES, SCORES, k=2, labels=range(7))),
])
def test_class_metrics_match_scikit_learn(name: str, direction: str, expected: object) -> None:
    assert resolve_metric(name).direction == direction
    assert _batched(name, SCORES, CLASSES) == pytest.approx(expected())  # type: ignore[operator]


@pytest.mark.parametrize(("name", "direction", "expected"), [
    ("mse", "minimize", lambda: sk.mean_squared_error(TRUE, PRED)),
    ("mae", "minimize", lambda: sk.mean_absolute_error(TRUE, PRED)),
    ("r2", "maximize", lambda: sk.r2_score(TRUE, PRED)),
])
def test_regression_metrics_match_scikit_learn(name: str, direction: str, expected: object) -> None:
    assert resolve_metric(name).direction == direction
    # (N, 1) predictions against (N,) targets: the layouts a regressor and its data commonly disagree on.
    assert _batched(name, PRED.unsqueeze(1), TRUE) == pytest.approx(expected(), rel=1e-6)  # scikit-learn: float32  # type: ignore[operator]


def test_loss_and_perplexity_weight_each_batch_by_its_size() -> None:
    targets = torch.zeros(200)
    losses = [2.0, 3.0, 1.0, 4.0]  # batches of 64, 64, 64, 8
    mean = (64 * 2.0 + 64 * 3.0 + 64 * 1.0 + 8 * 4.0) / 200
    assert _batched("loss", PRED, targets, losses) == pytest.approx(mean)
    assert _batched("perplexity", PRED, targets, losses) == pytest.approx(math.exp(mean))
    assert resolve_metric("loss").direction == resolve_metric("ppl").direction == "minimize"


def test_per_token_accuracy_skips_padding_and_keeps_a_sample_per_row() -> None:
    scores = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])  # one sequence of three tokens: predicts 1, 0, 1
    targets = torch.tensor([[1, 1, -100]])  # the third token is padding
    rows = BUILTIN_METRICS["accuracy"].rows(scores, targets, None)
    assert rows.tolist() == [[1.0, 2.0]]  # one hit of two counted tokens, in one row for the one sequence


def test_every_builtin_has_a_direction_and_a_finite_interval_around_its_value() -> None:
    for name, metric in BUILTIN_METRICS.items():
        assert metric.direction in ("maximize", "minimize"), name
        if metric.needs_loss:
            rows = np.concatenate([metric.rows(PRED[:10], TRUE[:10], torch.tensor(float(i))) for i in range(1, 20)])
        elif name.endswith("accuracy"):
            rows = metric.rows(SCORES, CLASSES, None)
        else:
            rows = metric.rows(PRED, TRUE, None)
        s = score(rows, metric, seed=0)
        assert s.ci95[0] <= s.value <= s.ci95[1] and all(map(math.isfinite, s.ci95)), name


def test_a_callable_metric_with_mean_reduction_is_averaged_over_batches_with_its_direction() -> None:
    def error_rate(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return float((outputs.argmax(1) != targets).float().mean())

    data = TensorDataset(SCORES, CLASSES)
    task = Task(model=nn.Identity, train_data=data, val_data=data, metric=error_rate, direction="minimize",
                metric_reduction="mean")
    metric = task.metric_fn()
    assert metric.name == "error_rate" and metric.sign == -1.0
    rows = metric_rows(nn.Identity(), task, Pipeline(device="cpu", batch_size=8, lr=0.1, epochs=1), metric)
    assert len(rows) >= 10  # resampled over batches for its interval
    assert metric.value(rows.sum(axis=0)) == pytest.approx(1 - sk.accuracy_score(CLASSES, SCORES.argmax(1)))


class SeqFirstLM(nn.Module):
    """pytorch/examples' layout: (seq, batch) in, (seq, batch, vocab) out."""

    def __init__(self, batch_first: bool = False) -> None:
        super().__init__()
        self.emb, self.rnn, self.out = nn.Embedding(10, 8), nn.LSTM(8, 8, batch_first=batch_first), nn.Linear(8, 10)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.emb(ids))[0])


def _lm_task(batch_first: bool) -> Task:
    ids = torch.randint(0, 10, (40, 12), generator=torch.Generator().manual_seed(1))
    data = TensorDataset(ids[:, :-1], ids[:, 1:])  # batch-first items, as a DataLoader collates them
    return Task(model=lambda: SeqFirstLM(batch_first), train_data=data, val_data=data, name="lm")


def test_a_sequence_first_model_fed_batch_first_batches_is_warned_about() -> None:
    with pytest.warns(TaskWarning, match=r"mixes samples along dim 0 \(a sequence-first \(seq, batch\) model"):
        validate_task(_lm_task(batch_first=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TaskWarning)
        validate_task(_lm_task(batch_first=True))  # the same model reading dim 0 as the batch: no warning


def test_outputs_with_the_batch_on_dim_1_are_warned_about() -> None:
    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,)))

    class Transposed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(5, x.shape[0], 3) + x.sum()

    with pytest.warns(TaskWarning, match=r"outputs of shape \(5, 3, 3\) for a batch of 3 have the batch on dim 1"):
        validate_task(Task(model=Transposed, train_data=data, val_data=data, loss=lambda o, t: o.sum(), metric="loss"))


def test_a_lower_is_better_metric_with_a_relative_budget_is_honoured_and_named(tmp_path: Path) -> None:
    from autoaccel.api import optimize

    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 4, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0])).unsqueeze(1) + 0.3 * torch.randn(240, 1, generator=g)
    task = Task(model=lambda: nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1)), train_data=TensorDataset(x[:180], y[:180]),
                val_data=TensorDataset(x[180:], y[180:]), epochs=4, batch_size=8, lr=0.01, name="reg")
    result = optimize(task, trials=5, max_accuracy_drop="2%", strategies=["batch_size"], out=str(tmp_path / "out"),
                      quiet=True, isolate=False, remeasure_rounds=3, ablation=False)
    pareto = json.loads((tmp_path / "out" / "pareto.json").read_text())
    assert pareto["metric"] == {"name": "mse", "direction": "minimize"}
    base_mse = pareto["baseline"]["metric"]["value"]
    assert base_mse == pytest.approx(-pareto["baseline"]["metrics"]["accuracy"]) and base_mse > 0
    assert pareto["max_accuracy_drop"] == pytest.approx(0.02 * base_mse)  # 2% of the baseline's MSE, in its units
    for point in result.summary.points:
        rise = -point.metrics["accuracy"] - base_mse
        assert point.accuracy_drop["value"] == pytest.approx(rise)  # the drop in quality is the rise in MSE
        assert point.feasible == (rise <= 0.02 * base_mse + 1e-12)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "mse rise" in html and ">accuracy<" not in html and "accuracy drop" not in html


def test_a_model_random_in_eval_mode_is_not_taken_for_one_mixing_samples() -> None:
    class Sampling(nn.Module):  # pytorch/examples' VAE samples its latent in eval mode too
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mu = self.lin(x)
            return mu + torch.randn_like(mu), mu

    data = [x for x in torch.randn(8, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TaskWarning)
        task = validate_task(Task(model=Sampling, train_data=data, val_data=data,
                                  loss=lambda out, x: nn.functional.mse_loss(out[0], x)))
    assert task.kind == "generative"


def test_the_command_line_prints_the_warning_as_one_line(tmp_path: Path, capsys: object) -> None:
    from autoaccel.cli import main

    model = tmp_path / "lm.py"
    model.write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\nfrom autoaccel import Task\n\n"
        "class LM(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.emb, self.rnn, self.out = nn.Embedding(10, 8), nn.LSTM(8, 8), nn.Linear(8, 10)\n"
        "    def forward(self, ids):\n"
        "        return self.out(self.rnn(self.emb(ids))[0])\n\n"
        "ids = torch.randint(0, 10, (40, 12), generator=torch.Generator().manual_seed(1))\n"
        "task = Task(model=LM, train_data=TensorDataset(ids[:, :-1], ids[:, 1:]), val_data=TensorDataset(ids[:, :-1], ids[:, 1:]),\n"
        "            epochs=1, batch_size=8, name='seqfirst')\n", encoding="utf-8")
    assert main(["optimize", str(model), "--trials", "1", "--strategies", "batch_size", "--out", str(tmp_path / "o"),
                 "--no-isolation", "--remeasure-rounds", "0", "--no-ablation"]) == 0
    err = capsys.readouterr().err.splitlines()  # type: ignore[attr-defined]
    warned = [line for line in err if "mixes samples" in line]
    assert len(warned) == 1 and warned[0].startswith("autoaccel: warning: Task.model: a sample's outputs change")


def test_the_drop_of_any_metric_gets_a_paired_interval_over_the_same_samples() -> None:
    from autoaccel.task._metrics import paired_drop

    mse = resolve_metric("mse")
    hard = torch.linspace(0.1, 3.0, 100)  # samples of very different difficulty
    base = mse.rows(hard, torch.zeros(100), None)
    cand = mse.rows(hard * 1.05, torch.zeros(100), None)  # 5% more error on every sample alike
    drop = mse.sign * (mse.value(base.sum(0)) - mse.value(cand.sum(0)))  # worse is positive: the MSE rose
    lo, hi = paired_drop(base, cand, "mse", "minimize")
    assert 0 < lo <= drop <= hi  # the rise is clear when the samples are paired ...
    b, c = score(base, mse), score(cand, mse)
    half = math.hypot((b.ci95[1] - b.ci95[0]) / 2, (c.ci95[1] - c.ci95[0]) / 2)
    assert drop - half < 0 < drop + half  # ... and within noise if the two intervals were taken as independent
