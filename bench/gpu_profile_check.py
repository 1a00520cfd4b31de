"""One trial of a torchvision ResNet on synthetic data on a GPU: prints its training profile (CUDA-event timed
parts) next to its train_time, so a profile that does not add up, or a CUDA-path error, shows at once.

    python bench/gpu_profile_check.py [--arch resnet18]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import load_task
from autoaccel.trial import describe, run_trial

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="resnet18")
    args = parser.parse_args()
    os.environ["AUTOACCEL_RESNET"] = args.arch
    task = load_task(ROOT / "examples" / "resnet_synthetic.py")
    plan = Pipeline(device="cuda", batch_size=task.batch_size, lr=task.lr, epochs=task.epochs)
    result = run_trial(task, plan, 0, timing_budget_s=0.3)
    profile = result.details["profile"]
    parts = {k: round(v, 3) for k, v in profile.items()}
    print(f"{torch.cuda.get_device_name()} {args.arch}: train_time {result.metrics['train_time']:.2f} s, "
          f"profile {parts} (sum of training parts {sum(v for k, v in profile.items() if k != 'evaluation'):.2f} s)")
    print("  " + describe(profile))


if __name__ == "__main__":
    main()
