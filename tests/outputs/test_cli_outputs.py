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

TESTS = Path(__file__).parent.parent


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


def test_a_search_of_both_factors_answers_every_goal_end_to_end(tmp_path: Path) -> None:
    """Training and serving techniques together: each goal gets its answer or a reason, the combined answer is
    run as a trial of its own, and ablation rows name their goal."""
    import autoaccel
    from tiny_digits import make_task

    result = autoaccel.optimize(make_task(epochs=2), trials=8, strategies="batch_size,scheduler,quantization,runtime",
                                target="cpu", out=str(tmp_path / "out"), remeasure_rounds=3, timing_budget_s=0.05,
                                choices={"batch_size.size": (64, 128)})
    goals = {a.goal: a for a in result.summary.answers}
    assert list(goals) == ["train", "serve", "combined"]
    for a in goals.values():
        assert a.verdict and (a.given or "keep" in a.verdict)
        if a.given:
            assert set(a.speedup) <= {"train_time", "latency"} and a.accuracy_drop["value"] <= 0.01 + 1e-9
    if goals["train"].given and goals["serve"].given:
        combined = goals["combined"]
        trial = result.study.trials[combined.trial if combined.given else -1]
        assert trial.user_attrs.get("role") == "combined" or "combined" in combined.verdict
    data = json.loads((tmp_path / "out" / "pareto.json").read_text())
    assert [a["goal"] for a in data["answers"]] == ["train", "serve", "combined"]


def test_the_combined_answer_runs_its_own_trial_and_attributes_accuracy(tmp_path: Path) -> None:
    """Whatever the timings say, combining a train and a serve answer runs the combination as a trial of its
    own, re-measures it, and attributes its accuracy change to each half (given or rejected)."""
    from autoaccel.finish._answers import give
    from autoaccel.finish._finisher import Finisher
    from autoaccel.options import Options
    from autoaccel.plugin._registry import plugin_manager
    from autoaccel.search._search import Search
    from autoaccel.trial._isolation import InProcessRunner
    from tiny_digits import make_task

    task = make_task(epochs=2)
    options = Options(trials=6, strategies=("batch_size", "quantization"), target="cpu", out=str(tmp_path / "out"),
                      remeasure_rounds=2, timing_budget_s=0.02, isolate=False, choices={"batch_size.size": (64,)})
    search = Search(task, None, options, plugin_manager())
    study, summary = search.run()
    train = next(p for p in summary.points if p.goal == "train")
    serve = next(p for p in summary.points if p.goal == "serve")
    runner = InProcessRunner(task, str(tmp_path / "out" / "checkpoints"))
    finisher = Finisher(search.finish_inputs(study), study, runner)
    combined = finisher.combine({"train": give("train", train, summary.baseline, search.objectives, "trial"),
                                 "serve": give("serve", serve, summary.baseline, search.objectives, "trial")})
    last = study.trials[-1]
    assert last.user_attrs["role"] == "combined" and last.user_attrs["goal"] == "combined"
    assert last.user_attrs["config"] == {**train.params, **serve.params}
    assert str(last.number) in (study.user_attrs.get("remeasure") or {}).get("trials", {})
    said = " ".join(combined.notes) + combined.verdict
    assert "with the training change alone" in said and "with the serving change alone" in said


def test_minimising_an_answer_ablates_each_technique_and_says_what_it_kept(tmp_path: Path) -> None:
    from autoaccel.finish._finisher import Finisher
    from autoaccel.options import Options
    from autoaccel.plugin._registry import plugin_manager
    from autoaccel.search._search import Search
    from autoaccel.trial._isolation import InProcessRunner
    from tiny_digits import make_task

    task = make_task(epochs=2)
    options = Options(trials=2, strategies=("batch_size", "scheduler"), mode="train", target="cpu", out=str(tmp_path / "out"),
                      remeasure_rounds=2, timing_budget_s=0.02, isolate=False)
    search = Search(task, None, options, plugin_manager())
    study, _ = search.run()
    runner = InProcessRunner(task, str(tmp_path / "out" / "checkpoints"))
    # Run as the finish runs its variants (no speed bar: on a loaded machine a search role's could stop it early).
    answer = search.executor.run_fixed(study, runner, {"batch_size.size": 128, "batch_size.lr_scaling": "linear",
                                              "scheduler.kind": "cosine"}, "ablation")
    assert answer is not None
    finisher = Finisher(search.finish_inputs(study), study, runner)
    point, notes = finisher.minimise(finisher.point(answer.number), "train", ["train_time"])
    rows = {r["technique"]: r for r in finisher.rows}
    assert set(rows) == {"batch_size", "scheduler"}
    for row in rows.values():
        assert row["verdict"].startswith(("kept", "dropped")) and "accuracy" in row and "train_time" in row["speedup"]
    # The answer holds exactly the techniques its rows say were kept (a drop that did not hold is marked kept).
    kept = {n for n, r in rows.items() if r["verdict"].startswith("kept")}
    assert {k.partition(".")[0] for k in point.params} == kept
    assert all(n in " ".join(notes) for n in rows if n not in kept) or not notes
