"""measure.py: the median's confidence interval, the noise flag, and the timing harness."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from autoaccel.measure._timing import NOISY, Measurement, measure, median_ci, summarize


def coverage(n: int, sets: int, seed: int) -> float:
    """Fraction of ``sets`` samples of size ``n`` from Exp(1) whose median_ci covers the true median ln 2."""
    rng = np.random.default_rng(seed)
    true_median = math.log(2)
    hits = 0
    for _ in range(sets):
        lo, hi = median_ci(rng.exponential(1.0, n).tolist())
        hits += lo <= true_median <= hi
    return hits / sets


@pytest.mark.parametrize("n", [10, 20, 50, 100])
def test_median_ci_covers_the_true_median_at_least_95_percent_of_the_time(n: int) -> None:
    # A skewed distribution on purpose: the interval is distribution-free, it must not assume normality.
    assert coverage(n, sets=2000, seed=n) >= 0.93


def test_median_ci_is_not_needlessly_wide() -> None:
    # The largest trim that keeps >= 95%: with n=20 that is [x(6), x(15)] (coverage 95.86%); one more trim
    # would drop to 88.5%. So the empirical coverage must stay well below 99%.
    assert coverage(20, sets=2000, seed=1) < 0.99


@pytest.mark.parametrize(
    ("n", "lo_rank", "hi_rank"),
    [
        (6, 1, 6),  # 96.9%: no trim possible yet
        (10, 2, 9),  # 97.9% (trimming to x(3)..x(8) would give 89.1%)
        (20, 6, 15),  # 95.9%
        (30, 10, 21),  # 95.7%
        (100, 40, 61),  # 96.5%
    ],
)
def test_median_ci_uses_the_textbook_order_statistics(n: int, lo_rank: int, hi_rank: int) -> None:
    samples = [float(i) for i in range(1, n + 1)]  # x(k) == k
    assert median_ci(list(reversed(samples))) == (lo_rank, hi_rank)


def test_median_ci_small_samples_use_the_full_range() -> None:
    assert median_ci([3.0]) == (3.0, 3.0)
    assert median_ci([5.0, 1.0, 3.0, 2.0, 4.0]) == (1.0, 5.0)
    with pytest.raises(ValueError, match="at least one sample"):
        median_ci([])


def test_median_ci_of_the_largest_sample_count_measure_takes_brackets_the_median() -> None:
    samples = np.random.default_rng(0).random(1000).tolist()
    lo, hi = median_ci(samples)
    ordered = sorted(samples)
    assert lo in ordered and hi in ordered and lo < statistics.median(samples) < hi
    # The textbook ranks for n = 1000: about n/2 -+ 1.96 sqrt(n)/2 order statistics away, 31 each side.
    assert 25 <= ordered.index(hi) - ordered.index(lo) <= 70


def test_summarize_tight_samples_are_not_noisy() -> None:
    m = summarize([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0], first_call=5.0)
    assert m.median == 1.0 and m.n == 10 and m.first_call == 5.0
    assert m.ci95 == (0.99, 1.01)
    assert not m.noisy
    assert m.rel_halfwidth == pytest.approx(0.01)


def test_summarize_spread_samples_are_flagged_noisy() -> None:
    samples = [1.0, 1.5, 0.6, 1.2, 0.8, 1.4, 0.7, 1.1, 0.9, 1.3]
    m = summarize(samples)
    assert m.median == statistics.median(samples)
    assert m.rel_halfwidth > NOISY
    assert m.noisy


def test_summarize_zero_median_is_noisy() -> None:
    assert summarize([0.0] * 10).noisy


def test_rate_inverts_seconds_and_swaps_the_bounds() -> None:
    m = Measurement(median=0.5, ci95=(0.25, 1.0), n=10, first_call=0.0, noisy=True)
    rate, (lo, hi) = m.rate(100)
    assert rate == 200.0 and (lo, hi) == (100.0, 400.0)


def test_measure_reports_the_first_call_apart_and_times_the_steady_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a synthetic clock (the machine's load cannot move it): a slow first call (lazy init) is reported apart,
    warm-up settles, and the median is the steady calls' time."""
    import types

    from autoaccel.measure import _timing

    now = [0.0]
    monkeypatch.setattr(_timing, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    calls = []

    def fn() -> None:
        calls.append(1)
        now[0] += 0.05 if len(calls) == 1 else 0.002  # the first call is slow

    m = measure(fn, "cpu", min_repeats=10, budget_s=0.2, warmup_budget_s=0.05)
    assert m.first_call == pytest.approx(0.05)
    assert m.median == pytest.approx(0.002) and m.ci95[0] <= m.median <= m.ci95[1]
    assert m.n >= 10 and len(calls) >= m.n + 1