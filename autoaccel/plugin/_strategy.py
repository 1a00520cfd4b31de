"""The Strategy contract every technique implements, built-in or third-party: a space, a section, hooks."""

from __future__ import annotations

import dataclasses
import graphlib
import heapq
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from autoaccel.errors import AutoaccelError
from autoaccel.plugin._pipeline import Pipeline, Section
from autoaccel.plugin._space import Param, Space, active, load_space, restrict

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    import torch
    from torch import nn

    from autoaccel.plugin._contexts import BuildContext, ServeContext, TrainingRun, TrainingSetup, TrainStats, TransformContext
    from autoaccel.task import Target, Task


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

# Where a training step spends its time, as the trial's profile splits it (Strategy.relieves names these):
# waiting for the next batch, copying it to the device, the forward pass with the loss, the backward pass, and
# the optimizer (zeroing gradients, the step, the scheduler).
PROFILE_PARTS = ("data", "copy", "forward", "backward", "optimizer")


@dataclass(frozen=True)
class Capability:
    """Whether a strategy can run on a target; ``allowed`` narrows categorical choices, ``reason`` says why."""

    supported: bool
    reason: str = ""
    allowed: Mapping[str, Sequence[Any]] = field(default_factory=dict)


SPACE_FILE = "space.yaml"
# The type of a strategy's own plan section: ``class Precision(Strategy[PrecisionSection])`` types every hook's
# ``section`` as a PrecisionSection (the core hands each strategy only the section it put in the plan).
S = TypeVar("S", bound=Section)


def home_package(cls: type) -> str:
    """The package a class is defined in: its module itself when that is a package's ``__init__``."""
    module = sys.modules[cls.__module__]
    return module.__name__ if hasattr(module, "__path__") else (module.__package__ or module.__name__)


class Strategy(ABC, Generic[S]):
    """One acceleration technique: its search space, its plan section and its behaviour.

    Subclasses set ``name`` and ``phase``, ship a YAML search space (``space.yaml`` in the strategy's own package
    folder, beside its code; or override :meth:`space`), and implement :meth:`apply`, which returns a *new* Pipeline holding the strategy's own
    section (``plan.with_section(self, MySection(...))``) and never mutates its input. Applying the defaults of
    the space must return a plan equal to its input: off means the user's recipe.

    Behaviour comes from the lifecycle hooks below, each called with the strategy's own section whenever a plan
    holds one; implement only those the technique needs. Order: by ``phase``, then as ``after``/``before``
    declare (names of other strategies; ignored when those are not installed), checked when plugins load.
    """

    name: ClassVar[str]
    phase: ClassVar[Phase]
    description: ClassVar[str] = ""
    # The package whose folder holds ``space.yaml``: by default the one the strategy's class is defined in (a
    # plugin is a folder: its code and its space side by side).
    space_package: ClassVar[str | None] = None
    # Whether the section changes what training does or how long it takes: then it keys the checkpoint cache, and
    # a trial of it trains its own model instead of reusing another recipe's.
    changes_training: ClassVar[bool] = False
    after: ClassVar[tuple[str, ...]] = ()
    before: ClassVar[tuple[str, ...]] = ()
    # Strategies this one cannot work without: a missing one is an error when plugins load.
    requires: ClassVar[tuple[str, ...]] = ()
    # Needs several trained models to exist (e.g. an ensemble): pointless in --mode inference, which has one.
    needs_training: ClassVar[bool] = False
    # Why a setting is known to disappoint ("method=unstructured": "..."), shown when the data says it did.
    hints: ClassVar[Mapping[str, str]] = {}
    # Parts of a training step this technique makes cheaper, among PROFILE_PARTS: the search screens first the
    # techniques that relieve where the user's own recipe spends its time, and the report says which part a
    # recommended technique relieved. Serving techniques leave it empty (they shorten evaluation, not training).
    relieves: ClassVar[tuple[str, ...]] = ()
    # Whether a run of it pays a one-off cost before its steps get fast (a compilation: on a CPU, a minute for a
    # ResNet), which a short run may not repay: among techniques that could remove as much, screening tries those
    # without one first, so a short budget is not spent on it before the cheap wins are known.
    one_off_cost: ClassVar[bool] = False

    def members_needed(self, params: Mapping[str, Any]) -> int:
        """How many *other* trained models the plan with ``params`` serves beside its own (an ensemble of k
        needs k - 1). The core picks them among the study's feasible trained models, puts them in the plan's
        ``members`` and charges their training to the plan."""
        return 0

    def probes(self, space: Mapping[str, Param]) -> list[dict[str, Any]]:
        """The settings the search tries with this technique alone against the user's recipe before combining
        techniques, most promising first (keys without the prefix; parameters left out stay at their defaults).

        ``space`` is this strategy's space as searched here (narrowed by --choices). By default: each parameter
        that applies with its siblings at their defaults, at each of its other values, in the space's order.
        Override when some settings only make sense together (a larger batch with its learning rate scaled).
        """
        defaults = {name: param.default for name, param in space.items()}
        return [{name: value} for name, param in space.items() if active(space, name, defaults)
                for value in param.grid_values() if value != param.default]

    def space(self, task: "Task | None" = None) -> Space:
        """The parameters this strategy varies; ``task`` lets a space adapt to the user's recipe."""
        return load_space(self.space_package or home_package(type(self)), SPACE_FILE)

    def check(self, target: "Target") -> Capability:
        """Whether this strategy runs on ``target``; may drop choices it cannot do there, with the reason."""
        return Capability(True)

    @abstractmethod
    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        """Return the plan with this strategy's ``params`` (keys without the ``<name>.`` prefix) applied."""

    # -- lifecycle hooks: each receives this strategy's own section of the running plan ------------------------

    def start(self, section: S, plan: Pipeline) -> None:
        """Per-process preparation before the plan runs (a trial, a re-measurement, an export)."""

    def build_model(self, section: S, model: "nn.Module | None", ctx: "BuildContext") -> "nn.Module | None":
        """The model to train instead of the task's: ``model`` is what earlier hooks built (None when none did;
        ``ctx.task.model()`` builds the task's own). Return None to leave the task's model."""
        return model

    def configure_training(self, section: S, setup: "TrainingSetup") -> None:
        """Change the training run: its batches, optimizer, scheduler, autocast, loss scaling, loss, contexts."""

    def left_out_by_default(self, target: "Target") -> str | None:
        """Why a search that does not name this strategy (no --strategies) leaves it out on ``target``, or None
        to search it. For a technique that can run here but rarely pays, and costs a lot to try."""
        return None

    def launch_training(self, section: S, job: "TrainingRun", model: "nn.Module") -> "TrainStats | None":
        """Take the whole training run elsewhere (several processes, other hosts): run ``job`` there, load the
        trained weights into ``model`` and return the run's statistics. None (the default): the core trains in
        the trial's own process."""
        return None

    def transform(self, section: S, model: "nn.Module", ctx: "TransformContext") -> "nn.Module":
        """A post-training change of the trained model (pruned, combined, quantized ...)."""
        return model

    def serve(self, section: S, model: "nn.Module", ctx: "ServeContext") -> "nn.Module":
        """What executes the model at inference (compiled, captured, another engine's session ...)."""
        return model

    def inference_context(self, section: S, plan: Pipeline) -> "AbstractContextManager[Any] | None":
        """A context entered around every inference call (autocast, backend flags), or None."""
        return None

    def prepare_input(self, section: S, inputs: "torch.Tensor", plan: Pipeline) -> "torch.Tensor":
        """An input batch as this technique wants it (a memory layout ...), in training and at inference."""
        return inputs

    def export(self, section: S, served: "nn.Module", path: "Path") -> bool:
        """Write the ONNX graph of what this technique serves (an engine's own graph, an int8 graph) to ``path``
        and return True; False (the default) leaves the export to the core, which exports the served model."""
        return False

    def recipe(self, section: S) -> dict[str, Any]:
        """What to set in your own training script to do what this section did (default: its fields)."""
        return dataclasses.asdict(section)

    def fits(self, model: "nn.Module", task: "Task", target: "Target") -> Capability:
        """Whether this technique can handle the user's model and task on ``target``: checked once, on a fresh
        untrained model, before any trial (an LSTM under fp16 on a CPU is ruled out in a second, not after a
        training run). May drop choices (``allowed``), saying why; the task's kind is ``task.resolved_kind()``."""
        return Capability(True)

    def capability(self, target: "Target", task: "Task | None" = None, model: "nn.Module | None" = None) -> Capability:
        """``check(target)``, narrowed by ``fits(model, task, target)`` when the model is given."""
        cap = self.check(target)
        if model is None or task is None or not cap.supported:
            return cap
        fit = self.fits(model, task, target)
        allowed = dict(cap.allowed)
        for key, values in fit.allowed.items():
            allowed[key] = [v for v in allowed.get(key, values) if v in values]
        reason = "; ".join(r for r in (cap.reason, fit.reason) if r)
        return Capability(fit.supported, reason, allowed)

    def effective_space(self, target: "Target", task: "Task | None" = None, model: "nn.Module | None" = None) -> Space:
        """The space after ``check(target)`` (and ``fits`` of ``model``) dropped what cannot run (defaults kept)."""
        space = self.space(task)
        allowed = self.capability(target, task, model).allowed
        return {k: restrict(p, allowed[k]) if k in allowed else p for k, p in space.items()}

    def defaults(self, task: "Task | None" = None) -> dict[str, Any]:
        return {k: p.default for k, p in self.space(task).items()}


def qualified(strategy: Strategy[Any], param: str) -> str:
    """Optuna parameter names are ``<strategy>.<param>``."""
    return f"{strategy.name}.{param}"


def parse_param(key: str) -> tuple[str, str]:
    """``"<strategy>.<param>"`` as (strategy, param): the one place a parameter's name is taken apart."""
    strategy, _, param = key.partition(".")
    return strategy, param


def strategy_of(key: str) -> str:
    """The strategy a ``<strategy>.<param>`` name belongs to."""
    return parse_param(key)[0]


def split_params(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Group ``{"a.x": 1, "b.y": 2}`` into ``{"a": {"x": 1}, "b": {"y": 2}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        strategy, param = parse_param(key)
        out.setdefault(strategy, {})[param] = value
    return out


def ordered(strategies: Sequence[Strategy[Any]]) -> list[Strategy[Any]]:
    """Declared order: phase first, then the ``after``/``before`` relations among the strategies present, then
    the name (so the order is deterministic). A relation against the phases or a cycle is one clear error."""
    by_name = {s.name: s for s in strategies}
    preds: dict[str, set[str]] = {s.name: set() for s in strategies}
    for s in strategies:
        for other in s.after:
            if other in by_name:
                preds[s.name].add(other)
        for other in s.before:
            if other in by_name:
                preds[other].add(s.name)
    for name, earlier in preds.items():
        for other in earlier:
            if by_name[other].phase > by_name[name].phase:
                raise AutoaccelError(
                    f"strategy '{name}' (phase {by_name[name].phase.name.lower()}) is declared to act after '{other}' "
                    f"(phase {by_name[other].phase.name.lower()}), a later phase; fix its after/before declarations")
    try:
        graphlib.TopologicalSorter(preds).prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise AutoaccelError(f"strategies declare a cycle of after/before relations: {cycle}; remove one of them") from exc
    # Kahn's algorithm with the earliest (phase, name) first among those whose predecessors have all acted.
    waiting = {n: set(p) for n, p in preds.items()}
    ready = [(int(by_name[n].phase), n) for n, p in waiting.items() if not p]
    heapq.heapify(ready)
    out: list[Strategy[Any]] = []
    while ready:
        _, name = heapq.heappop(ready)
        out.append(by_name[name])
        for other, p in waiting.items():
            if name in p:
                p.discard(name)
                if not p:
                    heapq.heappush(ready, (int(by_name[other].phase), other))
    return out


def check_relations(strategies: Sequence[Strategy[Any]], origins: Mapping[str, str] | None = None) -> None:
    """Fail on a required strategy that is not installed, a profile part that does not exist, or an order that
    cannot hold (see ``ordered``)."""
    names = {s.name for s in strategies}
    for s in strategies:
        if unknown := [p for p in s.relieves if p not in PROFILE_PARTS]:
            raise AutoaccelError(f"strategy '{s.name}': relieves names {', '.join(map(repr, unknown))}, expected some of "
                                 f"{', '.join(PROFILE_PARTS)}")
        missing = [r for r in s.requires if r not in names]
        if missing:
            where = f" (distribution '{origins[s.name]}')" if origins and s.name in origins else ""
            raise AutoaccelError(f"strategy '{s.name}'{where} requires strategy {', '.join(repr(m) for m in missing)}, "
                                 "which is not installed; install it or uninstall this plugin")
    ordered(strategies)


def apply_all(strategies: Sequence[Strategy[Any]], pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
    """Apply every strategy in phase order (then by name); a strategy with no params keeps its off value."""
    grouped = split_params(params)
    for strategy in ordered(strategies):
        if strategy.name in grouped:
            pipeline = strategy.apply(pipeline, grouped[strategy.name])
    return pipeline
