"""One temporary folder per run, under the system's temp dir (honouring TMPDIR), that everything temporary
goes into: removed when the run ends, swept at the next start when a run was killed before it could."""

from __future__ import annotations

import contextlib
import getpass
import multiprocessing.util
import os
import re
import shutil
import sys
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
    # torch.compile's cache of generated kernels stays where torch keeps it for the user's own runs (the system
    # temp dir, or their TORCHINDUCTOR_CACHE_DIR), not in this run's folder: the next run, a resumed one and
    # `autoaccel confirm` then compile from it (on a CPU a model's compilation takes tens of seconds).
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "TORCHINDUCTOR_CACHE_DIR")}
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / f"torchinductor_{_user()}"))
    _pin_compile_paths()  # after the cache folder is named (importing inductor writes it to the environment)
    os.environ["TMPDIR"] = str(folder)  # trial workers take this process's environment
    tempfile.tempdir = None  # tempfile caches the temp dir: forget it so this process uses the run folder too
    _active.append(folder)
    try:
        yield folder
    finally:
        _active.pop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tempfile.tempdir = None
        shutil.rmtree(folder, ignore_errors=True)


def _pin_compile_paths() -> None:
    """torch.compile's C++ backend keeps its precompiled headers in a folder it names once, when
    torch._inductor.codecache is first imported, from the temp dir of that moment (and memoises each header's
    path). Imported inside a run, that is the run's folder, deleted at its end: every later compilation in the same
    process (a second `autoaccel.optimize` in a pipeline, a trial run in-process) then fails with "precompiled_headers/
    ....h: No such file or directory". Imported here, before the run's folder becomes the temp dir, it names the
    system's. Only when torch is already loaded (a process that never imports torch pays nothing)."""
    if "torch" not in sys.modules:
        return
    try:
        import torch._inductor.codecache  # noqa: F401
    except Exception:  # noqa: BLE001 - a torch without inductor compiles nothing: nothing to pin
        pass


def _user() -> str:
    """The user's name as torch spells it in its default compile cache folder (torch/_inductor/runtime)."""
    try:
        name = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):
        name = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    return re.sub(r'[\\/:*?"<>|]', "_", name)
