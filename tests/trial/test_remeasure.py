"""Interleaved re-measurement: ordering, paired ratios and their intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoaccel.trial._remeasure import Ratio, interleave, paired_ratio, ratio_from_rounds, schedule, t95


def test_schedule_alternates_and_reverses_each_round() -> None:
    assert schedule(2, 4) == [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (2, 1), (3, 1), (3, 0)]
    order = schedule(3, 2)
    assert [c for _, c in order] == [0, 1, 2, 2, 1, 0]
    # Every config is measured exactly once per round.
    for r in range(2):
        assert sorted(c for rr, c in order if rr == r) == [0, 1, 2]


def test_interleave_calls_in_schedule_order_and_files_samples_by_round() -> None:
    calls: list[int] = []

    def measure_once(config: int) -> float:
        calls.append(config)
        return float(len(calls))  # the clock "drifts": each call is slower than the last

    samples = interleave(2, 3, measure_once)
    assert calls == [0, 1, 1, 0, 0, 1]
    assert samples == [[1.0, 4.0, 5.0], [2.0, 3.0, 6.0]]


def test_interleaving_cancels_linear_drift() -> None:
    """A and B are equally fast, but the machine slows down steadily: the paired ratio must stay near 1."""
    clock = {"t": 0}

    def measure_once(config: int) -> float:
        clock["t"] += 1
        return 1.0 + 0.05 * clock["t"]

    samples = interleave(2, 8, measure_once)
    r = paired_ratio(samples[0], samples[1])
    assert r.ci95[0] <= 1.0 <= r.ci95[1]
    assert abs(r.value - 1.0) < 0.02
    assert not r.faster and not r.slower


def test_paired_ratio_detects_a_real_speedup_and_orientation() -> None:
    rng = np.random.default_rng(0)
    base = list(1.0 + 0.02 * rng.standard_normal(10))
    cand = [b / 2.0 * (1 + 0.01 * e) for b, e in zip(base, rng.standard_normal(10))]
    r = paired_ratio(base, cand)
    assert r.faster and r.label == "faster"
    assert r.value == pytest.approx(2.0, rel=0.02)
    # Throughput-like samples (higher is better) flip the orientation.
    up = paired_ratio([100.0, 101.0, 99.0], [200.0, 203.0, 197.0], higher_is_better=True)
    assert up.value == pytest.approx(2.0, rel=0.01) and up.faster


def test_ratio_interval_covers_the_true_ratio_at_about_95_percent() -> None:
    """Log-normal noise around a true 1.3x speedup: the t-interval on log ratios covers it ~95% of the time."""
    rng = np.random.default_rng(1)
    covered = 0
    reps = 2000
    for _ in range(reps):
        ratios = np.exp(math.log(1.3) + 0.1 * rng.standard_normal(7))
        r = ratio_from_rounds(list(ratios))
        covered += r.ci95[0] <= 1.3 <= r.ci95[1]
    assert 0.93 <= covered / reps <= 0.97


def test_slower_and_noise_labels() -> None:
    assert Ratio(0.5, (0.4, 0.6)).label == "slower"
    assert Ratio(1.1, (0.9, 1.3)).label == "no faster than baseline (within noise)"
    assert ratio_from_rounds([1.5]).ci95 == (0.0, math.inf)  # one round: no interval can be claimed


def test_rounds_with_unequal_load_are_discarded_and_too_few_left_is_unreliable() -> None:
    base, cand = [2.0, 2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0]
    even = [0.1] * 5
    assert paired_ratio(base, cand, base_load=even, cand_load=even).label == "faster"
    one_loaded = paired_ratio(base, cand, base_load=[1.5, 0.1, 0.1, 0.1, 0.1], cand_load=even)
    assert one_loaded.discarded == 1 and not one_loaded.unreliable
    mostly = paired_ratio(base, cand, base_load=[1.5, 1.5, 1.5, 0.1, 0.1], cand_load=even)
    assert mostly.discarded == 3 and mostly.label == "unreliable" and not mostly.faster
    assert mostly.to_json()["unreliable"].startswith("other programs' load differed")


def test_t_table() -> None:
    assert t95(6) == pytest.approx(2.447, abs=1e-3)
    assert t95(22) == pytest.approx(2.074, abs=1e-3)
    assert t95(10_000) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError, match="equally many rounds"):
        paired_ratio([1.0, 2.0], [1.0])
