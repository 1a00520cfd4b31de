"""Compression techniques on digits, each measured side by side with its baseline in one run.

    python bench/compression.py [--rounds 9]

Trains the Linear-heavy digits MLP (examples/digits_mlp.py) once, then for dynamic int8, static int8 via
ONNX Runtime, structured pruning of half the neurons (with one epoch of fine-tuning), and a distilled student
a quarter as wide, prints latency at batch 1 and time at batch 32 as paired ratios against the fp32 model
(interleaved rounds, 95% intervals), and the accuracy change. Goals: int8 >= 1.5x at batch 1 and 32 within
0.01 accuracy; structured pruning >= 1.3x; the student >= 2x within 0.02 accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from autoaccel.plugin._pipeline import Pipeline  # noqa: E402
from autoaccel.plugin._registry import default_registry  # noqa: E402
from autoaccel.plugin._strategy import apply_all  # noqa: E402
from autoaccel.task import load_task, sample_batch
from autoaccel.trial import evaluate, interleave, paired_ratio, serve, served_model, time_inference, training_key

TECHNIQUES = {
    "dynamic int8": {"quantization.method": "dynamic_int8"},
    "static int8 (ORT)": {"quantization.method": "static_int8_ort"},
    "structured pruning 50% + 1 epoch": {"pruning.method": "structured", "pruning.amount": 0.5, "pruning.finetune_epochs": 1},
    "unstructured pruning 50%": {"pruning.method": "unstructured", "pruning.amount": 0.5},
    "distilled student (size 0.25)": {"distillation.enabled": True, "distillation.student_size": 0.25,
                                      "distillation.temperature": 4.0, "distillation.alpha": 0.7},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per timing in each round")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    task = load_task(ROOT / "examples" / "digits_mlp.py")
    strategies = list(default_registry().strategies.values())
    base = Pipeline(device="cpu", batch_size=task.batch_size, lr=task.lr, epochs=task.epochs)
    base = base.replace(baseline_key=training_key(task, base))
    cache = tempfile.mkdtemp(prefix="autoaccel-bench-")
    plans = {"fp32 baseline": base, **{name: apply_all(strategies, base, p) for name, p in TECHNIQUES.items()}}
    one = sample_batch(task.val_data, 1)
    b32 = sample_batch(task.val_data, 32)
    models, acc = {}, {}
    for name, plan in plans.items():
        model = served_model(task, plan, 0, cache)  # the baseline trains first and becomes the teacher
        models[name] = serve(task, plan, model, one, 0)
        acc[name] = evaluate(models[name], task, plan, task.metric_fn()).value
    names = list(plans)
    print(f"digits MLP 64-1024-1024-1024-10 on {torch.get_num_threads()} thread(s); {args.rounds} interleaved rounds")
    print(f"{'technique':34s} {'latency b=1 speedup':>26s} {'b=32 speedup':>26s} {'accuracy':>9s} {'change':>8s}")
    timings = {}
    for label, inputs in (("b1", one), ("b32", b32)):
        timings[label] = interleave(len(names), args.rounds,
                                    lambda i, x=inputs: time_inference(models[names[i]], x, plans[names[i]], args.budget).median)
    for i, name in enumerate(names):
        cells = []
        for label in ("b1", "b32"):
            r = paired_ratio(timings[label][0], timings[label][i])
            cells.append(f"{r.value:5.2f}x [{r.ci95[0]:.2f}, {r.ci95[1]:.2f}]")
        print(f"{name:34s} {cells[0]:>26s} {cells[1]:>26s} {acc[name]:9.4f} {acc[name] - acc[names[0]]:+8.4f}")


if __name__ == "__main__":
    main()
