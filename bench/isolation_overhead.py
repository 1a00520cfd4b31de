"""What does running every trial in a worker process cost? The digits study isolated vs in-process.

    python bench/isolation_overhead.py [--trials 6] [--reps 2]

Both sides run the same trials (random sampler, same seed: the same configurations in the same order),
alternating isolated / in-process so drift hits both. Prints the ratio of total wall time (goal: at most 1.05
for trials of 10 s or more).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import autoaccel

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits.py"


def one(isolate: bool, trials: int, seed: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        # The strategies of the README's demo: compile's minute-long compilations would swamp what is measured.
        result = autoaccel.optimize(str(EXAMPLE), trials=trials, out=out, target="cpu", sampler="random", seed=seed,
                                    isolate=isolate, quiet=True, remeasure_rounds=0, ablation=False, mode="train",
                                    strategies="batch_size,dataloader,precision,scheduler")
        wall = time.perf_counter() - t0
        seconds = [t.user_attrs.get("seconds", 0.0) for t in result.study.trials]
    return wall, statistics.fmean(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    iso, inproc, trial_s = [], [], []
    for rep in range(args.reps):
        order = (True, False) if rep % 2 == 0 else (False, True)
        for isolate in order:
            wall, mean_trial = one(isolate, args.trials, seed=0)
            (iso if isolate else inproc).append(wall)
            trial_s.append(mean_trial)
            print(f"rep {rep}: {'isolated  ' if isolate else 'in-process'} {wall:7.1f} s  (mean trial {mean_trial:.1f} s)")
    ratio = statistics.fmean(iso) / statistics.fmean(inproc)
    print(f"mean trial length {statistics.fmean(trial_s):.1f} s; isolated {statistics.fmean(iso):.1f} s vs "
          f"in-process {statistics.fmean(inproc):.1f} s: ratio {ratio:.3f}  (goal: <= 1.05 for trials of 10 s or more)")


if __name__ == "__main__":
    main()
