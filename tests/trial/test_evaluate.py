"""evaluate.py and metrics.py: Wilson intervals, score() (Wilson for accuracy, bootstrap otherwise), metric_rows()."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from autoaccel import AutoaccelError, Pipeline, Task
from autoaccel.task._metrics import accuracy, resolve_metric
from autoaccel.trial._evaluate import latency_input, metric_rows, peak_memory_mb, score, wilson
from tiny_digits import with_params

Z = 1.959964


def test_wilson_closed_forms_at_the_edges() -> None:
    # With 0 successes the upper bound is z^2 / (n + z^2); with n successes the lower bound is n / (n + z^2).
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(Z**2 / (10 + Z**2))
    lo, hi = wilson(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(10 / (10 + Z**2))
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("k", "n"), [(8, 10), (1, 3), (50, 100), (997, 1000)])
def test_wilson_bounds_solve_the_score_equation(k: int, n: int) -> None:
    # The Wilson interval is {p : |k/n - p| <= z sqrt(p(1-p)/n)}; its bounds make that an equality.
    p_hat = k / n
    for p in wilson(k, n):
        assert (p_hat - p) ** 2 == pytest.approx(Z**2 * p * (1 - p) / n, rel=1e-6, abs=1e-12)


def test_wilson_known_value_and_symmetry() -> None:
    lo, hi = wilson(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    lo2, hi2 = wilson(2, 10)
    assert (lo2, hi2) == pytest.approx((1 - hi, 1 - lo))


def test_score_accuracy_uses_wilson() -> None:
    outputs = torch.eye(10)[torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 0, 0])]  # 8 of 10 right
    targets = torch.arange(10)
    s = score(accuracy.rows(outputs, targets, None), accuracy)
    assert s.value == pytest.approx(0.8)
    assert s.ci95 == pytest.approx(wilson(8, 10))


def test_score_bootstraps_a_mean_over_samples() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 400
    errors = torch.randn(n, generator=gen) * 2.0 + 5.0
    mae = resolve_metric("mae")
    rows = mae.rows(errors, torch.zeros(n), None)
    s = score(rows, mae, seed=3)
    assert s.value == pytest.approx(float(errors.abs().mean()))
    lo, hi = s.ci95
    assert lo < s.value < hi
    # The bootstrap interval of a mean is close to the normal one: 2 * 1.96 * sd / sqrt(n).
    expected = 2 * 1.96 * float(errors.abs().std()) / math.sqrt(n)
    assert hi - lo == pytest.approx(expected, rel=0.25)
    assert score(rows, mae, seed=3) == s, "seeded: reproducible"


def test_score_bootstrap_resamples_outputs_with_their_own_targets() -> None:
    # Every output equals its own target: a paired resample always has no error; an unpaired one would not.
    targets = torch.arange(50).float() % 5
    mse = resolve_metric("mse")
    s = score(mse.rows(targets.clone(), targets, None), mse, seed=0)
    assert s.value == 0.0 and s.ci95 == (0.0, 0.0)


def test_score_bootstrap_of_a_single_row_is_that_row() -> None:
    mse = resolve_metric("mse")
    s = score(mse.rows(torch.tensor([2.0]), torch.tensor([0.0]), None), mse)
    assert s.value == 4.0 and s.ci95 == (4.0, 4.0)


def mean_first_logit(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """A custom metric: averaged over batches, weighted by their size."""
    return float(outputs[:, 0].mean())


def test_resolve_metric() -> None:
    assert resolve_metric("accuracy") is accuracy
    custom = resolve_metric(mean_first_logit)
    assert custom.name == "mean_first_logit" and custom.direction == "maximize"
    assert resolve_metric(mean_first_logit, "minimize").sign == -1.0
    with pytest.raises(AutoaccelError, match=r"^Task\.metric: unknown metric 'acuracy'; did you mean 'accuracy'\?"):
        resolve_metric("acuracy")
    with pytest.raises(AutoaccelError, match=r"^Task\.metric: expected a metric name, a callable .*but got int"):
        resolve_metric(3)  # type: ignore[arg-type]
    with pytest.raises(AutoaccelError, match=r"^Task\.direction: expected 'maximize' or 'minimize', but got 'up'"):
        resolve_metric(mean_first_logit, "up")
    with pytest.raises(AutoaccelError, match=r"^Task\.direction: perplexity is always minimized"):
        resolve_metric("perplexity", "maximize")


def test_accuracy_needs_class_scores() -> None:
    assert accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    with pytest.raises(ValueError, match=r"\(N, C\).*\(3,\)"):
        accuracy(torch.zeros(3), torch.zeros(3))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_metric_rows_stream_the_validation_set_in_order(precision: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    data = TensorDataset(torch.randn(37, 4), torch.arange(37) % 3)
    task = Task(model=lambda: model, train_data=data, val_data=data)
    plan = with_params(Pipeline(device="cpu", batch_size=8, lr=0.1, epochs=1, eval_batch_size=10), {"precision.dtype": precision})
    assert (plan.section("precision") is None) == (precision == "fp32")  # bf16 and fp16 predict under autocast
    rows = metric_rows(model, task, plan, accuracy)
    assert rows.shape == (37, 2)  # one (hit, 1) row per sample: the outputs themselves are never all held
    with torch.no_grad():
        exact = (model(data.tensors[0]).argmax(1) == data.tensors[1]).double().numpy()
    if precision == "fp32":
        assert (rows[:, 0] == exact).all()
    assert not model.training


def test_latency_input_is_a_batch_of_one() -> None:
    data = TensorDataset(torch.randn(5, 4), torch.zeros(5))
    assert latency_input(data, None).shape == (1, 4)
    assert latency_input(data, torch.zeros(4)).shape == (1, 4)
    assert latency_input(data, torch.zeros(1, 4)).shape == (1, 4)


def test_peak_memory_on_cpu_is_the_process_peak_in_mb() -> None:
    assert 10 < peak_memory_mb("cpu") < 1e6


@pytest.mark.gpu
def test_peak_memory_resets_in_a_process_that_has_not_touched_cuda() -> None:
    # A trial worker's first CUDA call can be this reset; before the fix it failed with "Invalid device argument".
    import subprocess
    import sys
    code = ("from autoaccel.trial._evaluate import reset_peak_memory, peak_memory_mb; reset_peak_memory('cuda:0');"
            "print(peak_memory_mb('cuda:0'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == 0.0
