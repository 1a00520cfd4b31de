"""The first trial in a fresh worker process, against the second trial of the same plan in that worker.

    python bench/worker_cold_start.py [--repeats 5]

A fresh worker pays one-off costs (torch's lazy imports on the first optimizer step: about 2 s on a CPU) that
the worker pays ahead of any trial (trial.warm_up), so that the baseline, which runs first, is not charged
for them. Each repeat starts a fresh worker and times two trials of the tiny digits task; the ratio first/second
of their training times should be near 1 (it was about 3 before the warm-up existed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from autoaccel import Pipeline  # noqa: E402
from autoaccel.trial import IsolatedRunner, TaskSource  # noqa: E402
from tiny_digits import task_source, write_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh workers to start (default 5)")
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        model = write_model(Path(folder), task_source())
        plan = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
        for _ in range(args.repeats):
            runner = IsolatedRunner(TaskSource(path=str(model)), trial_timeout=120.0)
            try:
                first = runner.run(plan, seed=0, timing_budget_s=0.02).metrics["train_time"]
                second = runner.run(plan, seed=0, timing_budget_s=0.02).metrics["train_time"]
            finally:
                runner.close()
            ratios.append(first / second)
            print(f"first {first:.3f} s  second {second:.3f} s  ratio {first / second:.2f}")
    print(f"median first/second over {args.repeats} fresh workers: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
