"""The benchmark scripts run: bench/gpu_oracle.py checks itself on a CPU with --smoke (a tiny model, 2x2 grid)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow  # runs the benchmarks' smoke grids

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


def test_a_recorded_table_holds_the_median_of_its_passes_and_replays(tmp_path: Path, replay) -> None:  # type: ignore[no-untyped-def]
    from tests.tiny_digits import task_source, write_model

    model = write_model(tmp_path, task_source())
    out = tmp_path / "tiny.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "record_table.py"), str(model), "--mode", "inference",
                           "--strategies", "quantization", "--choices", "quantization.method=none,dynamic_int8",
                           "--repeats", "2", "--timing-budget", "0.02", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pass 2 of 2" in done.stderr
    table = replay.Table(str(out))
    assert table.data["repeats"] == 2 and len(table.rows) == 2
    # The serving variant reuses the baseline's training: a replay charges it an evaluation only.
    served = table.lookup({"quantization.method": "dynamic_int8"})
    assert served["training_key"] == table.base["training_key"] and served["goal"] == "serve"
    assert all(row["metrics"]["latency"] > 0 and row["eval_seconds"] > 0 for row in table.rows.values())
    assert table.base["train_seconds"] > 0


def test_record_table_refuses_no_evaluation_per_row_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "record_table.py"), "model.py", "--strategies", "quantization",
                           "--repeats", "0", "--out", str(tmp_path / "t.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--repeats: expected at least 1 evaluation per row, got 0" in done.stderr.splitlines()[-1]


def test_the_fidelity_benchmark_ranks_proxies_and_names_their_answer(tmp_path: Path) -> None:
    import json

    def at(t: float, acc: float) -> dict[str, float]:
        return {"train_time": t, "accuracy": acc, "wall_s": t}

    # At 1/4 the proxy ranks speed right and its answer (row 2) holds at full length; row 3 fails to run.
    rows = [{"config": {}, "at": {"1.0": at(10, 0.99), "0.25": at(10, 0.90)}},
            {"config": {"a": 1}, "at": {"1.0": at(5, 0.99), "0.25": at(5, 0.91)}},
            {"config": {"b": 1}, "at": {"1.0": at(4, 0.985), "0.25": at(4, 0.90)}},
            {"config": {"c": 1}, "at": {"1.0": {"failed": "unsupported: no"}}}]
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"task": "t", "model": "m.py", "fractions": [0.25], "rows": rows}))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "fidelity.py"), "--table", str(table)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'failed to run: [{"c": 1}]' in done.stdout
    assert 'full-length answer: {"b": 1} at 2.50x' in done.stdout
    assert "at 1/4: Spearman speed 1.00" in done.stdout and 'its answer {"b": 1} is the same' in done.stdout


def test_the_fidelity_recorder_trains_the_recipe_again_from_other_seeds_at_each_rung(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_script: Callable[[str], ModuleType]) -> None:
    from tests.tiny_digits import task_source, write_model

    fidelity = bench_script("fidelity")
    monkeypatch.setattr(fidelity, "CONFIGS", [{}, {"memory_format.format": "channels_last"}])
    table = fidelity.record(str(write_model(tmp_path, task_source())), [0.5], tmp_path / "t.json", replicas=1)
    recipe = table["rows"][0]
    assert table["replicas"] == 1 and "replicas" not in table["rows"][1]
    again = recipe["replicas"]["0.5"]
    assert len(again) == 1 and again[0]["seed"] == recipe["at"]["0.5"]["seed"] + 1
    # The recipe's curve reads its run-to-run noise at that rung from the replica, as the search's ladder does.
    curve = fidelity.table_curve(table["rows"], [0.5], 0.01)
    assert curve.noise.get(repr(0.5)) is not None
