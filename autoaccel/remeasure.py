"""Finalists re-measured side by side with the baseline, in one process, interleaved, as paired ratios.

Timings taken minutes apart on a shared machine drift (we have seen the same configuration's latency move by
60% within one process). Measuring the baseline and each candidate in alternation, in rounds whose order
reverses each time, makes drift hit both sides of every pair alike; the per-round ratios then give a paired
interval that a single number cannot.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Two-sided 95% Student t quantiles by degrees of freedom (scipy is not a dependency for one table).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(df: int) -> float:
    if df <= 0:
        return math.inf
    for key in sorted(_T95):
        if df <= key:
            return _T95[key]
    return 1.960


@dataclass(frozen=True)
class Ratio:
    """A speedup (> 1 is better than the baseline) with its 95% interval."""

    value: float
    ci95: tuple[float, float]

    @property
    def faster(self) -> bool:
        return self.ci95[0] > 1.0

    @property
    def slower(self) -> bool:
        return self.ci95[1] < 1.0

    @property
    def label(self) -> str:
        return "faster" if self.faster else ("slower" if self.slower else "no faster than baseline (within noise)")

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "ci95": list(self.ci95), "label": self.label}


def paired_ratio(base: Sequence[float], cand: Sequence[float], higher_is_better: bool = False) -> Ratio:
    """Geometric-mean speedup of ``cand`` over ``base`` from per-round pairs, with a t-interval on log ratios.

    Log ratios make 2x faster and 2x slower symmetric, and the pairing removes the drift both sides share.
    """
    if len(base) != len(cand) or not base:
        raise ValueError(f"paired_ratio needs equally many rounds on both sides, but got {len(base)} and {len(cand)}")
    return ratio_from_rounds([c / b if higher_is_better else b / c for b, c in zip(base, cand)])


def ratio_from_rounds(ratios: Sequence[float]) -> Ratio:
    """Geometric mean of per-round ratios with a Student t-interval on their logarithms."""
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return Ratio(math.exp(mean), (0.0, math.inf))
    half = t95(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return Ratio(math.exp(mean), (math.exp(mean - half), math.exp(mean + half)))


def schedule(n_configs: int, rounds: int) -> list[tuple[int, int]]:
    """(round, config) in measurement order: A B C, then C B A, ... so no config always runs first or last."""
    order = []
    for r in range(rounds):
        configs = range(n_configs) if r % 2 == 0 else reversed(range(n_configs))
        order.extend((r, c) for c in configs)
    return order


def interleave(n_configs: int, rounds: int, measure_once: Callable[[int], float]) -> list[list[float]]:
    """Call ``measure_once(config)`` in :func:`schedule` order; return samples[config][round]."""
    samples: list[list[float]] = [[math.nan] * rounds for _ in range(n_configs)]
    for r, c in schedule(n_configs, rounds):
        samples[c][r] = measure_once(c)
    return samples


def composite(ratios: Sequence[Sequence[float]]) -> list[float]:
    """Per-round geometric mean across objectives: one speed score per round, for one overall interval."""
    return [math.exp(statistics.fmean(math.log(x) for x in row)) for row in zip(*ratios)]
