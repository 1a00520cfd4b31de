"""pluggy hook specifications for project ``autoaccel``.

Implement them with ``autoaccel.hookimpl`` in a module named by an entry point of group ``autoaccel``::

    [project.entry-points.autoaccel]
    my_technique = "my_package.my_module"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autoaccel.markers import PROJECT, hookimpl, hookspec

if TYPE_CHECKING:
    from autoaccel.plugin._strategy import Strategy
    from autoaccel.task import Target

__all__ = ["PROJECT", "hookimpl", "hookspec"]


@hookspec
def autoaccel_register_strategies(register: Callable[["Strategy[Any]"], None]) -> None:
    """Register strategies by calling ``register(strategy_instance)`` once per strategy.

    The core validates each one (a Strategy, a lowercase name, a readable search space) and reports a name
    registered twice as one error naming both distributions.
    """


@hookspec(firstresult=True)
def autoaccel_detect_target(spec: str) -> "Target | None":
    """Return the Target for ``spec`` (``auto``, ``cpu``, ``cuda:1``, ``xla`` ...), or None to let others try.

    The first non-None answer wins; the built-in detector runs last, so a plugin can add or refine a device.
    """


@hookspec
def autoaccel_trial_finished(record: dict[str, Any]) -> None:
    """Observe a finished trial (reporters, loggers).

    ``record`` is the trial's stored record (``autoaccel.trial._record.TrialRecord.describe()``): ``number``, ``state``
    (complete/failed), ``params``, ``config``, ``goal``, ``metrics``, ``ci95``, ``details``, ``failure_kind``,
    ``reason`` and the rest of its fields.
    """
