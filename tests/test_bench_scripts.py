"""The benchmark scripts run: bench/gpu_oracle.py checks itself on a CPU with --smoke (a tiny model, 2x2 grid)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_oracle_runs_its_smoke_grid_on_a_cpu(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_oracle.py"), "--device", "cpu", "--smoke",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "search/oracle = " in done.stdout and "trials: " in done.stdout
    assert (tmp_path / "gpu_oracle_cpu.txt").read_text().startswith("gpu_oracle on cpu")


def test_the_metric_streaming_benchmark_agrees_with_the_old_way() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "bench/metric_streaming.py", "--n", "40", "--tokens", "5", "--vocab", "20",
                           "--batch", "10"], cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    value = done.stdout.splitlines()[-1]
    before, now = value.split(" before; ")
    assert before.split()[1] == now.split()[0], value  # the same value, streamed or held
