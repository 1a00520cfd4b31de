"""Nothing left behind: no process outlives its study (normal end, a timeout of a forking model, kill -9 of
the main process, SIGTERM), no temporary folder outlives its run, and no password reaches an output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from autoaccel.cli import main
from autoaccel.scratch import PREFIX
from tiny_digits import task_source, write_model

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, /proc")]

# A model whose training forward (batches larger than the two samples of validation and warm-up) forks a child
# that would sleep for minutes, records both pids, then hangs: the worst a user's model can leave behind.
FORKING = textwrap.dedent('''
    import os

    PIDS = os.environ["AUTOACCEL_TEST_PIDS"]

    class Forking(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

        def forward(self, x):
            if x.shape[0] > 2 and self.training:
                child = os.fork()
                if child == 0:
                    time.sleep(300)
                    os._exit(0)
                with open(PIDS, "a") as fh:
                    fh.write(f"{os.getpid()} {child}\\n")
                time.sleep(300)
            return self.body(x)
''')


def descendants(root: int) -> list[int]:
    """Processes below ``root``, but multiprocessing's resource tracker and fork server (whose workers do count):
    one of each per process, idle between runs, they exit with it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return [p for p in found if b"resource_tracker" not in _cmdline(p) and b"forkserver" not in _cmdline(p)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return status != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def gone_within(pids: list[int], seconds: float) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def recorded(pids_file: Path, seconds: float = 120) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pids_file.exists() and pids_file.read_text().strip():
            return [int(p) for p in pids_file.read_text().split()]
        time.sleep(0.1)
    raise AssertionError("the forking model never trained")


@pytest.fixture
def forking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    pids = tmp_path / "pids.txt"
    monkeypatch.setenv("AUTOACCEL_TEST_PIDS", str(pids))
    return write_model(tmp_path, task_source(prelude=FORKING, model="Forking()")), pids


def scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}*")}


def test_a_normal_end_leaves_no_process_and_no_temp_folder(tmp_path: Path, tiny_task_file: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A temp folder of its own (this process's and its workers'): tests running beside it make theirs elsewhere.
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    before = scratch_folders()
    assert main(["optimize", str(tiny_task_file), "--target", "cpu", "--trials", "3", "--out", str(tmp_path / "out"),
                 "--mode", "inference", "--strategies", "runtime,quantization", "--remeasure-rounds", "2", "--quiet"]) == 0
    assert gone_within(descendants(os.getpid()), 5) == []
    # Only this run's folders count: a folder left by a process killed earlier (another run's) may be swept by it.
    assert scratch_folders() - before == set()
    assert not list(Path(tmp_path).rglob("autoaccel-ort-*")), "every ONNX Runtime trial's folder is removed"


def test_a_timeout_kills_everything_the_trial_started(tmp_path: Path, forking: tuple[Path, Path]) -> None:
    model, pids = forking
    assert main(["optimize", str(model), "--target", "cpu", "--trials", "1", "--trial-timeout", "5", "--out",
                 str(tmp_path / "out"), "--strategies", "batch_size", "--remeasure-rounds", "0", "--quiet"]) == 2
    worker, child = recorded(pids)
    assert gone_within([worker, child], 5) == [], "the forked child outlived the timed-out trial"
    assert gone_within(descendants(os.getpid()), 5) == []


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGHUP"])
def test_killing_the_main_process_leaves_no_orphan(tmp_path: Path, forking: tuple[Path, Path], how: str) -> None:
    model, pids = forking
    out = tmp_path / "out"
    main_proc = subprocess.Popen([sys.executable, "-m", "autoaccel.cli", "optimize", str(model), "--target", "cpu", "--trials",
                                  "2", "--out", str(out), "--strategies", "batch_size", "--quiet"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker, child = recorded(pids)
    main_proc.send_signal(getattr(signal, how))
    _, err = main_proc.communicate(timeout=60)
    assert gone_within([worker, child], 5) == [], f"orphans after {how} of the main process"
    if how == "SIGKILL":
        assert main_proc.returncode == -9
        return
    signum = getattr(signal, how)
    assert main_proc.returncode == 128 + signum
    assert err.strip().splitlines() == [f"autoaccel: interrupted by {how}; completed trials are kept in the study, "
                                        "re-run the same command to resume"]
    study = optuna.load_study(study_name="tiny-cpu-both", storage=f"sqlite:///{out / 'study.db'}")
    last = study.trials[-1]
    assert last.state == optuna.trial.TrialState.FAIL and last.user_attrs["reason"] == f"interrupted by {how}"


def test_no_password_reaches_a_message_or_an_output(tmp_path: Path, tiny_task_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    secret = "Pa55-w0rd-never-shown"
    url = f"postgresql+psycopg2://autoaccel:{secret}@127.0.0.1:9/studies"
    assert main(["optimize", str(tiny_task_file), "--trials", "1", "--storage", url, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert secret not in err and "autoaccel:***@127.0.0.1" in err
    # The outputs of a run record its storage: a run on SQLite, rebuilt through a URL that carries a password.
    from autoaccel.finish._summary import summarize_study
    from autoaccel.outputs._publish import Generation, publish

    out = tmp_path / "b"
    assert main(["optimize", str(tiny_task_file), "--target", "cpu", "--trials", "1", "--out", str(out),
                 "--strategies", "batch_size", "--remeasure-rounds", "0", "--quiet"]) == 0
    study = optuna.load_study(study_name="tiny-cpu-both", storage=f"sqlite:///{out / 'study.db'}")
    summary = summarize_study(study, ("accuracy", "train_time", "latency"), 0.01)
    publish(Generation(out), summary, study, {"task": "tiny", "study": "s", "storage": url})
    found = [p for p in out.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert found == [], f"the password is in {found}"
    assert json.loads((out / "pareto.json").read_text())["storage"] == "postgresql+psycopg2://autoaccel:***@127.0.0.1:9/studies"
