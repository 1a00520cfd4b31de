"""How stable is autoaccel's clock? The same configuration measured in several separate processes.

    python bench/measurement_stability.py [--runs 8] [--work-ms 25]

Prints the spread of the per-run medians relative to their mean (goal: under 3% for work of 20 ms or more on
a 2-core CPU) and how often each run's reported 95% interval covers the median of the other runs. Then the
remedy autoaccel applies to finalists: the same configuration twice (A/A), interleaved in one process, as a
paired ratio whose interval should hold 1.0 and be narrow even when the machine drifts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, time, torch
    from autoaccel.measure._timing import measure
    torch.manual_seed(0)
    n = int(sys.argv[1])
    model = torch.nn.Sequential(torch.nn.Linear(n, n), torch.nn.ReLU(), torch.nn.Linear(n, n)).eval()
    x = torch.randn(256, n)
    def call():
        with torch.no_grad():
            return model(x)
    m = measure(call, "cpu", budget_s=float(sys.argv[2]))
    print(json.dumps({"median": m.median, "ci95": m.ci95, "n": m.n, "noisy": m.noisy, "first": m.first_call}))
    """
)


def calibrate(work_ms: float) -> int:
    """Pick a layer width whose forward takes about ``work_ms`` here."""
    import time

    import torch

    width = 256
    while True:
        model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width)).eval()
        x = torch.randn(256, width)
        with torch.no_grad():
            model(x)
            t0 = time.perf_counter()
            for _ in range(5):
                model(x)
        ms = (time.perf_counter() - t0) / 5 * 1000
        if ms >= work_ms or width >= 16384:
            return width
        width = int(width * 1.4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--work-ms", type=float, default=25.0)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of sampling per run")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the interleaved A/A comparison")
    args = parser.parse_args()
    width = calibrate(args.work_ms)
    results = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(width), str(args.budget)], check=True,
                             capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    medians = [r["median"] for r in results]
    mean = statistics.fmean(medians)
    cv = statistics.stdev(medians) / mean
    rng = (max(medians) - min(medians)) / mean
    covered = total = 0
    for i, r in enumerate(results):
        lo, hi = r["ci95"]
        for j, other in enumerate(medians):
            if i != j:
                total += 1
                covered += lo <= other <= hi
    print(f"workload: 2-layer MLP width {width}, batch 256; {args.runs} separate processes")
    for i, r in enumerate(results):
        print(f"  run {i}: median {r['median'] * 1000:.2f} ms  ci95 [{r['ci95'][0] * 1000:.2f}, {r['ci95'][1] * 1000:.2f}]"
              f"  n={r['n']}  noisy={r['noisy']}")
    print(f"mean of medians {mean * 1000:.2f} ms")
    print(f"spread of medians: stdev/mean = {cv:.2%}, (max-min)/mean = {rng:.2%}  (goal: under 3%)")
    print(f"interval coverage of other runs' medians: {covered}/{total} = {covered / total:.0%}")
    print(f"interleaved A/A in one process ({args.rounds} rounds): {aa(width, args.rounds)}")


def aa(width: int, rounds: int) -> str:
    """The same workload as two 'configurations', re-measured interleaved: the paired ratio's interval."""
    import torch

    from autoaccel.measure import measure
    from autoaccel.trial import interleave, paired_ratio

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width)).eval()
    x = torch.randn(256, width)

    def call() -> object:
        with torch.no_grad():
            return model(x)

    samples = interleave(2, rounds, lambda i: measure(call, "cpu", budget_s=0.5).median)
    r = paired_ratio(samples[0], samples[1])
    spread = (max(samples[0]) - min(samples[0])) / (sum(samples[0]) / rounds)
    return (f"ratio {r.value:.3f} [{r.ci95[0]:.3f}, {r.ci95[1]:.3f}] ({r.label}); "
            f"meanwhile A alone drifted {spread:.1%} (max-min)/mean across rounds")


if __name__ == "__main__":
    main()
