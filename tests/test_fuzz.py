"""Fuzzing what users type: every --choices value and every recipe file is either accepted or refused with one
AutoaccelError (exit 2, one line); nothing else escapes (no traceback), whatever the input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoaccel.cli import main, parse_choices
from autoaccel.errors import AutoaccelError
from autoaccel.options import Options
from autoaccel.outputs._recipe import read_recipe, recipe_plan
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search._setup import set_up_search
from tiny_digits import make_task

TASK = make_task()
PM = plugin_manager()
PARAMS = ["batch_size.size", "precision.dtype", "scheduler.lr_factor", "pruning.amount", "dataloader.num_workers",
          "quantization.method", "warp.drive", "batch_size", "", "batch_size.nope"]
YAML_SNIPPETS = st.sampled_from(["*x", "[1", "%", "!!python/object/apply:os.system [id]", "&a 1", "{}", "[]", ".nan",
                                 "-.inf", "1e999", "0x10", "true", "~", "'", '"', "- 1", "? x", "|", "64", "fp16", "0.5"])
SETTLED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def outcome(call: Any) -> str:
    try:
        call()
    except AutoaccelError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000, "one line, of a readable length"
        return "refused"
    return "accepted"


@SETTLED
@given(name=st.sampled_from(PARAMS), values=st.lists(st.one_of(st.text(max_size=12), YAML_SNIPPETS), max_size=4))
def test_choices_are_accepted_or_refused_in_one_line(name: str, values: list[str]) -> None:
    item = f"{name}={','.join(values)}"

    def parse_and_narrow() -> None:
        set_up_search(TASK, Options(target="cpu", choices=parse_choices([item])), PM)

    outcome(parse_and_narrow)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                      max_leaves=8)


@SETTLED
@given(params=st.dictionaries(st.sampled_from(PARAMS), values, max_size=4),
       extra=st.dictionaries(st.sampled_from(["goal", "answers", "task", "members", "trial"]), values, max_size=3))
@example(params={}, extra={"answers": {"\n": None}})  # a goal name with a newline, echoed in the error, once broke the line
def test_recipes_are_applied_or_refused_in_one_line(tmp_path_factory: Any, params: dict[str, Any], extra: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("r") / "recipe.yaml"
    path.write_text(yaml.safe_dump({"params": params, **extra}))
    outcome(lambda: recipe_plan(read_recipe(path), TASK, None))


@SETTLED
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")), YAML_SNIPPETS))
def test_any_recipe_file_is_read_or_refused_in_one_line(tmp_path_factory: Any, text: str) -> None:
    path = tmp_path_factory.mktemp("r") / "recipe.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    outcome(lambda: recipe_plan(read_recipe(path), TASK, None))


def test_the_listed_hostile_inputs_exit_2_with_one_line(tmp_path: Path, tiny_task_file: Path, capsys: Any) -> None:
    for value in ("*x", "[1", "%", "!!python/object/apply:os.system [id]"):
        assert main(["optimize", str(tiny_task_file), "--trials", "1", "--out", str(tmp_path / "o"),
                     "--choices", f"batch_size.size={value}"]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdef", "bcdefg")) + "params:\n  batch_size.size: *g\n"
    for name, text in (("bomb.yaml", bomb), ("huge.yaml", "params:\n  batch_size.size: huge\n"),
                       ("neg.yaml", "params:\n  batch_size.size: -5\n"), ("zero.yaml", "params:\n  batch_size.size: 0\n"),
                       ("nan.yaml", "params:\n  batch_size.size: .nan\n"), ("dtype.yaml", "params:\n  precision.dtype: 12\n"),
                       ("big.yaml", "params:\n  batch_size.size: 1000000000000\n"), ("keys.yaml", "params:\n  warp.drive: 1\n")):
        (tmp_path / name).write_text(text)
        assert main(["apply", str(tmp_path / name), str(tiny_task_file), "--out", str(tmp_path / "m.onnx")]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and len(err) < 400, (name, err[:400])
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)))
    assert main(["apply", str(tmp_path / "bin.yaml"), str(tiny_task_file), "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_nan_metric_stops_at_the_baseline_with_one_line(tmp_path: Path, capsys: Any) -> None:
    import optuna

    from tiny_digits import task_source, write_model

    model = write_model(tmp_path, task_source(metric='lambda o, t: float("nan") if len(t) > 2 else 0.5', name="net[/]v2"))
    assert main(["optimize", str(model), "--trials", "2", "--out", str(tmp_path / "o"), "--strategies", "batch_size",
                 "--study", "[/]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("autoaccel: error: the baseline (trial 0, your own recipe) failed: Task.metric (metric) was nan on the "
                       "validation set; it must be a finite number")
    assert any("study '[/]'" in line for line in err), "rich markup in names is printed as text"
    study = optuna.load_study(study_name="[/]", storage=f"sqlite:///{tmp_path / 'o' / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]


def test_a_damaged_study_database_is_one_line(tmp_path: Path, tiny_task_file: Path, existing_study: Path, capsys: Any) -> None:
    import sqlite3

    data = (existing_study / "study.db").read_bytes()
    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("create table studies(x)")
    con.commit()
    con.close()
    damaged = {"truncated": data[: len(data) // 3], "zeroed": data[:4096] + bytes(8192) + data[4096 + 8192:],
               "flipped": bytes(b ^ 0xFF if 5000 < i < 9000 else b for i, b in enumerate(data)),
               "garbage": bytes(range(256)) * 40, "other_tables": (tmp_path / "other.db").read_bytes()}
    for name, blob in damaged.items():
        out = tmp_path / name
        out.mkdir()
        (out / "study.db").write_bytes(blob)
        assert main(["optimize", str(tiny_task_file), "--trials", "1", "--out", str(out), "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("autoaccel: error: --storage:"), (name, err)
