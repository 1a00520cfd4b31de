"""Several workers opening one fresh storage at the same moment all join one study (no schema-creation race),
on SQLite and on a real PostgreSQL server; a journal file is the no-database option."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import optuna
import pytest

from autoaccel.errors import AutoaccelError
from autoaccel.search._study import open_storage, open_study

OBJECTIVES = ["accuracy", "latency"]


def _open_at(url: str, start: float) -> str:
    while time.time() < start:  # every process starts creating at the same instant
        pass
    try:
        storage = open_storage(url, heartbeat_s=5)
        open_study(storage, "shared", OBJECTIVES, optuna.samplers.RandomSampler())
        return "ok"
    except BaseException as exc:  # noqa: BLE001 - reported back to the test
        return f"{type(exc).__name__}: {exc}"


def _race(url: str, workers: int) -> list[str]:
    with mp.get_context("spawn").Pool(workers) as pool:
        start = time.time() + 3.0  # after every spawned process has imported optuna
        return pool.starmap(_open_at, [(url, start)] * workers)


@pytest.mark.slow
def test_workers_starting_together_on_a_fresh_sqlite_file_all_join(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert _race(url, 4) == ["ok"] * 4
    study = optuna.load_study(study_name="shared", storage=url)
    assert study.user_attrs["objectives"] == OBJECTIVES
    assert optuna.get_all_study_names(url) == ["shared"]


@pytest.mark.slow
def test_workers_starting_together_on_a_fresh_postgres_database_all_join(postgres_url: str) -> None:
    assert _race(postgres_url, 6) == ["ok"] * 6
    assert optuna.get_all_study_names(postgres_url) == ["shared"]


def test_a_journal_file_is_a_storage_without_a_server(tmp_path: Path) -> None:
    url = f"journal://{tmp_path / 'shared' / 'study.log'}"
    study = open_study(open_storage(url), "s", OBJECTIVES, optuna.samplers.RandomSampler())
    study.enqueue_trial({})
    again = open_study(open_storage(url), "s", OBJECTIVES, optuna.samplers.RandomSampler())
    assert len(again.trials) == 1 and again.user_attrs["objectives"] == OBJECTIVES


def test_an_unreachable_postgres_server_is_one_line_without_the_password() -> None:
    with pytest.raises(AutoaccelError) as err:
        open_storage("postgresql://me:hunter2@127.0.0.1:1/none")
    message = str(err.value)
    assert "hunter2" not in message and "--storage" in message and "\n" not in message
