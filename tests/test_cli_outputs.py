"""What a user sees around a search: --json on stdout alone, `report` rebuilding the same outputs, the Python
API from a script without a main guard, failures named by technique, library warnings kept out of the terminal."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from autoaccel.cli import main
from tiny_digits import task_source, write_model

pytestmark = pytest.mark.slow  # real searches in isolated workers

TESTS = Path(__file__).parent


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoaccel.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_json_keeps_stdout_for_the_document_and_progress_on_stderr(tmp_path: Path, tiny_task_file: Path) -> None:
    done = cli("optimize", str(tiny_task_file), "--target", "cpu", "--trials", "2", "--out", str(tmp_path / "out"),
               "--strategies", "batch_size", "--remeasure-rounds", "0", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert {"answers", "baseline", "recommended"} <= set(data)
    assert "trial 1/2" in done.stderr and "trial 1/2" not in done.stdout
    assert "[cpu], objectives accuracy" in done.stderr  # the device in brackets is text, not rich markup


def test_report_rebuilds_pareto_json_with_its_export(tmp_path: Path, tiny_task_file: Path) -> None:
    out = tmp_path / "out"
    assert main(["optimize", str(tiny_task_file), "--target", "cpu", "--trials", "2", "--out", str(out),
                 "--strategies", "batch_size", "--remeasure-rounds", "0", "--quiet"]) == 0
    before = json.loads((out / "pareto.json").read_text())
    assert before["export"]["files"]["state_dict"]
    (out / "pareto.json").unlink()
    assert main(["report", "--out", str(out)]) == 0
    after = json.loads((out / "pareto.json").read_text())
    assert after["export"] == before["export"] and after["answers"] == before["answers"]


def test_the_api_from_a_script_without_a_main_guard_works(tmp_path: Path) -> None:
    """A script that calls autoaccel.optimize at top level, its model defined in the script itself: the spawned
    trial worker must not run the script again (which would start a second search inside it)."""
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from torch import nn
        import autoaccel
        from tiny_digits import make_task

        def small():
            return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

        result = autoaccel.optimize(make_task(model=small), trials=2, strategies="batch_size", target="cpu",
                                    out={str(tmp_path / "out")!r}, remeasure_rounds=0, timing_budget_s=0.02)
        print("ANSWERS", [a.goal for a in result.summary.answers])
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ANSWERS") == 1 and "['train']" in done.stdout
    study = optuna.load_study(study_name="tiny-cpu-both", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_failed_trial_names_its_technique_and_warnings_stay_in_the_record(tmp_path: Path,
                                                                           capfd: pytest.CaptureFixture[str]) -> None:
    # A model whose forward warns, and that dynamic int8 quantization cannot serve (its Linear layers are
    # replaced, and the forward checks the layer type): the failure must name quantization's choice.
    model = write_model(tmp_path, task_source(prelude=textwrap.dedent('''
        import warnings

        class Picky(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

            def forward(self, x):
                warnings.warn("Picky: a library warning the user should not see in the terminal", UserWarning)
                if type(self.body[0]) is not nn.Linear:
                    raise RuntimeError("Picky only runs float nn.Linear layers\\nsecond line of a long library message")
                return self.body(x)
    '''), model="Picky()"))
    out = tmp_path / "out"
    assert main(["optimize", str(model), "--target", "cpu", "--trials", "3", "--out", str(out), "--mode", "inference",
                 "--strategies", "quantization", "--choices", "quantization.method=dynamic_int8", "--remeasure-rounds", "0"]) == 0
    captured = capfd.readouterr()  # file descriptors: the trial worker's own output included
    assert "Picky: a library warning" not in captured.err + captured.out
    study = optuna.load_study(study_name="tiny-cpu-inference", storage=f"sqlite:///{out / 'study.db'}")
    base = study.trials[0]
    assert "Picky: a library warning" in base.user_attrs["details"]["warnings"]
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed, "the dynamic int8 trial must fail"
    reason = failed[0].user_attrs["reason"]
    assert reason.startswith("quantization.method=dynamic_int8: RuntimeError: Picky only runs float nn.Linear layers")
    assert "\n" not in reason and "second line" not in reason
