"""registry.py and hookspecs.py: a fresh pluggy plugin manager per test, the register callback's validation,
duplicate names, broken plugins, and one test per hook."""

from __future__ import annotations

import gc
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy
import pytest

import autoaccel.plugin._registry as registry
from autoaccel import AutoaccelError, Phase, Pipeline, Strategy, Target, hookimpl
from autoaccel.plugin._registry import LOCAL, collect_strategies, load_entrypoint_plugins, plugin_manager
from autoaccel.plugin._strategy import ordered


class Dummy(Strategy[Any]):
    """A valid strategy reusing the scheduler's YAML (so its space is readable)."""

    name = "scheduler"
    phase = Phase.TRAIN
    space_package = "autoaccel.plugins.scheduler"  # outside a plugin folder: the package whose space.yaml it reads

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline


def named(strategy_name: str, strategy_phase: Any = Phase.TRAIN, yaml_name: str = "scheduler", **relations: Any) -> Strategy:
    class Named(Dummy):
        name = strategy_name
        phase = strategy_phase
        after = relations.get("after", ())
        before = relations.get("before", ())
        requires = relations.get("requires", ())

        def space(self, task: object = None) -> Any:
            from autoaccel.plugin._space import load_space

            return load_space(f"autoaccel.plugins.{yaml_name}", "space.yaml")

    return Named()


class StrategyPlugin:
    """A plugin object whose hook registers ``objs`` (anything: the core must validate what it gets)."""

    def __init__(self, *objs: object) -> None:
        self.objs = objs

    @hookimpl
    def autoaccel_register_strategies(self, register: Callable[[Any], None]) -> None:
        for obj in self.objs:
            register(obj)


@dataclass
class FakeDist:
    name: str


@dataclass
class FakeEntryPoint:
    """What load_entrypoint_plugins reads from an importlib.metadata.EntryPoint."""

    name: str
    value: str
    dist: FakeDist | None
    plugin: object = None
    error: Exception | None = None

    def load(self) -> object:
        if self.error is not None:
            raise self.error
        return self.plugin


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, eps: Sequence[FakeEntryPoint]) -> list[str]:
    """Make registry.entry_points return ``eps``; returns the list of groups it was asked for."""
    asked: list[str] = []

    def entry_points(*, group: str) -> list[FakeEntryPoint]:
        asked.append(group)
        return list(eps)

    monkeypatch.setattr(registry, "entry_points", entry_points)
    return asked


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return plugin_manager(load_entrypoints=False)


# --- the manager ---------------------------------------------------------------------------------------------


def test_fresh_manager_without_entrypoints_has_only_the_core_detector(pm: pluggy.PluginManager) -> None:
    assert [pm.get_name(p) for p in pm.get_plugins()] == ["autoaccel.task._target"]
    assert collect_strategies(pm).strategies == {}
    assert pm.project_name == "autoaccel"


def test_default_manager_loads_the_builtins_from_distribution_autoaccel() -> None:
    reg = collect_strategies(plugin_manager())
    assert set(reg.strategies) >= {"precision", "batch_size", "dataloader", "scheduler"}
    for name in ("precision", "batch_size", "dataloader", "scheduler"):
        assert reg.origins[name] == "autoaccel"
        assert type(reg.strategies[name]).__module__ == f"autoaccel.plugins.{name}"


def test_each_manager_is_independent(pm: pluggy.PluginManager) -> None:
    pm.register(StrategyPlugin(named("mine")))
    assert set(collect_strategies(pm).strategies) == {"mine"}
    assert collect_strategies(plugin_manager(load_entrypoints=False)).strategies == {}


# --- register() validation -----------------------------------------------------------------------------------


def test_register_accepts_an_instance_or_a_strategy_class(pm: pluggy.PluginManager) -> None:
    pm.register(StrategyPlugin(named("first"), Dummy))
    reg = collect_strategies(pm)
    assert set(reg.strategies) == {"first", "scheduler"}
    assert isinstance(reg.strategies["scheduler"], Dummy)
    assert reg.origins == {"first": LOCAL, "scheduler": LOCAL}
    assert reg.get("first") is reg.strategies["first"]
    assert reg.select(["scheduler"]) == [reg.strategies["scheduler"]]
    assert len(reg.select(None)) == 2


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (42, r"register\(\) expects a Strategy instance, but got int"),
        ("precision", r"register\(\) expects a Strategy instance, but got str"),
        (types.SimpleNamespace(name="x", phase=Phase.TRAIN), r"register\(\) expects a Strategy instance, but got SimpleNamespace"),
        (named("Bad-Name"), r"strategy name must match .*but got 'Bad-Name'"),
        (named("9lives"), r"strategy name must match .*but got '9lives'"),
        (named("good", strategy_phase=2), r"strategy 'good'\.phase must be an autoaccel\.Phase, but got 2"),
        (named("good", yaml_name="no_such_space"), r"autoaccel\.plugins\.no_such_space/space\.yaml: search-space file not found"),
        (named("good", after="scheduler"), r"strategy 'good'\.after must be a tuple of strategy names, but got 'scheduler'"),
        (named("good", requires=("ok", 3)), r"strategy 'good'\.requires must be a tuple of strategy names"),
    ],
)
def test_register_rejects_invalid_arguments(pm: pluggy.PluginManager, obj: object, message: str) -> None:
    pm.register(StrategyPlugin(obj))
    with pytest.raises(AutoaccelError, match=message):
        collect_strategies(pm)


def test_invalid_registration_names_the_distribution(monkeypatch: pytest.MonkeyPatch, pm: pluggy.PluginManager) -> None:
    fake_entry_points(monkeypatch, [FakeEntryPoint("thing", "acme_accel.thing", FakeDist("acme-accel"), StrategyPlugin(42))])
    load_entrypoint_plugins(pm)
    with pytest.raises(AutoaccelError, match=r"^distribution 'acme-accel': register\(\) expects a Strategy instance"):
        collect_strategies(pm)


def test_strategy_without_a_name_is_rejected(pm: pluggy.PluginManager) -> None:
    class Nameless(Strategy):
        phase = Phase.TRAIN

        def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
            return pipeline

    pm.register(StrategyPlugin(Nameless()))
    with pytest.raises(AutoaccelError, match=r"strategy name must match .*but got None"):
        collect_strategies(pm)


# --- duplicates and broken plugins -----------------------------------------------------------------------------


def test_duplicate_name_from_two_distributions_names_both(monkeypatch: pytest.MonkeyPatch, pm: pluggy.PluginManager) -> None:
    asked = fake_entry_points(monkeypatch, [
        FakeEntryPoint("fast", "acme_accel.fast", FakeDist("acme-accel"), StrategyPlugin(named("turbo"))),
        FakeEntryPoint("turbo", "other_accel.turbo", FakeDist("other-accel"), StrategyPlugin(named("turbo"))),
    ])
    load_entrypoint_plugins(pm)
    assert asked == ["autoaccel"]
    with pytest.raises(AutoaccelError, match=r"strategy 'turbo' is registered twice: by distribution 'acme-accel' and by 'other-accel'"):
        collect_strategies(pm)


def test_duplicate_of_a_builtin_names_autoaccel(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = plugin_manager()  # the real entry points: precision comes from distribution 'autoaccel'
    fake_entry_points(monkeypatch, [
        FakeEntryPoint("precision", "acme_accel.precision", FakeDist("acme-accel"), StrategyPlugin(named("precision", yaml_name="precision"))),
    ])
    load_entrypoint_plugins(pm)
    with pytest.raises(AutoaccelError, match=r"'precision' is registered twice: by distribution 'autoaccel' and by 'acme-accel'"):
        collect_strategies(pm)


def test_plugin_failing_to_import_is_one_error_naming_the_distribution(monkeypatch: pytest.MonkeyPatch,
                                                                       pm: pluggy.PluginManager) -> None:
    fake_entry_points(monkeypatch, [
        FakeEntryPoint("broken", "acme_accel.broken", FakeDist("acme-accel"), error=ImportError("No module named 'cuda_magic'")),
    ])
    with pytest.raises(AutoaccelError) as info:
        load_entrypoint_plugins(pm)
    message = str(info.value)
    assert "\n" not in message
    assert "plugin 'broken' from distribution 'acme-accel' failed to import (acme_accel.broken)" in message
    assert "ImportError: No module named 'cuda_magic'" in message
    assert "uninstall 'acme-accel'" in message
    assert isinstance(info.value.__cause__, ImportError)


def test_plugin_raising_anything_at_import_is_reported_too(monkeypatch: pytest.MonkeyPatch, pm: pluggy.PluginManager) -> None:
    fake_entry_points(monkeypatch, [FakeEntryPoint("odd", "odd.mod", None, error=ZeroDivisionError("division by zero"))])
    with pytest.raises(AutoaccelError, match=r"plugin 'odd' from distribution 'unknown distribution' failed to import .*ZeroDivisionError"):
        load_entrypoint_plugins(pm)


def test_same_plugin_object_from_two_entry_points_is_registered_once(monkeypatch: pytest.MonkeyPatch,
                                                                     pm: pluggy.PluginManager) -> None:
    plugin = StrategyPlugin(named("once"))
    fake_entry_points(monkeypatch, [
        FakeEntryPoint("a", "acme.a", FakeDist("acme-accel"), plugin),
        FakeEntryPoint("b", "acme.b", FakeDist("acme-accel"), plugin),
    ])
    load_entrypoint_plugins(pm)
    reg = collect_strategies(pm)
    assert reg.origins == {"once": "acme-accel"}


def test_unknown_strategy_suggests_the_closest() -> None:
    reg = collect_strategies(plugin_manager())
    with pytest.raises(AutoaccelError, match=r"--strategies: unknown strategy 'precison'; did you mean 'precision'\?"):
        reg.select(["precison"])


def test_select_leaves_out_the_excluded_and_refuses_unknown_names(pm: pluggy.PluginManager) -> None:
    pm.register(StrategyPlugin(named("first"), named("second"), named("third")))
    reg = collect_strategies(pm)
    assert [s.name for s in reg.select(None, exclude=["second"])] == ["first", "third"]
    assert [s.name for s in reg.select(["first", "second"], exclude=["second"])] == ["first"]
    with pytest.raises(AutoaccelError, match=r"--exclude: unknown strategy 'secnd'; did you mean 'second'\?"):
        reg.select(None, exclude=["secnd"])


# --- relations between strategies, checked when plugins load -------------------------------------------------


def test_a_missing_required_strategy_fails_at_load_naming_the_distribution(monkeypatch: pytest.MonkeyPatch,
                                                                             pm: pluggy.PluginManager) -> None:
    fake_entry_points(monkeypatch, [
        FakeEntryPoint("needy", "acme.needy", FakeDist("acme-accel"), StrategyPlugin(named("needy", requires=("helper",)))),
    ])
    load_entrypoint_plugins(pm)
    with pytest.raises(AutoaccelError, match=r"strategy 'needy' \(distribution 'acme-accel'\) requires strategy 'helper', "
                                             r"which is not installed"):
        collect_strategies(pm)
    pm.register(StrategyPlugin(named("helper")))
    assert set(collect_strategies(pm).strategies) == {"needy", "helper"}


def test_a_cycle_of_relations_fails_at_load(pm: pluggy.PluginManager) -> None:
    pm.register(StrategyPlugin(named("a", after=("b",)), named("b", after=("a",))))
    with pytest.raises(AutoaccelError, match="cycle of after/before relations"):
        collect_strategies(pm)


def test_a_relation_to_an_absent_strategy_is_ignored(pm: pluggy.PluginManager) -> None:
    pm.register(StrategyPlugin(named("alone", after=("not_installed",), before=("nor_this",))))
    assert list(collect_strategies(pm).strategies) == ["alone"]


def test_the_builtins_declare_an_order_that_holds() -> None:
    reg = collect_strategies(plugin_manager())  # check_relations ran: no cycle, nothing required is missing
    order = [s.name for s in ordered(list(reg.strategies.values()))]
    # What the built-ins declare: pruning shapes the model before it is ensembled, quantized, then served.
    assert order.index("pruning") < order.index("ensembling") < order.index("quantization") < order.index("runtime")
    assert order.index("quantization") < order.index("cuda_graphs") and order.index("compile") < order.index("cuda_graphs")


# --- one test per hook ------------------------------------------------------------------------------------------


def test_hook_register_strategies_from_a_module_plugin(pm: pluggy.PluginManager) -> None:
    module = types.ModuleType("my_accel_plugin")

    @hookimpl
    def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
        register(named("from_module"))

    module.autoaccel_register_strategies = autoaccel_register_strategies  # type: ignore[attr-defined]
    pm.register(module)
    assert list(collect_strategies(pm).strategies) == ["from_module"]


def test_hook_detect_target_first_result_wins_and_builtin_runs_last(pm: pluggy.PluginManager) -> None:
    custom = Target("cpu", "cpu", "my tuned cpu", 1, 1.0, None, ("fp32",), {})
    seen: list[str] = []

    class Detector:
        @hookimpl
        def autoaccel_detect_target(self, spec: str) -> Target | None:
            seen.append(spec)
            return custom if spec == "mine" else None

    pm.register(Detector())
    assert pm.hook.autoaccel_detect_target(spec="mine") is custom
    # A plugin answering None lets the built-in detector answer.
    builtin = pm.hook.autoaccel_detect_target(spec="cpu")
    assert builtin.kind == "cpu" and builtin is not custom
    assert seen == ["mine", "cpu"]


def test_hook_trial_finished_reaches_every_reporter(pm: pluggy.PluginManager) -> None:
    got: list[tuple[str, dict[str, Any]]] = []

    class Reporter:
        def __init__(self, label: str) -> None:
            self.label = label

        @hookimpl
        def autoaccel_trial_finished(self, record: dict[str, Any]) -> None:
            got.append((self.label, record))

    pm.register(Reporter("a"))
    pm.register(Reporter("b"))
    record = {"number": 3, "state": "complete", "params": {}, "metrics": {"accuracy": 1.0}, "reason": ""}
    pm.hook.autoaccel_trial_finished(record=record)
    assert sorted(label for label, _ in got) == ["a", "b"]
    assert all(r is record for _, r in got)



def test_origins_do_not_leak_between_managers(monkeypatch: pytest.MonkeyPatch) -> None:
    old = plugin_manager(load_entrypoints=False)
    plugin = StrategyPlugin(named("leaky"))
    eps = [FakeEntryPoint("leaky", "acme.leaky", FakeDist("acme-accel"), plugin)]
    fake_entry_points(monkeypatch, eps)
    load_entrypoint_plugins(old)
    dead_id = id(plugin)
    old.unregister(plugin)
    eps.clear()
    mine = named("mine")
    del plugin, old
    gc.collect()
    # CPython hands freed blocks to new objects of the same size; keep candidates alive until one reuses it.
    candidates = [StrategyPlugin(mine) for _ in range(200_000)]
    reused = next((c for c in candidates if id(c) == dead_id), None)
    if reused is None:
        pytest.skip("the allocator did not reuse the dead plugin's address this time")
    fresh = plugin_manager(load_entrypoints=False)
    fresh.register(reused)
    assert collect_strategies(fresh).origins == {"mine": LOCAL}


def test_a_strategy_still_defining_unavailable_is_refused_with_what_to_do_instead(pm: pluggy.PluginManager) -> None:
    """unavailable(task) was folded into fits(model, task, target): a plugin that kept it would have its check
    silently skipped, so loading it says so in one line."""

    class Old(Dummy):
        name = "old_style"

        def unavailable(self, task: object) -> str | None:
            return "never here"

    pm.register(StrategyPlugin(Old()))
    with pytest.raises(AutoaccelError, match=r"strategy 'old_style' defines unavailable\(task\).*fits\(model, task, target\)"):
        collect_strategies(pm)
