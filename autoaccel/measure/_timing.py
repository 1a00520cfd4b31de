"""One timing harness for every speed figure: warm-up until steady, device sync, repeats until the 95%
confidence interval of the median is tight (or a time budget is spent), and a noise flag."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from scipy import stats

# Relative half-width of the median's CI at which we stop repeating, and the one above which we call it noisy.
TIGHT = 0.02
NOISY = 0.10


@dataclass(frozen=True)
class Measurement:
    """Seconds per call: the median with its 95% CI, how many samples, the first call, and a noise flag."""

    median: float
    ci95: tuple[float, float]
    n: int
    first_call: float
    noisy: bool

    @property
    def rel_halfwidth(self) -> float:
        return (self.ci95[1] - self.ci95[0]) / (2 * self.median) if self.median > 0 else math.inf

    def rate(self, items: int) -> tuple[float, tuple[float, float]]:
        """Items per second for ``items`` per call, with its interval (the bounds swap under 1/x)."""
        lo, hi = self.ci95
        return items / self.median, (items / hi if hi > 0 else 0.0, items / lo if lo > 0 else math.inf)


def _trim_count(n: int, alpha: float) -> int:
    """The largest j with P(Bin(n, 1/2) <= j - 1) <= alpha/2: how many order statistics each tail may lose.

    Exact up to 200 samples (one running sum of binomial terms in floating point), the normal approximation
    with continuity correction beyond, where the two agree to within one rank.
    """
    if n > 200:
        z = float(stats.norm.isf(alpha / 2))  # two-sided normal quantile: 1.959964 at alpha = 0.05
        return max(0, int(math.floor(n / 2 - z * math.sqrt(n) / 2 - 0.5)) + 1)
    term = 0.5**n  # P(X = 0)
    cdf, j = term, 0
    while j + 1 <= n // 2 and cdf <= alpha / 2:
        j += 1
        term *= (n - j + 1) / j  # P(X = j) from P(X = j - 1)
        cdf += term
    return j


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (needs no normality, robust to outliers).

    With n sorted samples, [x_(j), x_(n-j+1)] covers the median with probability 1 - 2 P(Bin(n, 1/2) < j);
    we take the largest j that keeps that at or above ``confidence``. Under 6 samples no j qualifies at 95%,
    and the full range is returned.
    """
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        raise ValueError("median_ci needs at least one sample")
    j = _trim_count(n, 1 - confidence)
    # j is now the number of order statistics we may trim from each end (1-based rank j+1 ... n-j).
    if j == 0:
        return xs[0], xs[-1]
    return xs[j - 1], xs[n - j]


def summarize(samples: Sequence[float], first_call: float = 0.0) -> Measurement:
    med = statistics.median(samples)
    lo, hi = median_ci(samples)
    noisy = med <= 0 or (hi - lo) / (2 * med) > NOISY
    return Measurement(med, (lo, hi), len(samples), first_call, noisy)


class Clock:
    """Times one call of ``fn`` in seconds; waits for the device so queued GPU work is counted."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda") and torch.cuda.is_available()
        self.device = device

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        elif self.device == "mps":
            torch.mps.synchronize()

    def time(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            # CUDA events time the GPU's own work without host-side scheduling jitter.
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t0


def measure(
    fn: Callable[[], object],
    device: str = "cpu",
    *,
    min_repeats: int = 10,
    max_repeats: int = 1000,
    budget_s: float = 2.0,
    warmup_budget_s: float = 1.0,
) -> Measurement:
    """Time ``fn`` to a steady-state median with a 95% CI.

    The first call (compilation, lazy init, cache fills) is reported separately and excluded. Warm-up then runs
    until three consecutive calls agree within 10% of each other's median (or its budget is spent), so a model
    that needs many calls to settle (autotuning, allocator growth) is not timed while settling. Samples are then
    taken until the CI's relative half-width is under TIGHT, or ``budget_s`` or ``max_repeats`` is reached.
    """
    clock = Clock(device)
    first = clock.time(fn)
    warm: list[float] = []
    t_end = time.perf_counter() + warmup_budget_s
    while time.perf_counter() < t_end:
        warm.append(clock.time(fn))
        if len(warm) >= 3:
            last = warm[-3:]
            med = statistics.median(last)
            if med > 0 and (max(last) - min(last)) / med < 0.10:
                break
    samples: list[float] = []
    t_end = time.perf_counter() + budget_s
    while len(samples) < max_repeats:
        samples.append(clock.time(fn))
        if len(samples) >= min_repeats:
            if time.perf_counter() >= t_end:
                break
            # Checking the CI costs a sort; do it every few samples only.
            if len(samples) % 5 == 0 and summarize(samples).rel_halfwidth < TIGHT:
                break
    return summarize(samples, first)
