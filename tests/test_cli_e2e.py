"""End to end: `autoaccel optimize TINY.py --trials 4 --out DIR --target cpu --strategies ...`, run twice on the
same --out (the second run continues the study), with real training in isolated workers and real SQLite storage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

from autoaccel.cli import main
from autoaccel.options import Options
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search._setup import set_up_search
from autoaccel.task._loading import load_task
from study_snapshot import TINY_STUDY, sqlite_url
from tiny_digits import task_source, write_model

pytestmark = pytest.mark.slow  # two real searches of 4 trials each, with interleaved re-measurement

# The four core strategies only. The default set also compiles (torch.compile), exports to ONNX, ensembles and
# prunes: minutes per 4-trial run on 2 cores, which this test (about the CLI, the study and its outputs) does
# not need; the strategies themselves are tested in tests/plugins/<name>//.
STRATEGIES = ("precision", "batch_size", "dataloader", "scheduler")

# The four core built-ins at their off values with the tiny task's batch size: the user's own recipe.
BASELINE_PARAMS = {
    "batch_size.size": 32,
    "batch_size.lr_scaling": "none",
    "dataloader.num_workers": 0,
    "dataloader.pin_memory": False,
    "dataloader.persistent_workers": False,
    "dataloader.prefetch_factor": 2,
    "dataloader.cache": False,
    "precision.dtype": "fp32",
    "scheduler.kind": "constant",
    "scheduler.warmup": 0.0,
    "scheduler.lr_factor": 1.0,
}


@dataclass
class Run:
    code: int
    pareto: dict[str, Any]
    trials: list[FrozenTrial]


@dataclass
class TwoRuns:
    model: Path
    out: Path
    first: Run
    second: Run


def search_defaults(model: Path) -> dict[str, Any]:
    """The off value of every strategy the search uses here, from each strategy's own (task-aware) space."""
    return set_up_search(load_task(model), Options(target="cpu", strategies=STRATEGIES), plugin_manager()).defaults


def run_once(model: Path, out: Path) -> Run:
    code = main(["optimize", str(model), "--trials", "4", "--out", str(out), "--target", "cpu",
                 "--strategies", ",".join(STRATEGIES)])
    pareto = json.loads((out / "pareto.json").read_text()) if (out / "pareto.json").exists() else {}
    study = optuna.load_study(study_name=TINY_STUDY, storage=sqlite_url(out / "study.db"))
    return Run(code, pareto, study.get_trials())


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    root = tmp_path_factory.mktemp("e2e")
    model = write_model(root, task_source())
    out = root / "out"
    first = run_once(model, out)
    second = run_once(model, out)
    return TwoRuns(model, out, first, second)


def test_exit_code_and_outputs(two_runs: TwoRuns) -> None:
    assert two_runs.first.code == 0 and two_runs.second.code == 0
    assert (two_runs.out / "recipe.yaml").is_file()
    assert (two_runs.out / "study.db").is_file()


def test_pareto_json_shape(two_runs: TwoRuns) -> None:
    data = two_runs.first.pareto
    assert {"baseline", "pareto", "recommended"} <= set(data)
    assert data["pareto"], "the front is never empty: the baseline or something better is on it"
    for p in [data["baseline"], data["recommended"], *data["pareto"]]:
        assert {"trial", "params", "metrics"} <= set(p)
        assert {"accuracy", "train_time", "latency"} <= set(p["metrics"])
        # Only the settings that changed the plan: a subset of the searched parameters, none at its off value.
        assert set(p["params"]) <= set(BASELINE_PARAMS)
        assert all(BASELINE_PARAMS[k] != v for k, v in p["params"].items())
    assert data["baseline"]["params"] == {}
    assert [a["goal"] for a in data["answers"]] == ["train"]  # --strategies are all training-time techniques
    answer = data["answers"][0]
    assert {"goal", "trial", "params", "speedup", "accuracy_drop", "verdict"} <= set(answer)
    recommended = data["recommended"]["trial"]
    assert recommended == (answer["trial"] if answer["given"] else data["baseline"]["trial"])


def test_recipe_is_the_recommendation(two_runs: TwoRuns) -> None:
    recipe = yaml.safe_load((two_runs.out / "recipe.yaml").read_text())
    recommended = two_runs.second.pareto["recommended"]
    assert recipe["trial"] == recommended["trial"]
    assert recipe["params"] == recommended["params"]


def test_trial_zero_is_the_baseline_with_all_defaults(two_runs: TwoRuns) -> None:
    trial0 = two_runs.first.trials[0]
    assert trial0.number == 0 and trial0.state == TrialState.COMPLETE
    assert trial0.user_attrs["role"] == "baseline"
    # Every searched parameter at its off value, except those that apply only under another's value (the LR
    # scaling rule of an unchanged batch size, worker settings without workers): those are not suggested at all.
    inactive = {"batch_size.lr_scaling", "dataloader.persistent_workers", "dataloader.prefetch_factor"}
    assert trial0.params == {k: v for k, v in BASELINE_PARAMS.items() if k not in inactive}
    assert BASELINE_PARAMS == search_defaults(two_runs.model)
    assert two_runs.first.pareto["baseline"]["trial"] == 0
    assert two_runs.first.pareto["baseline"]["params"] == {} == trial0.user_attrs["config"]
    # Its plan is the user's own recipe: no strategy added a section (fp32 is the absence of a precision section).
    plan = trial0.user_attrs["plan"]
    assert (plan["batch_size"], plan["lr"], plan["epochs"], plan["sections"]) == (32, 0.1, 1, {})


def test_first_run_has_four_finished_trials(two_runs: TwoRuns) -> None:
    trials = two_runs.first.trials
    assert len(trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert all("worker" in t.user_attrs for t in trials)


def test_second_run_continues_the_study_without_redoing_the_baseline(two_runs: TwoRuns) -> None:
    first, second = two_runs.first.trials, two_runs.second.trials
    # A proposal that repeats a measured configuration is reused, not re-run, and does not count as a trial.
    reused = [t for t in second if "duplicate_of" in t.user_attrs]
    assert len(second) - len(reused) == 8
    by_number = {t.number: t for t in second}
    for t in reused:
        twin = by_number[t.user_attrs["duplicate_of"]]
        assert t.user_attrs["fingerprint"] == twin.user_attrs["fingerprint"]
        assert t.user_attrs["config"] == twin.user_attrs["config"]
    assert [t.number for t in second if t.user_attrs.get("role") == "baseline"] == [0]
    # Trials of the first run are kept as they were.
    for before, after in zip(first, second):
        assert (after.number, after.state, after.params, after.values) == (before.number, before.state, before.params, before.values)
    assert two_runs.second.pareto["baseline"]["trial"] == 0


def test_report_rebuilds_from_storage_without_running_trials(tmp_path: Path, tiny_task_file: Path) -> None:
    out = tmp_path / "out"
    assert main(["optimize", str(tiny_task_file), "--target", "cpu", "--trials", "2", "--out", str(out),
                 "--strategies", "batch_size", "--remeasure-rounds", "0", "--quiet"]) == 0
    (out / "report.html").unlink()
    before = len(optuna.load_study(study_name="tiny-cpu-both", storage=f"sqlite:///{out / 'study.db'}").trials)
    assert main(["report", "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert 'id="pareto-plot"' in html and 'id="environment"' in html
    assert len(optuna.load_study(study_name="tiny-cpu-both", storage=f"sqlite:///{out / 'study.db'}").trials) == before
