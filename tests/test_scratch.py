"""The run's temp folder (scratch.py) and what stays outside it: multiprocessing's own temp folder, where the fork
server's socket lives across runs, and torch.compile's kernel cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autoaccel.scratch import PREFIX, run_scratch


def test_a_run_has_its_own_temp_dir_and_leaves_the_compile_cache_where_torch_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)
    with run_scratch() as folder:
        assert folder.parent == tmp_path and folder.name.startswith(PREFIX)
        assert os.environ["TMPDIR"] == str(folder) and tempfile.gettempdir() == str(folder)
        cache = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
        assert cache.parent == tmp_path and cache.name.startswith("torchinductor_")
    assert os.environ["TMPDIR"] == str(tmp_path) and "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    assert not folder.exists()
    # What torch itself picks outside the run: the same folder, so the user's own runs share it.
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    assert default_cache_dir() == str(cache)


def test_a_cache_folder_of_the_users_own_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "my-kernels"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(mine))
    with run_scratch():
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(mine)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(mine)


def test_torch_compiles_precompiled_headers_outside_any_runs_folder(tmp_path: Path) -> None:
    # A fresh process, as a pipeline is: torch loaded, then two runs; the first compiles (importing inductor's
    # code cache inside the run), the second must not find its header folder gone with the first run's folder.
    script = """
import os, sys, tempfile
import torch
from autoaccel.scratch import run_scratch
with run_scratch() as first:
    import torch._inductor.codecache as codecache
print(codecache._HEADER_DIR.startswith(str(first)), os.path.isdir(str(first)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"], done.stdout  # the headers' folder is not the removed run's
