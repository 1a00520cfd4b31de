"""Shared fixtures: the tiny digits task (as a Task and as a model.py file), writers of model.py files,
and snapshots of an existing study that a bad command must leave untouched."""

from __future__ import annotations

import hashlib
import os

# Two cores are shared by pytest and the spawned trial worker: torch's default of one OpenMP thread per core
# spin-waits under that contention and makes tiny models several times slower. Set before torch is imported,
# so this process, the trial workers and any subprocess inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import optuna  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from autoaccel import Task  # noqa: E402
from tiny_digits import TASK_NAME, make_task, task_source, write_model  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# The study name `autoaccel optimize` gives the tiny task on the CPU in the default mode.
TINY_STUDY = f"{TASK_NAME}-cpu-both"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_task() -> Task:
    """The tiny digits Task object (1 epoch, batch 32). Tests must not mutate it."""
    return make_task()


@pytest.fixture
def tiny_task_file(tmp_path: Path) -> Path:
    """A valid model.py defining the tiny digits task."""
    return write_model(tmp_path, task_source())


WriteTask = Callable[..., Path]


@pytest.fixture
def write_task(tmp_path: Path) -> WriteTask:
    """``write_task(name="model.py", **template_fields)`` writes the tiny task with some fields replaced."""

    def write(name: str = "model.py", **fields: str) -> Path:
        return write_model(tmp_path, task_source(**fields), name)

    return write


@pytest.fixture
def write_source(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write_source(text, name)`` writes an arbitrary (dedented) model.py into tmp_path."""

    def write(text: str, name: str = "model.py") -> Path:
        return write_model(tmp_path, text, name)

    return write


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class StudySnapshot:
    """What must not change: the db's bytes and mtime, its trial count, and the folder's file list."""

    digest: str
    mtime_ns: int
    trials: int
    files: frozenset[str]


def snapshot_study(out: Path, study_name: str = TINY_STUDY) -> StudySnapshot:
    db = out / "study.db"
    # Bytes and mtime first: opening the storage afterwards must not be what changes them.
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    mtime = db.stat().st_mtime_ns
    study = optuna.load_study(study_name=study_name, storage=sqlite_url(db))
    return StudySnapshot(digest, mtime, len(study.get_trials()), frozenset(p.name for p in out.iterdir()))


@pytest.fixture
def existing_study(tmp_path: Path) -> Path:
    """An --out folder holding a study of the tiny task with one completed trial, made with optuna directly."""
    out = tmp_path / "out"
    out.mkdir()
    study = optuna.create_study(storage=sqlite_url(out / "study.db"), study_name=TINY_STUDY,
                                directions=["maximize", "minimize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "train_time", "latency"])
    dist = optuna.distributions.CategoricalDistribution(["fp32", "bf16"])
    study.add_trial(optuna.trial.create_trial(params={"precision.dtype": "fp32"}, distributions={"precision.dtype": dist},
                                              values=[0.9, 1.0, 0.1], user_attrs={"role": "baseline"}))
    assert len(study.get_trials()) == 1
    return out
