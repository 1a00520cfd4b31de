"""Scoring a validation set: the metric streamed over batches (what autoaccel does) against the previous way,
every output held and a callable metric re-run on all of them for each of 200 bootstrap resamples.

A language-model-like workload: N validation sequences of T tokens over a vocabulary of V, scored by a
callable cross-entropy (a user's metric). Both sides run in one process on the same outputs; the script prints
seconds and the megabytes of outputs each holds, and the ratios.

    python bench/metric_streaming.py [--n 2000] [--tokens 35] [--vocab 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import stats

from autoaccel.task import custom_metric
from autoaccel.trial import score


def nll(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(torch.nn.functional.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=35)
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, args.tokens, args.vocab, generator=g),
                torch.randint(0, args.vocab, (args.batch, args.tokens), generator=g)) for _ in range(args.n // args.batch)]

    # Before: every output held, the metric re-run on a resample of all of them 200 times.
    t0 = time.perf_counter()
    outputs, targets = torch.cat([o for o, _ in batches]), torch.cat([t for _, t in batches])
    held_mb = outputs.numel() * 4 / 2**20
    value = nll(outputs, targets)
    res = stats.bootstrap((np.arange(len(targets)),), lambda idx: nll(outputs[torch.as_tensor(idx)], targets[torch.as_tensor(idx)]),
                          n_resamples=200, batch=1, vectorized=False, method="percentile", rng=np.random.default_rng(0))
    before = time.perf_counter() - t0

    # Now: one row per batch, the bootstrap over rows.
    t0 = time.perf_counter()
    metric = custom_metric(nll, "minimize")
    rows = np.concatenate([metric.rows(o, t, None) for o, t in batches])
    now = score(rows, metric, seed=0)
    after = time.perf_counter() - t0
    batch_mb = batches[0][0].numel() * 4 / 2**20

    print(f"{args.n} sequences x {args.tokens} tokens x {args.vocab} classes, batches of {args.batch}")
    print(f"held in memory: {held_mb:,.0f} MB of outputs before, {batch_mb:,.0f} MB (one batch) now: {held_mb / batch_mb:.0f}x less")
    print(f"seconds: {before:.2f} before, {after:.2f} now: {before / after:.1f}x faster")
    print(f"value {value:.4f} [{res.confidence_interval.low:.4f}, {res.confidence_interval.high:.4f}] before; "
          f"{now.value:.4f} [{now.ci95[0]:.4f}, {now.ci95[1]:.4f}] now (over {len(rows)} batches)")


if __name__ == "__main__":
    main()
