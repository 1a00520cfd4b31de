"""A training run as a strategy may launch it elsewhere (trial/_launch.py): a job that builds the same initial
weights in any process, trains as the core does, travels pickled (the user's own script by value), the baseline's
trained model for a strategy that learns from it, and the first section that takes the run. Real tiny digits
training throughout."""

from __future__ import annotations

import dataclasses
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle
import numpy as np
import pytest
import torch
from torch import nn

from autoaccel.errors import TrialFailure
from autoaccel.plugin import Phase, Pipeline, Section, Strategy
from autoaccel.plugin._contexts import TrainingRun, TrainStats
from autoaccel.plugin._space import Param
from autoaccel.task import Task, load_task
from autoaccel.trial import TrainingJob, launch_training, run_trial, training_key
from autoaccel.trial._checkpoints import CheckpointCache
from autoaccel.trial._launch import baseline_loader, seed_everything
from tiny_digits import TIMING_BUDGET_S, base_plan, digits_datasets, task_source, write_model

STEPS = -(-len(digits_datasets()[0]) // 32)  # one epoch of the tiny task's training set, batch 32


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_seeding_everything_repeats_the_draws_of_random_numpy_and_torch() -> None:
    def draws() -> tuple[float, float, list[float]]:
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    seed_everything(7)
    first = draws()
    seed_everything(7)
    assert draws() == first
    seed_everything(8)
    assert draws() != first


def test_every_build_of_a_job_starts_from_the_same_weights_and_leaves_the_generators_seeded(tiny_task: Task) -> None:
    job = TrainingJob(tiny_task, base_plan(tiny_task), seed=3)
    first = weights(job.build())
    after_build = torch.rand(4)
    assert same(weights(job.build()), first)
    seed_everything(3)
    assert torch.equal(torch.rand(4), after_build)  # training then draws its batches as a fresh process would
    assert not same(weights(TrainingJob(tiny_task, base_plan(tiny_task), seed=4).build()), first)


def test_a_job_trains_the_model_here_as_the_core_does(tiny_task: Task) -> None:
    job = TrainingJob(tiny_task, base_plan(tiny_task), seed=0)
    model = job.build()
    initial = weights(model)
    stats = job.run(model)
    assert stats.steps == STEPS and stats.processes == 1 and np.isfinite(stats.final_loss)
    assert not same(weights(model), initial)
    sliced = TrainingJob(tiny_task, base_plan(tiny_task), seed=0, max_samples=10 * 32)  # a timed slice of the run
    assert sliced.run(sliced.build()).steps == 10


def test_a_pickled_job_builds_and_trains_the_same_model_in_another_process(tiny_task: Task) -> None:
    job = TrainingJob(tiny_task, base_plan(tiny_task), seed=0)
    remote = cloudpickle.loads(job.portable())
    assert remote.plan == job.plan and remote.seed == job.seed
    here, there = job.build(), remote.build()
    assert same(weights(here), weights(there))
    job.run(here)
    remote.run(there)
    assert same(weights(here), weights(there))


def test_the_users_model_file_travels_by_value_to_a_process_that_cannot_import_it(tmp_path: Path) -> None:
    task = load_task(write_model(tmp_path, task_source()))
    module = task.model.__module__
    assert module.startswith("autoaccel_user_")
    blob = TrainingJob(task, base_plan(task), seed=0).portable()
    loaded = sys.modules.pop(module)  # as in a fresh process: that module name means nothing there
    try:
        remote = cloudpickle.loads(blob)
        model = remote.build()
    finally:
        sys.modules[module] = loaded
    assert isinstance(model, nn.Module) and model(torch.zeros(2, 64)).shape == (2, 10)


def test_a_plan_that_learns_from_the_baseline_fails_as_infeasible_while_there_is_no_trained_baseline(
        tiny_task: Task, tmp_path: Path) -> None:
    plan = base_plan(tiny_task).replace(baseline_key=training_key(tiny_task, base_plan(tiny_task)))
    load = baseline_loader(tiny_task, plan, CheckpointCache(tmp_path))  # nothing cached yet
    with pytest.raises(TrialFailure, match="not cached yet, and Task.weights is unset") as failed:
        load()
    assert failed.value.kind == "infeasible"
    with pytest.raises(TrialFailure, match="not cached yet"):
        baseline_loader(tiny_task, plan, None)()


def test_the_baseline_comes_from_the_checkpoint_its_own_trial_cached(tiny_task: Task, tmp_path: Path) -> None:
    base = base_plan(tiny_task)
    run_trial(tiny_task, base, 0, TIMING_BUDGET_S, cache_dir=str(tmp_path))  # the baseline trial trains and caches
    cache = CheckpointCache(tmp_path)
    key = training_key(tiny_task, base)
    entry = cache.get(key)
    assert entry is not None
    load = baseline_loader(tiny_task, base.replace(baseline_key=key), cache)
    model = load()
    assert not model.training and same(weights(model), torch.load(entry.path, weights_only=True))
    assert load() is model  # loaded once, on first use


def test_without_a_cached_baseline_the_users_own_weights_are_the_baseline(tiny_task: Task, tmp_path: Path) -> None:
    trained = tiny_task.model()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    task = dataclasses.replace(tiny_task, weights=str(path))
    plan = base_plan(task).replace(baseline_key=training_key(task, base_plan(task)))
    model = baseline_loader(task, plan, CheckpointCache(tmp_path / "empty"))()
    assert not model.training and same(weights(model), weights(trained))


@dataclass(frozen=True)
class Elsewhere(Section):
    pass


class Launcher(Strategy[Elsewhere]):
    """A strategy that runs the training "elsewhere": from the pickled job, as another process would receive it."""

    name: ClassVar[str] = "launcher"
    phase: ClassVar[Phase] = Phase.TRAIN

    def __init__(self, takes: bool = True) -> None:
        self.takes = takes
        self.asked: list[str] = []

    def space(self, task: Task | None = None) -> dict[str, Param]:
        return {}

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        return pipeline.with_section(self, Elsewhere())

    def launch_training(self, section: Elsewhere, job: TrainingRun, model: nn.Module) -> TrainStats | None:
        self.asked.append(self.name)
        if not self.takes:
            return None
        remote = cloudpickle.loads(job.portable())
        trained = remote.build()
        stats = remote.run(trained)
        model.load_state_dict(trained.state_dict())
        return dataclasses.replace(stats, processes=2)


class EarlyLauncher(Launcher):
    name: ClassVar[str] = "early_launcher"
    phase: ClassVar[Phase] = Phase.DATA


def test_without_a_section_that_launches_it_the_core_trains_in_its_own_process(tiny_task: Task) -> None:
    job = TrainingJob(tiny_task, base_plan(tiny_task), seed=0)
    model = job.build()
    initial = weights(model)
    assert launch_training(job, model) is None
    assert same(weights(model), initial)  # nothing trained it


def test_a_section_that_launches_the_run_elsewhere_returns_its_statistics_and_the_trained_weights(tiny_task: Task) -> None:
    launcher = Launcher()
    job = TrainingJob(tiny_task, launcher.apply(base_plan(tiny_task), {}), seed=0)
    model = job.build()
    stats = launch_training(job, model)
    assert stats is not None and stats.processes == 2 and stats.steps == STEPS
    here = job.build()
    job.run(here)  # what the core would have trained in this process
    assert same(weights(model), weights(here))


def test_the_first_section_in_declared_order_that_takes_the_run_launches_it(tiny_task: Task) -> None:
    early, late = EarlyLauncher(takes=False), Launcher()
    plan = late.apply(early.apply(base_plan(tiny_task), {}), {})
    job = TrainingJob(tiny_task, plan, seed=0)
    assert launch_training(job, job.build()) is not None
    assert (early.asked, late.asked) == (["early_launcher"], ["launcher"])  # the data-phase one declined first
    early, late = EarlyLauncher(), Launcher()
    plan = late.apply(early.apply(base_plan(tiny_task), {}), {})
    job = TrainingJob(tiny_task, plan, seed=0)
    assert launch_training(job, job.build()) is not None
    assert (early.asked, late.asked) == (["early_launcher"], [])  # taken: the later section is not asked
