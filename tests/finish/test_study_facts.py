"""What a finished search records beside its answers (finish/_study_facts.py): the versions it measured with, and
Optuna's fANOVA parameter importances per objective where there is nothing to ablate."""

from __future__ import annotations

import json
import platform
import random
from importlib import metadata

import optuna
import pytest

from autoaccel.finish._study_facts import environment, importances

SHAPERS = ("autoaccel", "torch", "optuna", "onnx", "onnxruntime", "numpy", "scikit-learn", "torchao", "torchvision")
UNIT = optuna.distributions.FloatDistribution(0.0, 1.0)


def installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def test_the_environment_names_python_the_platform_and_the_installed_version_of_each_library() -> None:
    env = environment()
    assert env["python"] == platform.python_version() and env["platform"] == platform.platform()
    assert env["torch"] == installed("torch") and env["optuna"] == optuna.__version__
    for dist in SHAPERS:
        assert env.get(dist) == installed(dist), dist  # an absent library is left out, not an error
    assert set(env) == {"python", "platform", *(d for d in SHAPERS if installed(d) is not None)}
    assert json.loads(json.dumps(env)) == env  # stored as a study attribute and in the report


def study_of(n: int, seed: int = 0) -> optuna.Study:
    """A study whose first objective follows ``a.x`` and whose second follows ``b.y`` (``c.z`` drives nothing)."""
    rng = random.Random(seed)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(n):
        x, y, z = rng.random(), rng.random(), rng.random()
        study.add_trial(optuna.trial.create_trial(params={"a.x": x, "b.y": y, "c.z": z},
                                                  distributions={"a.x": UNIT, "b.y": UNIT, "c.z": UNIT}, values=[x, 10 * y]))
    return study


def test_each_objective_gets_the_importance_of_each_parameter_for_it() -> None:
    result = importances(study_of(20), ("accuracy", "latency"))
    assert result["method"] == "importance" and "note" not in result
    imp = result["importances"]
    assert set(imp) == {"accuracy", "latency"}
    assert max(imp["accuracy"], key=imp["accuracy"].get) == "a.x"  # the first objective is the first value
    assert max(imp["latency"], key=imp["latency"].get) == "b.y"  # the second objective is the second value
    for per_param in imp.values():
        assert set(per_param) == {"a.x", "b.y", "c.z"} and sum(per_param.values()) == pytest.approx(1.0)
        assert all(type(v) is float for v in per_param.values())  # plain floats: JSON in the study and report


def test_an_objective_that_never_varied_is_left_out_with_a_note_and_the_others_kept() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i in range(6):
        study.add_trial(optuna.trial.create_trial(params={"a.x": i / 6}, distributions={"a.x": UNIT}, values=[i / 6, 2.0]))
    result = importances(study, ("accuracy", "latency"))
    assert result["importances"] == {"accuracy": {"a.x": 1.0}}
    assert result["note"].startswith("parameter importances not available: ")


def test_a_study_with_no_variety_at_all_gives_a_note_instead_of_failing() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for x in (0.2, 0.8):
        study.add_trial(optuna.trial.create_trial(params={"a.x": x}, distributions={"a.x": UNIT}, values=[0.9, 1.0]))
    result = importances(study, ("accuracy", "latency"))
    assert result["importances"] == {} and "not available" in result["note"]
    assert json.loads(json.dumps(result)) == result
