"""The example third-party plugin, used as a user would after `pip install ./examples/plugins/autoaccel-torch-knobs`
(.ci/run installs it): listed with its distribution, searched, and its training technique trains its own model."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import optuna
import pytest

from autoaccel.trial import _record as record

ROOT = Path(__file__).resolve().parents[2]
DIST = "autoaccel-torch-knobs"

try:
    metadata.distribution(DIST)
    INSTALLED = True
except metadata.PackageNotFoundError:
    INSTALLED = False

pytestmark = pytest.mark.skipif(not INSTALLED, reason=f"{DIST} is not installed (.ci/run installs it from examples/plugins)")


def autoaccel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoaccel.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_plugins_lists_both_strategies_with_their_distribution() -> None:
    out = autoaccel("plugins", "--target", "cpu").stdout
    for name in ("optimizer_kernels", "torch_inference"):
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert DIST in line


@pytest.mark.slow
def test_a_search_measures_them_and_a_training_trial_trains_its_own_model(tmp_path: Path) -> None:
    from tiny_digits import task_source, write_model

    # The suite's tiny digits task (a model that trains in well under a second): what is checked is how the
    # plugin's techniques are searched, not what they gain.
    model = write_model(tmp_path, task_source())
    out = tmp_path / "out"
    done = autoaccel("optimize", str(model), "--strategies", "optimizer_kernels,torch_inference", "--trials", "6",
                     "--remeasure-rounds", "2", "--no-ablation", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    json.loads(done.stdout)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
    trials = [record.read(t) for t in study.get_trials(deepcopy=False)]
    baseline = next(t for t in trials if t.role == "baseline")
    tried = [t for t in trials if any(k.startswith("optimizer_kernels.") for k in t.settings)]
    serving = [t for t in trials if t.measured and any(k.startswith("torch_inference.") for k in t.settings)]
    assert tried and serving, [t.settings for t in trials]
    # A training technique trains its own model: to the end (its own checkpoint, never the baseline's), or until
    # the speed bar stops it part-way, which on a shared machine it may (fused kernels on a tiny MLP are noise).
    for t in tried:
        if t.measured:
            assert t.details["cached_training"] is False and t.details["checkpoint"] != baseline.details["checkpoint"]
        else:
            assert t.failure_kind == "too_slow" and "stopped early after" in (t.reason or ""), (t.failure_kind, t.reason)
    for t in serving:  # a serving technique: the baseline's trained model, reused
        assert t.details["checkpoint"] == baseline.details["checkpoint"]
