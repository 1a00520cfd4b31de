"""space.py: YAML search spaces (parsing and its error messages) and restrict()."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import optuna.distributions as od
import pytest

from autoaccel.errors import AutoaccelError
from autoaccel.plugin._space import Categorical, FloatRange, IntRange, load_space, parse_param, parse_space, restrict

_counter = itertools.count()


@pytest.fixture
def space_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A throwaway importable package to hold YAML files, the way a plugin ships its search space."""
    name = f"aa_test_spaces_{next(_counter)}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, pkg


def write_yaml(pkg: Path, filename: str, text: str) -> str:
    (pkg / filename).write_text(textwrap.dedent(text), encoding="utf-8")
    return filename


# --- the built-in files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["precision", "batch_size", "dataloader", "scheduler"])
def test_builtin_spaces_load_through_importlib_resources(name: str) -> None:
    space = load_space(f"autoaccel.plugins.{name}", "space.yaml")
    assert space
    for param_name, param in space.items():
        assert param.contains(param.default), param_name
        assert isinstance(param.distribution(), od.BaseDistribution)


def test_scheduler_yaml_parses_to_the_documented_params() -> None:
    space = load_space("autoaccel.plugins.scheduler", "space.yaml")
    assert space["kind"] == Categorical(("constant", "step", "cosine", "onecycle"), "constant")
    assert space["warmup"] == Categorical((0.0, 0.05, 0.1), 0.0)
    assert space["lr_factor"] == FloatRange(0.25, 4.0, 1.0, log=True)


def test_valid_file_in_a_plugin_package(space_package: tuple[str, Path]) -> None:
    package, pkg = space_package
    filename = write_yaml(pkg, "mine.yaml", """
        params:
          mode: {choices: [slow, fast], default: slow}
          workers: {int: [0, 4], default: 0}
          ratio: {float: [0.1, 10.0], log: true, default: 1.0}
    """)
    space = load_space(package, filename)
    assert space == {
        "mode": Categorical(("slow", "fast"), "slow"),
        "workers": IntRange(0, 4, 0, False),
        "ratio": FloatRange(0.1, 10.0, 1.0, True),
    }
    assert isinstance(space["workers"].distribution(), od.IntDistribution)
    assert space["ratio"].distribution() == od.FloatDistribution(0.1, 10.0, log=True)
    assert space["mode"].distribution() == od.CategoricalDistribution(["slow", "fast"])


# --- errors name the file and the parameter ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params: [1, 2]\n", r"expected a top-level 'params' mapping"),
        ("something: else\n", r"expected a top-level 'params' mapping"),
        ("params:\n  dtype: {choices: [a, b]}\n", r"param 'dtype' must be a mapping with a 'default'"),
        ("params:\n  dtype: fp32\n", r"param 'dtype' must be a mapping with a 'default', but got 'fp32'"),
        ("params:\n  dtype: {choices: [], default: a}\n", r"param 'dtype'\.choices must be a non-empty list"),
        ("params:\n  dtype: {choices: abc, default: a}\n", r"param 'dtype'\.choices must be a non-empty list"),
        ("params:\n  workers: {int: [0, 4, 8], default: 0}\n", r"param 'workers'\.int must be \[low, high\]"),
        ("params:\n  ratio: {float: 2.0, default: 2.0}\n", r"param 'ratio'\.float must be \[low, high\]"),
        ("params:\n  workers: {range: [0, 4], default: 0}\n", r"param 'workers' needs one of 'choices', 'int' or 'float'"),
        ("params:\n  workers: {int: [0, 4], default: 9}\n", r"param 'workers' default 9 is not inside its own range"),
        ("params:\n  dtype: {choices: [a, b], default: c}\n", r"param 'dtype' default 'c' is not inside its own range"),
    ],
)
def test_malformed_space_names_file_and_param(space_package: tuple[str, Path], text: str, message: str) -> None:
    package, pkg = space_package
    filename = write_yaml(pkg, "broken.yaml", text)
    with pytest.raises(AutoaccelError, match=rf"^{package}/broken\.yaml: .*{message}"):
        load_space(package, filename)


def test_invalid_yaml_names_the_file(space_package: tuple[str, Path]) -> None:
    package, pkg = space_package
    filename = write_yaml(pkg, "bad.yaml", "params:\n  dtype: {choices: [a, b\n")
    with pytest.raises(AutoaccelError, match=rf"^{package}/bad\.yaml: invalid YAML"):
        load_space(package, filename)


def test_missing_file_names_the_file(space_package: tuple[str, Path]) -> None:
    package, _ = space_package
    with pytest.raises(AutoaccelError, match=rf"^{package}/nothing\.yaml: search-space file not found"):
        load_space(package, "nothing.yaml")


def test_missing_package_names_the_file() -> None:
    with pytest.raises(AutoaccelError, match=r"^no_such_package_xyz/a\.yaml: search-space file not found"):
        load_space("no_such_package_xyz", "a.yaml")


def test_non_numeric_bounds_name_file_and_param() -> None:
    with pytest.raises(AutoaccelError, match=r"^mine\.yaml: .*'workers'"):
        parse_param("workers", {"int": ["zero", 8], "default": 0}, "mine.yaml")


def test_log_range_must_be_positive() -> None:
    with pytest.raises(AutoaccelError, match=r"^mine\.yaml: .*'ratio'"):
        parse_param("ratio", {"float": [0.0, 4.0], "log": True, "default": 1.0}, "mine.yaml")


def test_parse_space_keeps_param_order_and_stringifies_names() -> None:
    space = parse_space({"params": {"b": {"choices": [1], "default": 1}, 2: {"int": [0, 1], "default": 0}}}, "x.yaml")
    assert list(space) == ["b", "2"]


# --- params -------------------------------------------------------------------------------------------------


def test_grid_values() -> None:
    assert IntRange(0, 4, 0).grid_values() == [0, 1, 2, 3, 4]
    assert IntRange(0, 100, 10).grid_values() == [0, 10, 50, 100]
    assert FloatRange(0.25, 4.0, 1.0, log=True).grid_values() == [0.25, 1.0, 4.0]
    assert FloatRange(0.0, 1.0, 0.1).grid_values() == [0.0, 0.1, 0.5, 1.0]
    assert Categorical(("a", "b"), "a").grid_values() == ["a", "b"]


def test_contains() -> None:
    assert IntRange(0, 8, 0).contains(8) and not IntRange(0, 8, 0).contains(9)
    assert not IntRange(0, 8, 0).contains(2.5)
    assert FloatRange(0.25, 4.0, 1.0).contains(4) and not FloatRange(0.25, 4.0, 1.0).contains(0.2)
    assert not FloatRange(0.25, 4.0, 1.0).contains("1.0")
    assert Categorical(("a", "b"), "a").contains("b") and not Categorical(("a", "b"), "a").contains("c")


# --- restrict() ---------------------------------------------------------------------------------------------


def test_restrict_categorical_keeps_allowed_in_original_order() -> None:
    param = Categorical(("fp32", "tf32", "bf16", "fp16"), "fp32")
    assert restrict(param, ["fp16", "fp32", "bf16"]) == Categorical(("fp32", "bf16", "fp16"), "fp32")


def test_restrict_never_drops_the_default() -> None:
    param = Categorical(("a", "b", "c"), "b")
    assert restrict(param, ["c"]) == Categorical(("b", "c"), "b")
    assert restrict(param, []) == Categorical(("b",), "b")


def test_restrict_ignores_values_the_param_does_not_have() -> None:
    assert restrict(Categorical((False, True), False), [False, "maybe"]) == Categorical((False,), False)


def test_restrict_int_range_shrinks_to_the_span_of_allowed_values() -> None:
    param = IntRange(0, 8, 0)
    assert restrict(param, [0, 1, 2]) == IntRange(0, 2, 0)
    # Values outside the declared range are ignored; the default stays inside.
    assert restrict(param, [3, 4, 50]) == IntRange(0, 4, 0)
    assert restrict(IntRange(1, 8, 4, log=True), [1, 2]) == IntRange(1, 4, 4, log=True)


def test_restrict_leaves_float_ranges_alone() -> None:
    param = FloatRange(0.25, 4.0, 1.0, log=True)
    assert restrict(param, [1.0]) is param
