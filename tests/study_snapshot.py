"""Snapshots of a study and its --out folder, to prove a command left them exactly as they were."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import optuna

from tiny_digits import TASK_NAME

# The study name `autoaccel optimize` gives the tiny task on the CPU in the default mode.
TINY_STUDY = f"{TASK_NAME}-cpu-both"


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
