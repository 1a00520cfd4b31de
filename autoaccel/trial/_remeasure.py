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

from scipy import stats

from autoaccel.measure import LoadProbe
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.trial._point import Point

# A pair of measurements whose sides saw other programs keep this many more cores busy on one side than on
# the other is not a fair comparison: it is discarded (and counted), never believed.
LOAD_GAP = 0.5
MIN_CLEAN_ROUNDS = 3
TRAIN_SAMPLES = 4096  # samples a training re-measurement times at most (a whole epoch for small data)
TRAIN_MEASURE_S = 1.0  # seconds of the baseline's training one re-measurement of training aims at
MIN_BATCHES = 4  # steps of the largest batch one training re-measurement takes at least


def train_samples(baseline: Point, plans: Sequence[Pipeline], seconds: float = TRAIN_MEASURE_S,
                  most: int = TRAIN_SAMPLES) -> int:
    """Samples each training re-measurement times: about ``seconds`` of the baseline's training at its measured
    rate (so re-measuring a heavy model costs a few seconds per round, not minutes), at least a few batches of
    the largest batch size among the plans (a larger batch must take whole steps), never more than ``most``."""
    rate = float(baseline.metrics.get("train_throughput") or 0.0)
    floor = MIN_BATCHES * max(p.batch_size for p in plans)
    if rate <= 0:
        return most
    return int(min(most, max(floor, rate * seconds)))


def t95(df: int) -> float:
    """Two-sided 95% Student t quantile."""
    return math.inf if df <= 0 else float(stats.t.ppf(0.975, df))


@dataclass(frozen=True)
class Ratio:
    """A speedup (> 1 is better than the baseline) with its 95% interval."""

    value: float
    ci95: tuple[float, float]
    discarded: int = 0  # rounds dropped because the machine's load differed between the two sides
    unreliable: str = ""  # why no claim can rest on this ratio, if none can

    @property
    def faster(self) -> bool:
        return self.ci95[0] > 1.0 and not self.unreliable

    @property
    def slower(self) -> bool:
        return self.ci95[1] < 1.0 and not self.unreliable

    @property
    def label(self) -> str:
        if self.unreliable:
            return "unreliable"
        return "faster" if self.faster else ("slower" if self.slower else "no faster than baseline (within noise)")

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"value": self.value, "ci95": list(self.ci95), "label": self.label}
        if self.discarded:
            out["discarded_rounds"] = self.discarded
        if self.unreliable:
            out["unreliable"] = self.unreliable
        return out


def paired_ratio(base: Sequence[float], cand: Sequence[float], higher_is_better: bool = False,
                 base_load: Sequence[float | None] | None = None, cand_load: Sequence[float | None] | None = None) -> Ratio:
    """Geometric-mean speedup of ``cand`` over ``base`` from per-round pairs, with a t-interval on log ratios.

    Log ratios make 2x faster and 2x slower symmetric, and the pairing removes the drift both sides share. With
    loads (cores busy with other programs during each measurement), a round whose two sides differ by more than
    LOAD_GAP is discarded; with fewer than MIN_CLEAN_ROUNDS left the ratio is marked unreliable.
    """
    if len(base) != len(cand) or not base:
        raise ValueError(f"paired_ratio needs equally many rounds on both sides, but got {len(base)} and {len(cand)}")
    ratios = [c / b if higher_is_better else b / c for b, c in zip(base, cand)]
    if base_load is None or cand_load is None:
        return ratio_from_rounds(ratios)
    clean = [r for r, lb, lc in zip(ratios, base_load, cand_load) if lb is None or lc is None or abs(lb - lc) <= LOAD_GAP]
    discarded = len(ratios) - len(clean)
    if len(clean) < min(MIN_CLEAN_ROUNDS, len(ratios)):
        whole = ratio_from_rounds(ratios)
        return Ratio(whole.value, whole.ci95, discarded,
                     f"other programs' load differed between the two sides in {discarded} of {len(ratios)} rounds")
    r = ratio_from_rounds(clean)
    return Ratio(r.value, r.ci95, discarded)


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
    order: list[tuple[int, int]] = []
    for r in range(rounds):
        configs = range(n_configs) if r % 2 == 0 else reversed(range(n_configs))
        order.extend((r, c) for c in configs)
    return order


def interleave(n_configs: int, rounds: int, measure_once: Callable[[int], float],
               loads: list[list[float | None]] | None = None) -> list[list[float]]:
    """Call ``measure_once(config)`` in :func:`schedule` order; return samples[config][round].

    With ``loads`` (an empty list), it is filled alike with the cores other programs kept busy during each call.
    """
    samples: list[list[float]] = [[math.nan] * rounds for _ in range(n_configs)]
    if loads is not None:
        loads[:] = [[None] * rounds for _ in range(n_configs)]
    for r, c in schedule(n_configs, rounds):
        probe = LoadProbe() if loads is not None else None
        samples[c][r] = measure_once(c)
        if probe is not None and loads is not None:
            loads[c][r] = probe.stop().foreign_cores
    return samples
