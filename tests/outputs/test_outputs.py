"""Outputs are published as one generation: whatever kills the writer, and wherever, OUT/pareto.json,
recipe.yaml, report.html and model/ are always the same, complete run; leftovers go at the next start."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autoaccel.cli import main
from autoaccel.errors import AutoaccelError
from autoaccel.outputs._publish import GENERATIONS, KILL_AT, OUTPUTS, Generation, current, sweep

pytestmark = pytest.mark.slow  # one real search, then many rebuilds from its study

KILL_POINTS = ("after:model", "after:pareto.json", "after:recipe.yaml", "after:report.html", "before:switch", "after:switch")


def generation_of(out: Path) -> dict[str, str]:
    """The generation each output name resolves to, read from the files themselves."""
    pareto = json.loads((out / "pareto.json").read_text())
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    html = (out / "report.html").read_text()
    model = (out / "model").resolve().parent.name
    report_gen = (out / "report.html").resolve().parent.name
    assert "</html>" in html, "report.html is whole"
    return {"pareto": pareto["generation"], "recipe": recipe["generation"], "report": report_gen, "model": model}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_digits import task_source, write_model

    root = tmp_path_factory.mktemp("outputs")
    model = write_model(root, task_source())
    out = root / "out"
    assert main(["optimize", str(model), "--target", "cpu", "--trials", "2", "--out", str(out), "--strategies", "batch_size",
                 "--remeasure-rounds", "0", "--quiet"]) == 0
    return out


def test_a_run_publishes_one_generation_with_user_facing_paths(run_dir: Path) -> None:
    gens = set(generation_of(run_dir).values())
    assert len(gens) == 1
    assert gens.pop() in [p.name for p in (run_dir / GENERATIONS).iterdir()]
    pareto = json.loads((run_dir / "pareto.json").read_text())
    assert pareto["export"]["files"]["state_dict"] == str(run_dir / "model" / "model.pt")
    assert (run_dir / "model" / "model.pt").is_file()
    for name in OUTPUTS[:3]:
        mode = stat.S_IMODE((run_dir / name).resolve().stat().st_mode)
        assert mode == 0o666 & ~_umask(), f"{name} has mode {oct(mode)}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_writer_killed_at_any_step_leaves_one_whole_generation(run_dir: Path, point: str) -> None:
    before = generation_of(run_dir)
    env = {**os.environ, KILL_AT: point}
    done = subprocess.run([sys.executable, "-m", "autoaccel.cli", "report", "--out", str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr
    after = generation_of(run_dir)
    assert len(set(after.values())) == 1, f"mixed outputs after a kill at {point}: {after}"
    assert after == before if point != "after:switch" else after != before
    # The next writer removes what the killed one left behind, and publishes a generation of its own.
    assert main(["report", "--out", str(run_dir)]) == 0
    assert len(set(generation_of(run_dir).values())) == 1
    # The current generation and the one it superseded (kept one round for readers); never a killed one's.
    assert len(list((run_dir / GENERATIONS).iterdir())) <= 2
    assert not list(run_dir.glob(".tmp.*"))


def test_a_full_disk_is_one_line_and_keeps_the_last_generation(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    before = generation_of(run_dir)
    real_open = open

    def full(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode and GENERATIONS in str(path) and str(path).endswith("recipe.yaml"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", full)
    assert main(["report", "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the disk is full" in err[0] and "untouched" in err[0]
    monkeypatch.undo()
    assert generation_of(run_dir) == before
    assert len(list((run_dir / GENERATIONS).iterdir())) <= 2


def test_sweep_spares_a_live_writer_and_removes_a_dead_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    live = Generation(out)  # this process: alive, but sweeping is its own business only once published
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        other = out / GENERATIONS / f"20260101T000000_{sleeper.pid}_abcdef"
        other.mkdir()
        (other / ".writer").write_text(os.uname().nodename)
        dead = out / GENERATIONS / "20260101T000000_999999999_abcdef"
        dead.mkdir()
        live.write("pareto.json", "{}")
        live.publish()
        assert current(out) == live.dir.resolve()
        assert other.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert other.name in sweep(out)


def test_an_out_that_is_a_file_is_one_line(tmp_path: Path, tiny_task_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out in (afile, afile / "below"):
        assert main(["optimize", str(tiny_task_file), "--trials", "1", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("autoaccel: error: --out:"), err


def test_generation_refuses_an_unwritable_folder(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    with pytest.raises(AutoaccelError, match="--out: cannot write"):
        Generation(out)


WRITER = """
import json, sys
from pathlib import Path
from autoaccel.outputs._publish import Generation
out = Path(sys.argv[1])
for i in range(int(sys.argv[2])):
    gen = Generation(out)
    body = json.dumps({"generation": gen.id, "rows": list(range(2000))})
    for name in ("pareto.json", "recipe.yaml", "report.html"):
        gen.write(name, body)
    (gen.path("model")).mkdir()
    gen.publish()
"""


# Alone: a race of three processes whose interleaving another test's load beside it stretches.
@pytest.mark.alone
def test_concurrent_writers_never_show_a_reader_half_a_file(tmp_path: Path) -> None:
    """Two runs publishing into one --out while a third process reads: every read is a whole file, and the
    names always agree on one generation."""
    out = tmp_path / "out"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(out), "40"]) for _ in range(2)]
    reads = invalid = vanished = 0
    while any(w.poll() is None for w in writers):
        try:
            text = (out / "pareto.json").read_text()
        except FileNotFoundError:
            vanished += reads > 0  # after the first publish: a generation swept between resolving and opening
            continue
        reads += 1
        try:
            json.loads(text)
        except ValueError:
            invalid += 1
    assert [w.returncode for w in writers] == [0, 0]
    assert reads > 50 and invalid == 0 and vanished == 0, (reads, invalid, vanished)
    assert len(set(generation_of_files(out).values())) == 1
    assert not list(out.glob(".tmp.*"))


def generation_of_files(out: Path) -> dict[str, str]:
    return {name: json.loads((out / name).read_text())["generation"] for name in ("pareto.json", "recipe.yaml", "report.html")}


def test_proposals_that_repeat_measured_configurations_fold_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from autoaccel.outputs import Progress

    progress = Progress(quiet=False)
    progress.trial(1, 8, 4, "compile.mode=default", "-> accuracy 0.9", "")
    for number, twin in ((5, 2), (6, 4), (7, 2)):
        progress.reused(number, twin)
    progress.trial(2, 8, 8, "pruning.amount=0.3", "-> accuracy 0.8", "")
    progress.reused(9, 8)
    progress.stop()
    lines = [line for line in capsys.readouterr().err.splitlines() if "reused" in line]
    assert lines == ["    reused 3 configurations measured before, not run again: #5 as #2, #6 as #4, #7 as #2",
                     "    reused a configuration measured before, not run again: #9 as #8"]
