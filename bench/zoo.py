"""The zoo benchmark: models as users bring them (timm's, torchvision's, and the transformers families of the CI's
zoo suite), each technique at its probes on digits at 3x32x32 (works with its speedup / ruled out and why /
failed), and the search itself on them.

    python bench/zoo.py matrix [MODEL ...]       # the technique matrix, a few steps per trial (--first-only compile)
    python bench/zoo.py optimize [MODEL ...]     # autoaccel optimize --mode inference --trials 8 on each

MODEL: timm:<name>, torchvision:<name> or hf:<family> (default: the zoo of issue 31: timm's mobilenetv3_small_050,
efficientnet_b0, convnext_atto and vit_tiny_patch16_224, torchvision's resnet18; and the hf families where timm
does not import). timm and torchvision need the zoo venv (../shared/tools/zoo-venv.sh); run this with its python.
``optimize`` prints each run's serve answer and every failure's kind and where (pareto.json), and exits 1 when a
failure is of kind error or crash, or has no where.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ZOO = Path(__file__).resolve().parent / "zoo"
sys.path.insert(0, str(ZOO))
from families import HF_FAMILIES, build, digits  # noqa: E402
from matrix import matrix  # noqa: E402

from autoaccel.plugin._registry import default_registry  # noqa: E402
from autoaccel.task import Task  # noqa: E402

ISSUE_ZOO = ("timm:mobilenetv3_small_050", "timm:efficientnet_b0", "timm:convnext_atto", "timm:vit_tiny_patch16_224",
             "torchvision:resnet18")


def default_models() -> list[str]:
    try:
        import timm  # noqa: F401
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - PyPI's torchvision does not import beside the CPU torch wheel
        return [f"hf:{f}" for f in HF_FAMILIES]
    return list(ISSUE_ZOO)


def small_task(name: str, rows: int) -> Task:
    factory, kind = build(name)
    train, val = digits(kind, limit=rows)
    return Task(model=factory, train_data=train, val_data=val, epochs=1, batch_size=16, lr=1e-3,
                optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr), name=name.replace(":", "_"))


def run_matrix(models: list[str], rows: int, first_only: set[str]) -> int:
    registry = default_registry()
    print(f"# zoo matrix: {rows} training rows, batch 16, 1 epoch; speedup = the recipe's train_time or latency over "
          f"the technique's (one measurement each); torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    bad = 0
    for name in models:
        started = time.perf_counter()
        cells = matrix(small_task(name, rows), registry, first_only=first_only)
        bad += sum(c.status == "failed" or c.agrees is False for c in cells)
        print(f"## {name} ({time.perf_counter() - started:.0f} s)\n")
        print("| technique | result |\n| --- | --- |")
        for c in cells:
            print(f"| {c.label} | {c.said().replace('|', '/')} |")
        print()
    return 1 if bad else 0


def run_optimize(models: list[str], trials: int, exclude: str | None = None) -> int:
    bad = 0
    for name in models:
        out = Path(tempfile.mkdtemp(prefix="autoaccel-zoo-"))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "autoaccel.cli", "optimize", str(ZOO / "task.py"), "--mode", "inference",
                               "--trials", str(trials), "--out", str(out), *(["--exclude", exclude] if exclude else [])],
                              env={**os.environ, "AUTOACCEL_ZOO": name},
                              capture_output=True, text=True)
        took = time.perf_counter() - started
        if done.returncode != 0:
            print(f"{name}: exit {done.returncode} after {took:.0f} s: {done.stderr.strip().splitlines()[-1:]}")
            bad += 1
            continue
        pareto = json.loads((out / "pareto.json").read_text())
        serve = next((a for a in pareto["answers"] if a["goal"] == "serve"), {})
        print(f"{name} ({took:.0f} s): serve -> {serve.get('verdict', 'no serve answer')}")
        for f in pareto["failures"]:
            flag = "  <-- a bug" if f["kind"] in ("error", "crash") or ":" not in (f.get("where") or "") else ""
            bad += bool(flag)
            print(f"    trial {f['trial']} {f['kind']}: {f['reason'][:150]}\n        at {f.get('where') or '(no where)'}{flag}")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("matrix", "optimize"))
    parser.add_argument("models", nargs="*", help="timm:<name>, torchvision:<name> or hf:<family>")
    parser.add_argument("--rows", type=int, default=128, help="training rows per matrix trial (default 128)")
    parser.add_argument("--trials", type=int, default=8, help="trials per optimize run (default 8)")
    parser.add_argument("--first-only", default="", help="matrix: techniques tried at their first setting only, comma-separated "
                        "(compile's max-autotune takes minutes a model on a CPU)")
    parser.add_argument("--exclude", help="strategies the optimize runs leave out (compile takes minutes a trial on a CPU)")
    args = parser.parse_args()
    models = args.models or default_models()
    first_only = {n for n in args.first_only.split(",") if n}
    return run_matrix(models, args.rows, first_only) if args.what == "matrix" else run_optimize(models, args.trials, args.exclude)


if __name__ == "__main__":
    sys.exit(main())
