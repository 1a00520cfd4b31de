"""The Pipeline: an immutable plan of one trial, made of the user's recipe and one typed section per strategy.

Strategies never patch models or loops while a plan is being built; they return a new Pipeline holding their
own section (a frozen dataclass). When the trial runs, the core calls each section's strategy back through
the lifecycle hooks (see :mod:`autoaccel.trial._lifecycle`), in the order the strategies declared.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


class Owner(Protocol):
    """What a plan knows of the strategy a section belongs to (a ``Strategy``): its name, and whether it declared
    that it changes training. The lifecycle calls its hooks; the plan only carries it."""

    # Read-only: a Strategy declares both as class variables.
    @property
    def name(self) -> str: ...

    @property
    def changes_training(self) -> bool: ...


@dataclass(frozen=True)
class Section:
    """Base of a strategy's typed part of the plan. Subclass it with ``@dataclass(frozen=True)``.

    The three questions below let strategies cooperate without naming each other: a strategy that serves the
    model in its own numeric format says so, and one that would autocast reads it from the plan.
    """

    def fixes_precision(self) -> bool:
        """True when the served model runs in its own numeric format (int8, half weights, another engine), so
        inference must not autocast it."""
        return False

    def engine(self) -> str | None:
        """The engine that serves the model once it leaves PyTorch (e.g. ``"onnxruntime"``); None while PyTorch
        serves it, so PyTorch-only serving techniques (compilation, graph capture) know to stand aside."""
        return None

    def exportable(self) -> bool:
        """False when the model this section produces can no longer be exported to another engine."""
        return True

    def keeps_math(self) -> bool:
        """For a section that changes training: True when it changes only the training's speed (the loader, the
        memory layout, compilation, optimizer kernels), not its math (batch, LR, precision, schedule, data). A
        trial of speed-only changes then needs no quality verdict of its own: its quality is that of the plan
        with the same math, once its loss agrees with that plan's within :meth:`math_tolerance`.

        For a serving section: True when the served model computes the trained model's outputs up to rounding (an
        exact runtime, a thread count), not fewer bits or fewer weights. Its quality drop on one trained model is
        then its drop on any, so it is judged on the recipe's model at any rung, learned or not."""
        return False

    def math_tolerance(self) -> float:
        """How far a speed-only change's loss may drift from the same math's (the mean relative gap of the two
        smoothed loss curves over the run) before the sanity check fails: rounding (another kernel, another
        layout) moves it little; another draw of random augmentation (loader workers) more."""
        return 0.15


@dataclass(frozen=True)
class Step:
    """One strategy's section in a plan; ``strategy`` is who to call back (not part of the plan's identity)."""

    name: str
    section: Section
    strategy: Owner = field(compare=False, repr=False)

    @property
    def changes_training(self) -> bool:
        """As its strategy declared: then this section keys the checkpoint cache."""
        return bool(self.strategy.changes_training)


@dataclass(frozen=True)
class Member:
    """Another trained model that a plan serves beside its own: the trial it came from, the recipe that trains
    it (to reproduce it when it is not cached) and what its training cost, which the plan that uses it pays too."""

    trial: int
    key: str
    plan: "Pipeline"
    params: Mapping[str, Any]
    train_time: float
    memory: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {"trial": self.trial, "key": self.key, "params": dict(self.params), "train_time": self.train_time}


@dataclass(frozen=True)
class Pipeline:
    """The user's recipe (device, batch size, learning rate, epochs) and the strategies' sections, in order."""

    device: str
    batch_size: int
    lr: float
    epochs: int
    eval_batch_size: int = 256
    train: bool = True
    # Cache key of the model the user's own recipe trains, which a strategy may learn from; set by the core.
    baseline_key: str | None = None
    # Inference mode without Task.weights: the one recipe every trial's model is trained by (once, cached).
    weights_from: "Pipeline | None" = None
    steps: tuple[Step, ...] = ()
    # Other trained models this plan serves beside its own, chosen by the core for strategies that ask for them.
    members: tuple[Member, ...] = ()
    # The share of the recipe's schedule this plan trains (the search's fidelity): 1 trains the whole recipe; 1/16
    # runs the whole schedule compressed into a sixteenth of its steps (fidelity.py). Part of the training key: a
    # model trained on a compressed schedule is another model.
    fraction: float = 1.0
    # 0: trained from the task's seed; k > 0: from seed + k (another initialisation and data order): a replica of
    # the recipe that measures how much quality moves from run to run at a rung (trial/_curve.py). Part of the
    # training key, as another seed trains another model.
    replica: int = 0

    # Plan fields that act only after training or are derived from the recipe: never part of the training key.
    SERVING: ClassVar[frozenset[str]] = frozenset({"eval_batch_size", "members", "baseline_key", "steps"})

    def replace(self, **changes: Any) -> "Pipeline":
        """A new plan with ``changes``; the receiver is never modified."""
        return dataclasses.replace(self, **changes)

    def with_section(self, strategy: Owner, section: Section) -> "Pipeline":
        """The plan with ``strategy``'s section set (replacing an earlier one of the same strategy)."""
        step = Step(strategy.name, section, strategy)
        # Kept sorted by name, so plans holding the same sections are equal however they were assembled (the
        # lifecycle runs them in the strategies' declared order, whatever order they are held in).
        kept = [s for s in self.steps if s.name != strategy.name]
        return self.replace(steps=tuple(sorted([*kept, step], key=lambda s: s.name)))

    def section(self, name: str) -> Section | None:
        return next((s.section for s in self.steps if s.name == name), None)

    @property
    def sections(self) -> Mapping[str, Section]:
        return {s.name: s.section for s in self.steps}

    def engine(self) -> str | None:
        """The engine another section serves the model with, or None for PyTorch."""
        return next((e for s in self.steps if (e := s.section.engine()) is not None), None)

    def fixes_precision(self) -> bool:
        return any(s.section.fixes_precision() for s in self.steps)

    def exportable(self) -> bool:
        return all(s.section.exportable() for s in self.steps)

    def describe(self) -> dict[str, Any]:
        """A JSON-able view of the whole plan, for recipes, reports and fingerprints. Built from the dataclass
        fields and the sections' own fields, so anything added later is described without anyone remembering it."""
        out = {f.name: _describe_value(getattr(self, f.name)) for f in self._described() if f.name != "steps"}
        out["sections"] = {s.name: _describe_value(s.section) for s in self.steps}
        return out

    def training_view(self) -> dict[str, Any]:
        """What changes the trained model: the recipe's fields and the sections whose strategy declared that it
        changes training. Derived, not listed by hand: a strategy added later keys the cache by declaring it."""
        out = {f.name: _describe_value(getattr(self, f.name)) for f in self._described() if f.name not in self.SERVING}
        out["sections"] = {s.name: _describe_value(s.section) for s in self.steps if s.changes_training}
        return out

    def _described(self) -> list[dataclasses.Field[Any]]:
        """The fields that describe the plan: all of them, but the whole schedule (fraction 1) and the task's own
        seed (replica 0) go unsaid, so a whole-training plan keeps the fingerprint and training key it had before plans could be compressed (the
        studies, caches and recorded tables of earlier versions stay valid)."""
        return [f for f in dataclasses.fields(self) if not (f.name == "fraction" and self.fraction == 1.0)
                and not (f.name == "replica" and self.replica == 0)]

    def math_key(self) -> str:
        """Identity of the training math: the training key's fields without the speed-only sections
        (Section.keeps_math). Two plans with the same math key train the same model up to rounding."""
        view = self.training_view()
        view["sections"] = {s.name: _describe_value(s.section) for s in self.steps
                            if s.changes_training and not s.section.keeps_math()}
        return digest(view)

    def speed_only_tolerance(self) -> float | None:
        """The tightest loss tolerance of the plan's speed-only training sections; None when it has none."""
        tolerances = [s.section.math_tolerance() for s in self.steps if s.changes_training and s.section.keeps_math()]
        return min(tolerances) if tolerances else None

    def serves_exactly(self) -> bool:
        """Whether every serving section of the plan keeps the trained model's outputs (Section.keeps_math)."""
        return all(s.section.keeps_math() for s in self.steps if not s.changes_training)

    def fingerprint(self) -> str:
        """Identity of the configuration: equal plans, however their parameters were spelled, share it."""
        return digest(self.describe())


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _describe_value(value: Any) -> Any:
    if isinstance(value, (Pipeline, Member)):
        return value.describe()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _describe_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, float):
        return round(value, 12)  # 0.1 * 3 and 0.3 are one learning rate
    if isinstance(value, Mapping):
        return {str(k): _describe_value(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_describe_value(v) for v in value]
    return value
