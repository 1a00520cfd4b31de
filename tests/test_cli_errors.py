"""Bad input to `autoaccel optimize`: exit code 2, ONE line on stderr naming the file, field or flag, no
traceback, and an existing study in --out left exactly as it was."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from autoaccel.cli import main
from study_snapshot import snapshot_study
from tiny_digits import task_source, write_model

IMPORT_ERROR_SOURCE = task_source(prelude="import not_a_real_module_xyz")
SYNTAX_ERROR_SOURCE = "import torch\nfrom autoaccel import Task\ntask = Task(model=torch.nn.Linear(64, 10)\n\nx = 1\n"
# A realistic multi-line exception: torch's load_state_dict lists the missing keys on a second line.
STATE_DICT_SOURCE = """\
from torch import nn


def task():
    model = nn.Linear(64, 10)
    model.load_state_dict({})
"""


def line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), start=1) if text in line)


@dataclass(frozen=True)
class Case:
    """One bad command: the model.py to write (None: the valid tiny task), extra flags, the expected message."""

    source: str | None
    message: str
    args: tuple[str, ...] = ()
    filename: str = "model.py"
    write: bool = True
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())


no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")

CASES: dict[str, Case] = {
    "missing-file": Case(None, r"nope\.py: no such file; expected a Python file that defines `task`",
                         filename="nope.py", write=False),
    "syntax-error": Case(SYNTAX_ERROR_SOURCE, r"model\.py:3: syntax error: "),
    "import-error": Case(
        IMPORT_ERROR_SOURCE,
        rf"model\.py:{line_of(IMPORT_ERROR_SOURCE, 'not_a_real_module_xyz')}: importing the file failed: "
        r"ModuleNotFoundError: No module named 'not_a_real_module_xyz'",
    ),
    "no-task": Case("import torch\n\nmodel = torch.nn.Linear(64, 10)\n", r"model\.py: defines no `task`"),
    "task-wrong-type": Case(task_source(epilogue='task = {"model": make_model}'),
                            r"model\.py: `task` must be an autoaccel\.Task \(or a function returning one\), but got dict"),
    "factory-not-a-module": Case(task_source(model='"a string"'),
                                 r"Task\.model: the factory must return a torch\.nn\.Module, but returned str"),
    "train-data-not-a-dataset": Case(task_source(train_data="42"), r"Task\.train_data: expected a map-style dataset .*but got int"),
    "val-data-not-pairs": Case(task_source(val_data="list(range(10))"),
                               r"Task\.val_data: each item must be an \(input, target\) pair, a dict of model inputs or an input tensor, but item 0 is int"),
    "unknown-metric": Case(task_source(metric='"acuracy"'), r"Task\.metric: unknown metric 'acuracy'; did you mean 'accuracy'\?"),
    "forward-fails": Case(task_source(model="nn.Linear(10, 5)"),
                          r"Task\.model: forward failed on a batch of train_data with input shape \(3, 64\): RuntimeError"),
    "unknown-strategy": Case(None, r"--strategies: unknown strategy 'precison'; did you mean 'precision'\?",
                             args=("--strategies", "precison")),
    "unknown-objective": Case(None, r"--objectives: unknown objective 'latncy'; did you mean 'latency'\?",
                              args=("--objectives", "accuracy,latncy")),
    "cuda-without-gpu": Case(None, r"--target cuda: no CUDA device is available here", args=("--target", "cuda"),
                             marks=(no_cuda,)),
    "zero-budget": Case(None, r"--budget: must be a positive number of minutes, e\.g\. 5, but got 0\.0",
                        args=("--budget", "0")),
    "negative-accuracy-drop": Case(None, r"--max-quality-drop: must be >= 0, .*but got '-0\.5'",
                                   args=("--max-accuracy-drop", "-0.5")),
    "val-fraction-out-of-range": Case(None, r"--val-fraction: must be a share of your validation set in \(0, 1\], .*but got '1\.5'",
                                      args=("--val-fraction", "1.5")),
    "val-fraction-of-another-study": Case(None, r"--val-fraction: this study measured quality on 1 of the validation set, "
                                                r"not 0\.5; give --val-fraction 1 to continue it", args=("--val-fraction", "1/2")),
    "task-call-fails-multiline": Case(
        STATE_DICT_SOURCE, r"model\.py:6: calling `task\(\)` failed: RuntimeError: Error\(s\) in loading state_dict",
    ),
}


def one_line_error(err: str, pattern: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("autoaccel: error: "), lines[0]
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize("case", [pytest.param(c, id=name, marks=c.marks) for name, c in CASES.items()])
def test_bad_input_is_one_line_and_leaves_the_study_untouched(
    case: Case, tmp_path: Path, tiny_task_file: Path, existing_study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if case.source is None and case.write:
        path = tiny_task_file
    elif case.write:
        path = write_model(tmp_path, case.source or "", case.filename)
    else:
        path = tmp_path / case.filename
    before = snapshot_study(existing_study)
    code = main(["optimize", str(path), "--out", str(existing_study), "--target", "cpu", "--trials", "1", *case.args])
    out, err = capsys.readouterr()
    assert code == 2
    one_line_error(err, case.message)
    assert out == ""
    assert snapshot_study(existing_study) == before


def test_debug_shows_the_traceback(tiny_task_file: Path, tmp_path: Path) -> None:
    from autoaccel import AutoaccelError

    with pytest.raises(AutoaccelError, match="unknown objective"):
        main(["--debug", "optimize", str(tiny_task_file), "--out", str(tmp_path / "o"), "--objectives", "accuracy,latncy"])


def test_python_m_autoaccel_cli_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "autoaccel.cli", "optimize", str(tmp_path / "nope.py")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("autoaccel: error: ") and "no such file" in out.stderr
