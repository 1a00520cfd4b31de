"""Shared fixtures: the tiny digits task (as a Task and as a model.py file) and an existing study that a bad
command must leave untouched. Helpers that write model.py files live in tiny_digits.py."""

from __future__ import annotations

import os

# Two cores are shared by pytest and the spawned trial worker: torch's default of one OpenMP thread per core
# spin-waits under that contention and makes tiny models several times slower. Set before torch is imported,
# so this process, the trial workers and any subprocess inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import importlib.util  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import optuna  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from autoaccel import Task  # noqa: E402
from study_snapshot import TINY_STUDY, sqlite_url  # noqa: E402
from tiny_digits import make_task, task_source, write_model  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# The strategy contract's tests that run studies and trials (autoaccel/plugin/testing.py: a plugin's own suite runs
# them too, so they carry no marker of ours).
LONG_CONTRACT_TESTS = frozenset({"test_a_tiny_study_runs", "test_every_choice_runs_end_to_end",
                                 "test_apply_and_export_reproduce_the_trial"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The long tests first (a stable sort keeps each module's order): pytest-xdist hands tests out in this order, so
    # the two processes share the long ones and end on short ones together, instead of one process running a
    # minute-long test while the other has nothing left.
    items.sort(key=lambda item: not ({"slow", "zoo"} & set(item.keywords)
                                     or getattr(item, "originalname", item.name) in LONG_CONTRACT_TESTS))
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


BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench_script(name: str) -> ModuleType:
    """bench/<name>.py loaded as a module (the scripts are not part of the package), with bench/ on the path while it
    loads (fidelity_replay.py imports search_replay.py)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture(scope="session")
def bench_script() -> Callable[[str], ModuleType]:
    """Loads bench/<name>.py as a module: ``bench_script("fidelity")``."""
    return _bench_script


@pytest.fixture(scope="session")
def replay() -> ModuleType:
    """bench/search_replay.py, loaded as a module."""
    return _bench_script("search_replay")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A private PostgreSQL server for the whole session (see postgres_server.py); skips when none can start."""
    from postgres_server import Unavailable, postgres_server

    try:
        with postgres_server() as url:
            yield url
    except Unavailable as why:
        pytest.skip(f"no PostgreSQL server: {why}")


@pytest.fixture
def postgres_url(postgres_server_url: str, request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    import re

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name)[:40].lower() + f"_{os.getpid()}"
    server, _ = postgres_server_url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"
