"""A training run as a strategy may launch it elsewhere: in several processes (data parallelism), on other hosts.

The core trains a plan in the trial's process unless a section's ``launch_training`` hook takes the run: it
receives the :class:`TrainingJob`, which it can pickle (:meth:`TrainingJob.portable`) and run anywhere
(:meth:`TrainingJob.build` then :meth:`TrainingJob.run`), and returns the run's statistics with the trained
weights loaded into the trial's model.
"""

from __future__ import annotations

import functools
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

import cloudpickle
import numpy as np
import torch
from torch import nn

from autoaccel.errors import TrialFailure
from autoaccel.plugin._contexts import Guards, TrainStats
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import Task
from autoaccel.trial import _lifecycle as lifecycle
from autoaccel.trial._checkpoints import CheckpointCache
from autoaccel.trial._train import train


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def baseline_loader(task: Task, plan: Pipeline, cache: CheckpointCache | None) -> Callable[[], nn.Module]:
    """The trained model of the user's own recipe, loaded once on first use: from the checkpoint cache (the
    baseline trial's training) or from Task.weights."""
    @functools.cache
    def load() -> nn.Module:
        if plan.baseline_key and cache is not None and (entry := cache.get(plan.baseline_key)) is not None:
            return cache.load(entry, task.model().to(plan.device), plan.device).eval()
        if task.weights:
            model = task.model().to(plan.device)
            model.load_state_dict(torch.load(task.weights, map_location=plan.device, weights_only=True))
            return model.eval()
        raise TrialFailure("this plan learns from the trained model of your own recipe: the baseline's checkpoint is not "
                           "cached yet, and Task.weights is unset", kind="infeasible")

    return load




def by_value(task: Task) -> None:
    """Pickle the user's script by value: another process cannot import it by name (a model.py loaded from a
    path is the module ``autoaccel_user_*``; a notebook's is ``__main__``)."""
    module = getattr(task.model, "__module__", None) or type(task.model).__module__
    for name in {module, "__main__"}:
        mod = sys.modules.get(name or "")
        if mod is not None and (name == "__main__" or name.startswith("autoaccel_user_")):
            cloudpickle.register_pickle_by_value(mod)


@dataclass
class TrainingJob:
    """One training run of ``plan``: what the core would run in this process (contexts.TrainingRun)."""

    task: Task
    plan: Pipeline
    seed: int
    cache_dir: str | None = None  # the checkpoint cache (a strategy may learn from the baseline's model there)
    guards: Guards | None = None  # the search's early stops (see train.train)
    max_samples: int | None = None  # a timed slice of the run (re-measurement), not the whole run

    def build(self) -> nn.Module:
        """The plan's untrained model, with the initial weights every process of the run builds alike."""
        seed_everything(self.seed)
        model = lifecycle.build_model(self.task, self.plan, self.seed)
        seed_everything(self.seed)
        return model

    def run(self, model: nn.Module) -> TrainStats:
        """Train ``model`` here, as the core does."""
        cache = CheckpointCache(self.cache_dir) if self.cache_dir else None
        return train(model, self.task, self.plan, self.seed, max_samples=self.max_samples,
                     baseline=baseline_loader(self.task, self.plan, cache), guards=self.guards)

    def portable(self) -> bytes:
        by_value(self.task)
        return cloudpickle.dumps(self)


def launch_training(job: TrainingJob, model: nn.Module) -> TrainStats | None:
    """The run as the first section that takes it launches it (the trained weights then in ``model``); None
    when no section does: the core trains in this process."""
    for strategy, step in lifecycle.steps(job.plan):
        stats = strategy.launch_training(step.section, job, model)
        if stats is not None:
            return stats
    return None
