"""evaluate.py and metrics.py: Wilson intervals, score() (Wilson for accuracy, bootstrap otherwise), predict()."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from autoaccel import AutoaccelError, Pipeline
from autoaccel.evaluate import latency_input, peak_memory_mb, predict, score, wilson
from autoaccel.metrics import accuracy, resolve_metric
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
    s = score(outputs, targets, accuracy)
    assert s.value == pytest.approx(0.8)
    assert s.ci95 == pytest.approx(wilson(8, 10))


def mean_first_logit(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """A custom metric: not accuracy, so score() must bootstrap it."""
    return float(outputs[:, 0].mean())


def test_score_bootstraps_a_custom_metric() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 400
    outputs = torch.randn(n, 2, generator=gen) * 2.0 + 5.0
    targets = torch.zeros(n, dtype=torch.long)
    s = score(outputs, targets, mean_first_logit, seed=3)
    assert s.value == pytest.approx(float(outputs[:, 0].mean()))
    lo, hi = s.ci95
    assert lo < s.value < hi
    # The bootstrap interval of a mean is close to the normal one: 2 * 1.96 * sd / sqrt(n).
    expected = 2 * 1.96 * float(outputs[:, 0].std()) / math.sqrt(n)
    assert hi - lo == pytest.approx(expected, rel=0.25)
    assert score(outputs, targets, mean_first_logit, seed=3) == s, "seeded: reproducible"


def exact_match(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy, but not the `accuracy` object: score() bootstraps it instead of using Wilson."""
    return float((outputs.argmax(1) == targets).float().mean())


def test_score_bootstrap_resamples_outputs_with_their_own_targets() -> None:
    # Every output is right for its own target: a paired resample is always all right; an unpaired one would not be.
    targets = torch.arange(50) % 5
    outputs = torch.eye(5)[targets]
    s = score(outputs, targets, exact_match, seed=0)
    assert s.value == 1.0 and s.ci95 == (1.0, 1.0)


def test_score_bootstrap_of_a_single_sample_is_that_sample() -> None:
    s = score(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), mean_first_logit)
    assert s.value == 2.0 and s.ci95 == (2.0, 2.0)


def test_resolve_metric() -> None:
    assert resolve_metric("accuracy") is accuracy
    assert resolve_metric(mean_first_logit) is mean_first_logit
    with pytest.raises(AutoaccelError, match=r"^Task\.metric: unknown metric 'acuracy'; did you mean 'accuracy'\?"):
        resolve_metric("acuracy")
    with pytest.raises(AutoaccelError, match=r"^Task\.metric: expected a metric name or a callable .*but got int"):
        resolve_metric(3)  # type: ignore[arg-type]


def test_accuracy_needs_class_scores() -> None:
    assert accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    with pytest.raises(ValueError, match=r"shape \(N, C\).*\(3,\)"):
        accuracy(torch.zeros(3), torch.zeros(3))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_predict_returns_float32_outputs_in_dataset_order(precision: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    data = TensorDataset(torch.randn(37, 4), torch.arange(37) % 3)
    plan = with_params(Pipeline(device="cpu", batch_size=8, lr=0.1, epochs=1, eval_batch_size=10), {"precision.dtype": precision})
    assert (plan.section("precision") is None) == (precision == "fp32")  # bf16 and fp16 predict under autocast
    outputs, targets = predict(model, data, plan)
    assert outputs.dtype == torch.float32 and outputs.shape == (37, 3)
    assert torch.equal(targets, torch.arange(37) % 3)
    with torch.no_grad():
        exact = model(data.tensors[0])
    assert torch.allclose(outputs, exact, atol=0.05 if precision != "fp32" else 1e-6)
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
    code = ("from autoaccel.evaluate import reset_peak_memory, peak_memory_mb; reset_peak_memory('cuda:0');"
            "print(peak_memory_mb('cuda:0'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == 0.0
