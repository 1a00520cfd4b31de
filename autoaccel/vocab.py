"""The words every part of autoaccel shares, with nothing heavy behind them: the command line, the options and
the outputs import them without importing torch or the trial runner (``autoaccel --help`` stays quick)."""

from __future__ import annotations

# Metrics every trial reports; the objectives are chosen among them. True = higher is better. "accuracy" is the
# quality slot: the task's metric oriented so that higher is better (Metric.sign), whatever the metric is; every
# output shows it under the metric's own name and sign (metrics.Shown).
METRICS: dict[str, bool] = {
    "accuracy": True,
    "train_time": False,
    "train_throughput": True,
    "latency": False,
    "throughput": True,
    "memory": False,
}
OBJECTIVES = tuple(METRICS)
SPEED_OBJECTIVES = ("train_time", "train_throughput", "latency", "throughput", "memory")
REMEASURED = ("train_time", "train_throughput", "latency", "throughput")
TRAINING_OBJECTIVES = ("train_time", "train_throughput")
# What a search looks at (strategy.MODES maps each to the phases its strategies act in).
MODE_NAMES = ("train", "inference", "both")
