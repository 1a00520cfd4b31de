"""The Strategy contract every technique implements, built-in or third-party."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from autoaccel.pipeline import Pipeline
from autoaccel.space import Space, load_space, restrict

if TYPE_CHECKING:
    from autoaccel.target import Target
    from autoaccel.task import Task


class Phase(IntEnum):
    """Where a strategy acts. The order is the order of application: pruning always precedes quantization."""

    DATA = 0
    MODEL = 1
    TRAIN = 2
    POST_TRAIN = 3
    RUNTIME = 4


MODES: dict[str, frozenset[Phase]] = {
    "train": frozenset({Phase.DATA, Phase.MODEL, Phase.TRAIN}),
    "inference": frozenset({Phase.MODEL, Phase.POST_TRAIN, Phase.RUNTIME}),
    "both": frozenset(Phase),
}

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Capability:
    """Whether a strategy can run on a target; ``allowed`` narrows categorical choices, ``reason`` says why."""

    supported: bool
    reason: str = ""
    allowed: Mapping[str, Sequence[Any]] = field(default_factory=dict)


class Strategy(ABC):
    """One acceleration technique.

    Subclasses set ``name`` and ``phase``, ship a YAML search space (``<space_package>/<name>.yaml``, or override
    :meth:`space`), and implement :meth:`apply`, which returns a *new* Pipeline and never mutates its input.
    Applying the defaults of the space must return a plan equal to its input: off means the user's recipe.
    """

    name: ClassVar[str]
    phase: ClassVar[Phase]
    description: ClassVar[str] = ""
    space_package: ClassVar[str] = "autoaccel.search_spaces"
    # Needs several trained models to exist (e.g. ensembling): pointless in --mode inference, which has one.
    needs_training: ClassVar[bool] = False

    def members_needed(self, params: Mapping[str, Any]) -> int:
        """How many *other* trained models the plan with ``params`` serves beside its own (an ensemble of k
        needs k - 1). The core picks them among the study's feasible trained models, puts them in the plan's
        ``members`` and charges their training to the plan."""
        return 0

    def space(self, task: "Task | None" = None) -> Space:
        """The parameters this strategy varies; ``task`` lets a space adapt to the user's recipe."""
        return load_space(self.space_package, f"{self.name}.yaml")

    def unavailable(self, task: "Task | None") -> str | None:
        """Why this strategy cannot apply to ``task`` (e.g. distillation without a student), or None."""
        return None

    def check(self, target: "Target") -> Capability:
        """Whether this strategy runs on ``target``; may drop choices it cannot do there, with the reason."""
        return Capability(True)

    @abstractmethod
    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        """Return the plan with this strategy's ``params`` (keys without the ``<name>.`` prefix) applied."""

    def effective_space(self, target: "Target", task: "Task | None" = None) -> Space:
        """The space after ``check(target)`` dropped what the target cannot run (defaults always kept)."""
        space = self.space(task)
        allowed = self.check(target).allowed
        return {k: restrict(p, allowed[k]) if k in allowed else p for k, p in space.items()}

    def defaults(self, task: "Task | None" = None) -> dict[str, Any]:
        return {k: p.default for k, p in self.space(task).items()}


def qualified(strategy: Strategy, param: str) -> str:
    """Optuna parameter names are ``<strategy>.<param>``."""
    return f"{strategy.name}.{param}"


def split_params(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Group ``{"a.x": 1, "b.y": 2}`` into ``{"a": {"x": 1}, "b": {"y": 2}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        strategy, _, param = key.partition(".")
        out.setdefault(strategy, {})[param] = value
    return out


def ordered(strategies: Sequence[Strategy]) -> list[Strategy]:
    """Phase order, then by name, so the order is deterministic."""
    return sorted(strategies, key=lambda s: (int(s.phase), s.name))


def apply_all(strategies: Sequence[Strategy], pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
    """Apply every strategy in phase order (then by name); a strategy with no params keeps its off value."""
    grouped = split_params(params)
    for strategy in ordered(strategies):
        if strategy.name in grouped:
            pipeline = strategy.apply(pipeline, grouped[strategy.name])
    return pipeline
