"""The search against an exhaustive oracle, on one GPU, in one run.

    python bench/gpu_oracle.py [--arch resnet50] [--out bench/results]

1. Oracle: every combination of precision x batch size x memory format x compile is trained for one epoch
   of synthetic ImageNet-shaped data, timed by the same trial code autoaccel uses (training throughput).
2. Search: autoaccel's TPE search over exactly that space, with at most a quarter of the grid's trials.
3. Prints the search's best throughput over the oracle's best (goal >= 0.95), trials used over the grid's
   size (goal <= 0.25), and the wall time of each; writes the table to bench/results/gpu_oracle_<device>.txt.

`--no-compile` halves the grid (24 combinations) when device time is short.
`--device cpu --smoke` runs a tiny model on a 2x2x1x1 grid to check the script itself without a GPU.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

import autoaccel  # noqa: E402
from autoaccel.plugin._pipeline import Pipeline  # noqa: E402
from autoaccel.plugin._registry import default_registry  # noqa: E402
from autoaccel.plugin._strategy import apply_all  # noqa: E402
from autoaccel.task import load_task
from autoaccel.trial import run_trial

SMOKE_TASK = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset
from autoaccel import Task
g = torch.Generator().manual_seed(0)
x = torch.randn(512, 3, 16, 16, generator=g); y = torch.randint(0, 10, (512,), generator=g)
def model():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
task = Task(model=model, train_data=TensorDataset(x, y), val_data=TensorDataset(x[:128], y[:128]), epochs=1, batch_size=32, lr=0.05, name="smoke")
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny model and grid (checks the script on a CPU)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true",
                        help="leave torch.compile out of the grid (each compiled ResNet-50 trial costs about a minute)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench/gpu_oracle.py: no CUDA device here; run it on a GPU machine (or --device cpu --smoke)")
    if args.smoke:
        path = Path(tempfile.mkdtemp()) / "smoke.py"
        path.write_text(SMOKE_TASK)
        grid = {"precision.dtype": ["fp32", "bf16"], "batch_size.size": [32, 64], "memory_format.format": ["contiguous"],
                "compile.mode": ["off"]}
    else:
        os.environ["AUTOACCEL_RESNET"] = args.arch
        path = ROOT / "examples" / "resnet_synthetic.py"
        grid = {"precision.dtype": ["fp32", "tf32", "bf16", "fp16"], "batch_size.size": [64, 128, 256],
                "memory_format.format": ["contiguous", "channels_last"],
                "compile.mode": ["off"] if args.no_compile else ["off", "default"]}
    task = load_task(path)
    registry = default_registry()
    strategies = [registry.get(n) for n in ("precision", "batch_size", "memory_format", "compile")]
    base = Pipeline(device=args.device, batch_size=task.batch_size, lr=task.lr, epochs=task.epochs)
    names = list(grid)
    combos = list(itertools.product(*grid.values()))
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    lines = [f"gpu_oracle on {device_name}, torch {torch.__version__}, task {task.name}, grid {len(combos)} combinations"]
    t0 = time.perf_counter()
    oracle = []
    for combo in combos:
        params = dict(zip(names, combo))
        plan = apply_all(strategies, base, params)
        try:
            r = run_trial(task, plan, args.seed, timing_budget_s=0.3)
            tp = r.metrics["train_throughput"]
        except autoaccel.TrialFailure as exc:
            tp = 0.0
            params["failed"] = exc.reason[:60]
        oracle.append((tp, params))
        label = " ".join(f"{k.split('.')[0]}={v}" for k, v in zip(names, combo))
        lines.append(f"  oracle {label}: {tp:,.0f} samples/s")
        print(lines[-1], flush=True)
    oracle_wall = time.perf_counter() - t0
    best_tp, best_params = max(oracle, key=lambda x: x[0])
    budget = max(2, len(combos) // 4)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = autoaccel.optimize(str(path), target=args.device, mode="train", trials=budget, out=out, seed=args.seed,
                                    strategies="precision,batch_size,memory_format,compile",
                                    objectives="accuracy,train_throughput", max_accuracy_drop=1.0,
                                    choices={k: tuple(v) for k, v in grid.items()} | {"batch_size.lr_scaling": ("none",)},
                                    remeasure_rounds=0, quiet=True, timing_budget_s=0.3)
        found = max(p.metrics["train_throughput"] for p in result.summary.points)
        used = len([t for t in result.study.trials if "duplicate_of" not in t.user_attrs])
    search_wall = time.perf_counter() - t0
    fp32 = next(tp for tp, p in oracle if p.get("precision.dtype") == "fp32" and p.get("memory_format.format") == "contiguous"
                and p.get("compile.mode") == "off" and p.get("batch_size.size") == grid["batch_size.size"][0])
    lines += [
        f"oracle best: {best_tp:,.0f} samples/s with {best_params} ({best_tp / fp32:.2f}x the fp32 baseline at batch "
        f"{grid['batch_size.size'][0]}); oracle wall time {oracle_wall:.0f} s",
        f"search best: {found:,.0f} samples/s; search/oracle = {found / best_tp:.3f} (goal >= 0.95)",
        f"trials: {used} of a {len(combos)}-point grid = {used / len(combos):.2f} (goal <= 0.25); search wall time {search_wall:.0f} s",
    ]
    print("\n".join(lines[-3:]))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tag = "".join(c if c.isalnum() else "_" for c in device_name).strip("_").lower()
    (Path(args.out) / f"gpu_oracle_{tag}.txt").write_text("\n".join(lines) + "\n")
    if math.isnan(found):
        sys.exit(1)


if __name__ == "__main__":
    main()
