"""Search-space parameters: what a strategy may vary, its off/default value, and how Optuna samples it.

A strategy's space lives in a YAML file (``search_spaces/<name>.yaml`` for built-ins) of the form::

    params:
      dtype: {choices: [fp32, bf16, fp16], default: fp32}
      workers: {int: [0, 8], default: 0}
      lr_factor: {float: [0.25, 4.0], log: true, default: 1.0}

The default is the "off" value: all defaults together are the user's own recipe (trial 0, the baseline).

A parameter that means nothing under a sibling's value declares when it applies, so it is never suggested
(or written into a recipe) where it would change nothing::

      amount: {choices: [0.25, 0.5], default: 0.5, when: {method: {not: [none]}}}
      lr_scaling: {choices: [none, linear], default: none, when: {size: changed}}

A condition is a list of the sibling's values that enable the parameter, ``{not: [...]}`` for the values
that disable it, or ``changed`` (the sibling is off its default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Union

import optuna.distributions as od
import yaml

from autoaccel.errors import AutoaccelError


@dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]
    default: Any
    when: "Conditions" = ()

    def distribution(self) -> od.BaseDistribution:
        return od.CategoricalDistribution(list(self.choices))

    def grid_values(self) -> list[Any]:
        return list(self.choices)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        return value in self.choices


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    default: int
    log: bool = False
    when: "Conditions" = ()

    def distribution(self) -> od.BaseDistribution:
        return od.IntDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def grid_values(self) -> list[int]:
        if self.high - self.low <= 8:
            return list(range(self.low, self.high + 1))
        return sorted({self.low, self.default, (self.low + self.high) // 2, self.high})

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    default: float
    log: bool = False
    when: "Conditions" = ()

    def distribution(self) -> od.BaseDistribution:
        return od.FloatDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def grid_values(self) -> list[float]:
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        return sorted({self.low, self.default, mid, self.high})

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class Condition:
    """When a parameter applies, judged on one sibling's value: inside ``values`` (or outside, when ``negate``);
    ``changed`` means the sibling is off its default."""

    sibling: str
    values: tuple[Any, ...] = ()
    negate: bool = False
    changed: bool = False

    def holds(self, value: Any, default: Any) -> bool:
        if self.changed:
            return bool(value != default)  # the values of a space (numbers, strings, booleans) compare to a bool
        return (value in self.values) != self.negate


Conditions = tuple[Condition, ...]
Param = Union[Categorical, IntRange, FloatRange]
Space = dict[str, Param]


def active(space: Mapping[str, Param], name: str, chosen: Mapping[str, Any]) -> bool:
    """Whether ``name`` applies given the siblings already ``chosen`` (missing siblings are at their default).

    A condition on an inactive sibling fails too: the sibling is at its default, and that is what is judged.
    """
    for cond in space[name].when:
        sibling = space[cond.sibling]
        if not cond.holds(chosen.get(cond.sibling, sibling.default), sibling.default):
            return False
    return True


def _parse_when(name: str, spec: Any, where: str) -> Conditions:
    if spec is None:
        return ()
    if not isinstance(spec, Mapping) or not spec:
        raise AutoaccelError(f"{where}: param '{name}'.when must map a sibling parameter to its values, but got {spec!r}")
    conds = []
    for sibling, rule in spec.items():
        if rule == "changed":
            conds.append(Condition(str(sibling), changed=True))
        elif isinstance(rule, Mapping) and set(rule) == {"not"} and isinstance(rule["not"], Sequence) and not isinstance(rule["not"], str):
            conds.append(Condition(str(sibling), tuple(rule["not"]), negate=True))
        elif isinstance(rule, Sequence) and not isinstance(rule, str):
            conds.append(Condition(str(sibling), tuple(rule)))
        else:
            raise AutoaccelError(f"{where}: param '{name}'.when.{sibling} must be a list of values, {{not: [...]}} or "
                                 f"'changed', but got {rule!r}")
    return tuple(conds)


def parse_param(name: str, spec: Any, where: str) -> Param:
    """Build one parameter from its YAML mapping, naming ``where`` (file and param) in any error."""
    if not isinstance(spec, Mapping) or "default" not in spec:
        raise AutoaccelError(f"{where}: param '{name}' must be a mapping with a 'default', but got {spec!r}")
    default = spec["default"]
    when = _parse_when(name, spec.get("when"), where)
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
            raise AutoaccelError(f"{where}: param '{name}'.choices must be a non-empty list, but got {choices!r}")
        param: Param = Categorical(tuple(choices), default, when)
    elif "int" in spec or "float" in spec:
        kind = "int" if "int" in spec else "float"
        bounds = spec[kind]
        if not (isinstance(bounds, Sequence) and len(bounds) == 2):
            raise AutoaccelError(f"{where}: param '{name}'.{kind} must be [low, high], but got {bounds!r}")
        log = bool(spec.get("log", False))
        cast = int if kind == "int" else float
        try:
            low, high = cast(bounds[0]), cast(bounds[1])
        except (TypeError, ValueError):
            raise AutoaccelError(f"{where}: param '{name}'.{kind} bounds must be numbers, but got {list(bounds)!r}") from None
        if low > high:
            raise AutoaccelError(f"{where}: param '{name}'.{kind} must be [low, high] with low <= high, but got {list(bounds)!r}")
        if log and low <= 0:
            raise AutoaccelError(f"{where}: param '{name}' has log: true, so its low bound must be > 0, but got {low!r}")
        # int() of the bounds converted by int just above: the same ints, typed as such.
        param = IntRange(int(low), int(high), default, log, when) if kind == "int" else FloatRange(low, high, default, log, when)
    else:
        raise AutoaccelError(f"{where}: param '{name}' needs one of 'choices', 'int' or 'float', but got {sorted(spec)}")
    if not param.contains(default):
        raise AutoaccelError(f"{where}: param '{name}' default {default!r} is not inside its own range")
    return param


def parse_space(data: Any, where: str) -> Space:
    if not isinstance(data, Mapping) or not isinstance(data.get("params"), Mapping):
        raise AutoaccelError(f"{where}: expected a top-level 'params' mapping of parameter specs")
    space = {str(name): parse_param(str(name), spec, where) for name, spec in data["params"].items()}
    for name, param in space.items():
        for cond in param.when:
            if cond.sibling not in space or cond.sibling == name:
                raise AutoaccelError(f"{where}: param '{name}'.when names '{cond.sibling}', which is not another "
                                     f"parameter of this space ({', '.join(space)})")
    return space


def load_space(package: str, filename: str) -> Space:
    """Read a search-space YAML that ships inside ``package`` (read with importlib.resources, so wheels work)."""
    where = f"{package}/{filename}"
    try:
        text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, TypeError) as exc:  # TypeError: not a package
        raise AutoaccelError(f"{where}: search-space file not found (a plugin ships its YAML as package data: see "
                             "docs/plugins.md)") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AutoaccelError(f"{where}: invalid YAML: {exc}") from exc
    return parse_space(data, where)


def restrict(param: Param, allowed: Sequence[Any]) -> Param:
    """Keep only ``allowed`` values (what a target's check() may drop); an int range shrinks to their span."""
    if isinstance(param, IntRange):
        inside = [v for v in allowed if param.contains(v)] + [param.default]
        return IntRange(min(inside), max(inside), param.default, param.log, param.when)
    if not isinstance(param, Categorical):
        return param
    kept = tuple(c for c in param.choices if c in allowed)
    if param.default not in kept:
        # The baseline must always stay reachable: the off value is never dropped.
        kept = (param.default, *kept)
    return Categorical(kept, param.default, param.when)
