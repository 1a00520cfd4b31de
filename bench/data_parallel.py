"""Data-parallel training against one process, measured side by side: the example's recipe trained on a fixed
slice of samples by one process, and by world_size DDP ranks (the same global batch split among them), rounds
interleaved (autoaccel's own re-measurement). Prints each side's median seconds and the ratio; the launch of the
ranks (a Python and a torch import each) is printed apart, as the search counts it apart from training time.

    python bench/data_parallel.py [--model examples/digits.py] [--world 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from autoaccel.plugins.data_parallel import DataParallelStrategy
from autoaccel.search import base_pipeline
from autoaccel.task import autoaccel_detect_target, load_task
from autoaccel.trial import TrainingJob, launch_training, remeasure_plans

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "examples" / "digits.py"))
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    task = load_task(args.model)
    target = autoaccel_detect_target("cpu")
    base = base_pipeline(task, target, "train")
    ddp = DataParallelStrategy().apply(base, {"world_size": args.world, "batch": "split"})
    timings = remeasure_plans(task, [base, ddp], ("train_time",), args.rounds, task.seed)
    one, many = (statistics.median(r) for r in timings.seconds["train_time"])
    job = TrainingJob(task, ddp, task.seed, max_samples=256)
    started = time.perf_counter()
    stats = launch_training(job, job.build())
    assert stats is not None
    launch = time.perf_counter() - started - stats.seconds
    print(f"{target.name}, {target.cores} cores; {task.name}: batch {base.batch_size}, "
          f"{len(task.train_data)} training samples; {args.rounds} interleaved rounds")
    print(f"1 process: {one:.3f} s; {args.world} DDP ranks (gloo, {ddp.batch_size} samples each per step): {many:.3f} s")
    print(f"ratio (1 process / {args.world} ranks): {one / many:.2f}x "
          f"({'faster' if one > many else 'slower'} with data parallelism); launching the ranks: {launch:.1f} s once per run")


if __name__ == "__main__":
    main()
