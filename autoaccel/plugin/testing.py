"""The contract suite a strategy subclasses to prove it behaves (pytest)::

    from autoaccel.plugin.testing import StrategyContract

    class TestMyStrategy(StrategyContract):
        strategy_class = MyStrategy

Like Optuna's own sampler test suite, most of it runs the real thing: every choice of the space trains for one
epoch on a small real task (scikit-learn's digits, shipped offline) and is served and measured, or reports a
reason it cannot run; off values must give back the user's recipe exactly; the training key must change if and
only if the strategy declares ``changes_training``; settings that change nothing must leave the plan unchanged;
applying and exporting a trial's recipe must reproduce its model; and a tiny study must run through.
Each test builds its own objects, so a suite can run in any order.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel.errors import TrialFailure
from autoaccel.plugin._pipeline import Member, Pipeline, Section
from autoaccel.plugin._space import Categorical, FloatRange, IntRange, Param, Space, active
from autoaccel.plugin._strategy import NAME_RE, Capability, Phase, Strategy, ordered
from autoaccel.task import Target, Task
from autoaccel.trial import read, training_key

CPU = Target("cpu", "cpu", "test cpu", 2, 8.0, None, ("fp32", "bf16", "fp16"), {"onnxruntime": True})
CUDA = Target("cuda", "cuda:0", "test gpu", 8, 80.0, (9, 0), ("fp32", "tf32", "bf16", "fp16"), {})
# Failure kinds that say "this choice cannot run here, and why" rather than "this choice is broken".
EXCUSED = ("unsupported", "infeasible")


class ContractNet(nn.Module):
    """A small CNN with a prunable conv -> linear -> linear chain, for the 8x8 digits."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * 16, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def contract_task(train: int = 480, val: int = 120) -> Task:
    """Real data, small: the first ``train + val`` of scikit-learn's digits as (1, 8, 8) images in [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[: train + val], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y[: train + val], dtype=torch.long)
    return Task(model=ContractNet, train_data=TensorDataset(x[:train], y[:train]), val_data=TensorDataset(x[train:], y[train:]),
                epochs=1, batch_size=32, lr=0.05, name="contract")


def _same(a: Any, b: Any) -> bool:
    """Equal state-dict entries: tensors bit for bit, anything else (a packed module's dtype, ...) by value."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def sample_value(param: Param, rng: random.Random) -> Any:
    if isinstance(param, Categorical):
        return rng.choice(param.choices)
    if isinstance(param, IntRange):
        return rng.randint(param.low, param.high)
    assert isinstance(param, FloatRange)
    return rng.uniform(param.low, param.high)


def values(param: Param) -> list[Any]:
    """Every choice of a categorical; the ends of a range."""
    if isinstance(param, Categorical):
        return list(param.choices)
    return [param.low, param.high]


def enabling(space: Space, name: str) -> dict[str, Any] | None:
    """Sibling settings under which ``name`` applies (its ``when`` conditions hold), or None when none does."""
    chosen: dict[str, Any] = {}
    for _ in range(len(space)):  # conditions may chain: each pass settles one more level
        if active(space, name, chosen):
            return chosen
        for cond in space[name].when:
            sibling = space[cond.sibling]
            if not cond.holds(chosen.get(cond.sibling, sibling.default), sibling.default):
                fits = [v for v in values(sibling) if cond.holds(v, sibling.default)]
                if not fits:
                    return None
                chosen[cond.sibling] = fits[0]
        for sib in list(chosen):
            chosen.update(enabling(space, sib) or {})
    return chosen if active(space, name, chosen) else None


def settings(space: Space) -> Iterator[dict[str, Any]]:
    """One configuration per (parameter, value off its default), with the siblings it needs to apply."""
    for name, param in space.items():
        context = enabling(space, name)
        if context is None:
            continue
        for value in values(param):
            if value != param.default:
                yield {**{k: v for k, v in context.items()}, name: value}


class StrategyContract:
    """Subclass and set ``strategy_class`` (or override :meth:`make`); override :meth:`task` for a technique that
    needs another kind of model or data. ``runs_on`` is the target the end-to-end tests use (this machine's CPU)."""

    strategy_class: ClassVar[type[Strategy[Any]]]
    targets: ClassVar[tuple[Target, ...]] = (CPU, CUDA)
    runs_on: ClassVar[Target] = CPU
    # Seconds of inference timing per measurement in the end-to-end runs: the numbers are not judged, only had.
    timing_budget_s: ClassVar[float] = 0.02
    # How many of the space's settings run end to end (None: every one). A technique whose every trial costs
    # seconds of fixed overhead (starting processes) may check a few: each setting still runs in the study test.
    end_to_end_settings: ClassVar[int | None] = None
    # How many settings must reproduce through apply and export (each trains three times: the trial, apply, export).
    reproduced_settings: ClassVar[int] = 2

    def make(self) -> Strategy[Any]:
        return self.strategy_class()

    def task(self) -> Task:
        return contract_task()

    def base(self, task: Task | None = None) -> Pipeline:
        if task is None:
            return Pipeline(device="cpu", batch_size=32, lr=0.01, epochs=2)
        plan = Pipeline(device="cpu", batch_size=task.batch_size, lr=task.lr, epochs=task.epochs)
        return plan.replace(baseline_key=training_key(task, plan))

    def plan_for(self, strategy: Strategy[Any], base: Pipeline, params: dict[str, Any]) -> Pipeline:
        return strategy.apply(base, {**strategy.defaults(), **params})

    # -- static properties ----------------------------------------------------------------------------------------

    def test_name_phase_and_relations(self) -> None:
        s = self.make()
        assert NAME_RE.match(s.name), f"name {s.name!r} must match {NAME_RE.pattern}"
        assert isinstance(s.phase, Phase)
        assert isinstance(s.changes_training, bool), "changes_training must be declared True or False"
        for attr in ("after", "before", "requires"):
            value = getattr(s, attr)
            assert isinstance(value, tuple) and all(isinstance(v, str) for v in value), f"{attr} must be a tuple of names"
            assert s.name not in value, f"{s.name}.{attr} names the strategy itself"
        assert ordered([s]) == [s]

    def test_space_has_defaults_inside(self) -> None:
        space = self.make().space()
        assert space, "a strategy must vary at least one parameter"
        for name, param in space.items():
            assert param.contains(param.default), f"default of {name} outside its range"

    def test_check_returns_capability_and_keeps_defaults(self) -> None:
        s = self.make()
        for target in self.targets:
            cap = s.check(target)
            assert isinstance(cap, Capability)
            if not cap.supported:
                assert cap.reason, "an unsupported strategy must say why"
            for name, param in s.effective_space(target).items():
                assert param.contains(s.space()[name].default), f"{name}: check() dropped the off value"

    def test_defaults_are_the_identity(self) -> None:
        s = self.make()
        base = self.base()
        assert s.apply(base, s.defaults()) == base, "applying the defaults must leave the user's recipe unchanged"

    def test_apply_never_mutates_and_returns_a_typed_section(self) -> None:
        s = self.make()
        rng = random.Random(0)
        for target in self.targets:
            space = s.effective_space(target)
            for _ in range(20):
                base = self.base()
                snapshot = base.describe()
                out = s.apply(base, {k: sample_value(p, rng) for k, p in space.items()})
                assert isinstance(out, Pipeline)
                assert base.describe() == snapshot, "apply() mutated its input"
                others = [step.name for step in out.steps if step.name != s.name]
                assert not others, f"apply() added sections of other strategies: {others}"
                section = out.section(s.name)
                if section is not None:
                    assert isinstance(section, Section) and dataclasses.is_dataclass(section), \
                        "a section must be a dataclass subclassing autoaccel.plugin.Section"
                    assert type(section).__dataclass_params__.frozen, "a section must be frozen (@dataclass(frozen=True))"  # type: ignore[attr-defined]
                # Plans travel to worker processes and into fingerprints.
                assert cloudpickle.loads(cloudpickle.dumps(out)) == out
                out.fingerprint()

    def test_training_key_changes_iff_declared(self) -> None:
        s = self.make()
        # A hook that shapes the model or the run changes training: without the declaration a trial of it would reuse
        # another recipe's checkpoint and never run the hook at all.
        for hook in ("build_model", "configure_training"):
            if getattr(type(s), hook) is not getattr(Strategy, hook):
                assert s.changes_training, f"{s.name} implements {hook} but does not declare changes_training"
        task = self.task()
        base = self.base(task)
        changed_any = False
        for target in self.targets:
            for params in settings(s.effective_space(target, task)):
                plan = self.plan_for(s, base, params)
                if plan == base:
                    continue
                changes = training_key(task, plan) != training_key(task, base)
                changed_any |= changes
                if not s.changes_training:
                    assert not changes, f"{params} changes the training key, but {s.name} does not declare changes_training"
        if s.changes_training:
            assert changed_any, f"{s.name} declares changes_training, but no setting changes the training key"

    def test_inactive_settings_change_nothing(self) -> None:
        s = self.make()
        base = self.base()
        space = s.space()
        for name, param in space.items():
            if not param.when or active(space, name, {}):
                continue
            # With every sibling at its default the parameter does not apply: moving it must change nothing.
            for value in values(param):
                assert self.plan_for(s, base, {name: value}) == self.plan_for(s, base, {}), \
                    f"{s.name}.{name}={value} changed the plan while its `when` condition does not hold"

    # -- end to end -------------------------------------------------------------------------------------------------

    def _runnable(self, s: Strategy[Any]) -> None:
        cap = s.check(self.runs_on)
        if not cap.supported:
            pytest.skip(f"{s.name} does not run on {self.runs_on.name}: {cap.reason}")
        # What a strategy cannot do with the user's model or task, it says in fits (unavailable(task) folded into it).
        task = self.task()
        if not (fit := s.fits(task.model(), task, self.runs_on)).supported:
            pytest.skip(f"{s.name} is unavailable for the contract task: {fit.reason}")

    def _members(self, task: Task, base: Pipeline, k: int) -> tuple[Member, ...]:
        """``k`` other trained recipes (the user's at other learning rates), as the core would pick them."""
        out = []
        for i in range(k):
            plan = base.replace(lr=base.lr * (0.5 + 0.25 * i))
            out.append(Member(1000 + i, training_key(task, plan), plan, {}, 0.1))
        return tuple(out)

    def _plan(self, s: Strategy[Any], task: Task, base: Pipeline, params: dict[str, Any]) -> Pipeline:
        plan = self.plan_for(s, base, params)
        wanted = s.members_needed({**s.defaults(task), **params})
        return plan.replace(members=self._members(task, base, wanted)) if wanted else plan

    def test_every_choice_runs_end_to_end(self) -> None:
        from autoaccel.trial import run_trial

        s = self.make()
        self._runnable(s)
        task = self.task()
        base = self.base(task)
        with tempfile.TemporaryDirectory() as cache:
            baseline = run_trial(task, base, task.seed, self.timing_budget_s, cache)
            for params in list(settings(s.effective_space(self.runs_on, task)))[:self.end_to_end_settings]:
                plan = self._plan(s, task, base, params)
                try:
                    result = run_trial(task, plan, task.seed, self.timing_budget_s, cache)
                except TrialFailure as exc:
                    assert exc.kind in EXCUSED and exc.reason, f"{params} failed ({exc.kind}): {exc.reason}"
                    continue
                for name, value in result.metrics.items():
                    assert value == value and abs(value) != float("inf"), f"{params}: metric {name} is {value}"
                if training_key(task, plan) != baseline.details["checkpoint"]:
                    # A recipe that trains differently trains its own model, never another recipe's checkpoint.
                    assert result.details["cached_training"] is False, f"{params} reused another recipe's training"

    def test_off_values_give_back_the_users_recipe(self) -> None:
        from autoaccel.trial import run_trial

        s = self.make()
        task = self.task()
        base = self.base(task)
        plan = s.apply(base, s.defaults(task))
        first = run_trial(task, base, task.seed, self.timing_budget_s)
        second = run_trial(task, plan, task.seed, self.timing_budget_s)
        assert second.details["checkpoint"] == first.details["checkpoint"]
        assert second.metrics["accuracy"] == first.metrics["accuracy"]
        assert second.details.get("correct") == first.details.get("correct"), "the off values predict differently"

    def test_apply_and_export_reproduce_the_trial(self) -> None:
        from autoaccel.outputs import apply
        from autoaccel.trial import evaluate, export_model, run_trial

        s = self.make()
        self._runnable(s)
        task = self.task()
        base = self.base(task)
        checked, excused = 0, 0
        for params in settings(s.effective_space(self.runs_on, task)):
            plan = self._plan(s, task, base, params)
            if plan == base:
                continue
            if plan.members:
                excused += 1
                continue  # members come from a study's trials; the recipe route is covered by the study test
            try:
                result = run_trial(task, plan, task.seed, self.timing_budget_s)
            except TrialFailure as exc:
                assert exc.kind in EXCUSED, f"{params} failed ({exc.kind}): {exc.reason}"
                excused += 1
                continue
            qualified = {f"{s.name}.{k}": v for k, v in params.items()}
            applied = apply(task, {"params": qualified, "task": task.name}, registry=self.registry(s))
            metric = task.metric_fn()
            correct = metric.sign * evaluate(applied.model, task, applied.plan, metric).value
            assert abs(correct - result.metrics["accuracy"]) < 1e-9, f"{params}: apply gives accuracy {correct}, the trial {result.metrics['accuracy']}"
            with tempfile.TemporaryDirectory() as out:
                written = export_model(task, plan, Path(out), task.seed)
                state = torch.load(written["files"]["state_dict"], weights_only=True)
                if plan.engine() is None:  # an engine's session has no state dict to compare
                    mine = applied.model.state_dict()
                    assert state.keys() == mine.keys() and all(_same(state[k], mine[k]) for k in state), \
                        f"{params}: export wrote other weights than apply's"
            checked += 1
            if checked == self.reproduced_settings:
                break  # the route is the same for the rest
        assert checked or excused or not list(settings(s.effective_space(self.runs_on, task))), "nothing was checked"

    def test_a_tiny_study_runs(self, tmp_path: Path) -> None:
        from autoaccel.api import optimize

        s = self.make()
        self._runnable(s)
        result = optimize(self.task(), strategies=(s.name,), trials=3, isolate=False, remeasure_rounds=0, ablation=False,
                          quiet=True, out=str(tmp_path / "out"), target="cpu", pm=self.plugin_manager(s))
        trials = [read(t) for t in result.study.get_trials(deepcopy=False)]
        assert trials[0].measured, "the user's recipe must complete"
        for t in trials:
            assert t.state.name in ("COMPLETE", "FAIL"), f"trial {t.number} left {t.state.name}"
            if t.state.name == "FAIL":
                assert t.reason, f"trial {t.number} failed without a reason"

    def registry(self, s: Strategy[Any]) -> Any:
        from autoaccel.plugin._registry import collect_strategies

        return collect_strategies(self.plugin_manager(s))

    def plugin_manager(self, s: Strategy[Any]) -> Any:
        """A plugin manager holding the installed plugins and, when it is not installed, this strategy."""
        from autoaccel.plugin._hookspecs import hookimpl
        from autoaccel.plugin._registry import collect_strategies, plugin_manager

        pm = plugin_manager()
        if s.name not in collect_strategies(pm).strategies:
            class Local:
                @hookimpl
                def autoaccel_register_strategies(self, register: Any) -> None:
                    register(s)

            pm.register(Local(), name=f"contract:{s.name}")
        return pm
