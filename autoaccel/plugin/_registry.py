"""Plugin loading: our own entry-point loader for group ``autoaccel`` and the validated ``register`` callback."""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from autoaccel.errors import AutoaccelError, describe, did_you_mean
from autoaccel.plugin import _hookspecs as hookspecs
from autoaccel.plugin._strategy import NAME_RE, Phase, Strategy, check_relations
from autoaccel.task import target

LOCAL = "<local>"


def plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with the core's own detector and, optionally, every installed plugin."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(target, name="autoaccel.task._target")
    if load_entrypoints:
        load_entrypoint_plugins(pm)
    return pm


def load_entrypoint_plugins(pm: pluggy.PluginManager) -> None:
    """Load every entry point of group ``autoaccel``; a plugin that fails to import is one clear error."""
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - whatever the plugin raises, name the distribution
            raise AutoaccelError(
                f"plugin '{ep.name}' from distribution '{dist}' failed to import ({ep.value}): {describe(exc)}; "
                f"fix or uninstall '{dist}'"
            ) from exc
        if pm.is_registered(plugin):
            continue
        name = f"{dist}:{ep.name}"
        pm.register(plugin, name=name)
        _ORIGINS.setdefault(pm, {})[name] = dist


# Per plugin manager: registered plugin name -> distribution that declared it (entry points only; plugins
# registered directly are LOCAL). Keyed by the manager, weakly, so origins never outlive it or leak to another.
_ORIGINS: "weakref.WeakKeyDictionary[pluggy.PluginManager, dict[str, str]]" = weakref.WeakKeyDictionary()


@dataclass
class Registry:
    """The strategies known to this process, with the distribution each came from."""

    strategies: dict[str, Strategy[Any]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Strategy[Any]:
        if name not in self.strategies:
            known = ", ".join(sorted(self.strategies))
            raise AutoaccelError(f"--strategies: unknown strategy '{name}'{did_you_mean(name, self.strategies)} (known: {known})")
        return self.strategies[name]

    def select(self, names: Iterable[str] | None, exclude: Iterable[str] = ()) -> list[Strategy[Any]]:
        """The strategies named (all when ``names`` is None), less those in ``exclude``."""
        left_out = set()
        for name in exclude:
            if name not in self.strategies:
                known = ", ".join(sorted(self.strategies))
                raise AutoaccelError(f"--exclude: unknown strategy '{name}'{did_you_mean(name, self.strategies)} (known: {known})")
            left_out.add(name)
        chosen = list(self.strategies.values()) if names is None else [self.get(n) for n in names]
        return [s for s in chosen if s.name not in left_out]


def _validate(obj: Any, dist: str) -> Strategy[Any]:
    if isinstance(obj, type) and issubclass(obj, Strategy):
        obj = obj()
    if not isinstance(obj, Strategy):
        raise AutoaccelError(f"distribution '{dist}': register() expects a Strategy instance, but got {type(obj).__name__}")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise AutoaccelError(f"distribution '{dist}': strategy name must match {NAME_RE.pattern}, but got {name!r}")
    if not isinstance(getattr(obj, "phase", None), Phase):
        raise AutoaccelError(f"distribution '{dist}': strategy '{name}'.phase must be an autoaccel.Phase, but got {getattr(obj, 'phase', None)!r}")
    for attr in ("after", "before", "requires"):
        value = getattr(obj, attr, ())
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise AutoaccelError(f"distribution '{dist}': strategy '{name}'.{attr} must be a tuple of strategy names, but got {value!r}")
    if hasattr(obj, "unavailable"):
        # Folded into fits(): a plugin still defining it would have its check silently skipped.
        raise AutoaccelError(f"distribution '{dist}': strategy '{name}' defines unavailable(task), which autoaccel folded into "
                             "fits(model, task, target): return Capability(False, reason) from fits instead (docs/plugins.md)")
    obj.space()  # a broken search space is reported now, naming its file, not in the middle of a study
    return obj


def collect_strategies(pm: pluggy.PluginManager) -> Registry:
    """Call every ``autoaccel_register_strategies`` implementation with a register callback bound to its origin."""
    registry = Registry()
    for impl in pm.hook.autoaccel_register_strategies.get_hookimpls():
        dist = _ORIGINS.get(pm, {}).get(impl.plugin_name, LOCAL)

        def register(obj: Any, _dist: str = dist) -> None:
            strategy = _validate(obj, _dist)
            if strategy.name in registry.strategies:
                raise AutoaccelError(
                    f"strategy '{strategy.name}' is registered twice: by distribution '{registry.origins[strategy.name]}' "
                    f"and by '{_dist}'; uninstall one of them or rename its strategy"
                )
            registry.strategies[strategy.name] = strategy
            registry.origins[strategy.name] = _dist

        impl.function(register=register)
    # Relations are checked once everything is loaded: a cycle or a missing required strategy is one error now,
    # not a surprise in the middle of a study.
    check_relations(list(registry.strategies.values()), registry.origins)
    return registry


def default_registry() -> Registry:
    return collect_strategies(plugin_manager())


__all__ = ["Registry", "collect_strategies", "default_registry", "plugin_manager"]
