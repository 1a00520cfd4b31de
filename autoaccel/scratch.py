"""One temporary folder per run, under the system's temp dir (honouring TMPDIR), that everything temporary
goes into: removed when the run ends, swept at the next start when a run was killed before it could."""

from __future__ import annotations

import contextlib
import multiprocessing.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from autoaccel.pids import alive

PREFIX = "autoaccel-run-"
_active: list[Path] = []  # the run folder this process is inside (run_scratch is re-entrant)


def sweep_scratch(root: Path) -> list[str]:
    """Remove the run folders of processes that are gone (this host's temp dir is this host's alone)."""
    removed = []
    for folder in root.glob(f"{PREFIX}*"):
        pid = folder.name[len(PREFIX):].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


@contextlib.contextmanager
def run_scratch() -> Iterator[Path]:
    """A fresh temp folder for this run, made the process's (and its workers') TMPDIR while the run lasts.
    Entered as early as a command starts (before the user's model.py and libraries that write to the temp dir
    on import are loaded); a run inside it (Search.run) keeps the same folder."""
    if _active:
        yield _active[-1]
        return
    root = Path(tempfile.gettempdir())
    sweep_scratch(root)
    # multiprocessing's own temp folder holds the fork server's socket for the process's life, across runs (see
    # fork_server.py); it is made once per process wherever the temp dir is then: make it now, not in this run's.
    multiprocessing.util.get_temp_dir()
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)  # spawned trial workers inherit it
    tempfile.tempdir = None  # tempfile caches the temp dir: forget it so this process uses the run folder too
    _active.append(folder)
    try:
        yield folder
    finally:
        _active.pop()
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
        tempfile.tempdir = None
        shutil.rmtree(folder, ignore_errors=True)
