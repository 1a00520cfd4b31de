"""The training loop the core owns. What it runs with (batches, optimizer, scheduler, autocast, loss scaling,
the loss itself) comes from a TrainingSetup that the plan's strategies configure through their hooks."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import nn

from autoaccel.errors import TrialFailure
from autoaccel.measure import Clock, summarize
from autoaccel.plugin._contexts import Guards, TrainingSetup, TrainStats
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import BaseLoss, Task, move, train_batches, training_loss
from autoaccel.task import size as batch_size
from autoaccel.trial import _lifecycle as lifecycle
from autoaccel.trial._course import Course, steady_mean
from autoaccel.trial._profile import OTHER, StepProfile


def _optimizer_step(setup: TrainingSetup, model: nn.Module) -> None:
    """One optimizer step of the recipe: gradients unscaled and clipped when the user clips, the step (through
    the loss scaler when there is one), then a per-step schedule."""
    optimizer, scaler = setup.optimizer, setup.scaler
    if setup.grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), setup.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def _no_baseline() -> nn.Module:
    raise TrialFailure("this plan learns from the trained model of your own recipe, and none is available here "
                       "(no checkpoint cache and no Task.weights)", kind="infeasible")


def setup_for(model: nn.Module, task: Task, plan: Pipeline, seed: int,
              baseline: Callable[[], nn.Module] | None = None, finetuning: bool = False) -> TrainingSetup:
    """The user's own training (their optimizer, loss or training step, batches of their batch size), then
    every section's ``configure_training`` hook in order."""
    base = BaseLoss(task)
    setup = TrainingSetup(
        task=task, plan=plan, seed=seed, model=model,
        batches=train_batches(task.train_data, plan.batch_size, seed, task.shuffle),
        optimizer=task.optimizer(model.parameters(), plan.lr),
        loss=base,
        base_loss=base,
        baseline=baseline or _no_baseline,
        finetuning=finetuning,
        grad_clip=task.grad_clip,
        accumulate=task.accumulate,
    )
    setup = lifecycle.configure_training(setup)
    if setup.scheduler is None and task.scheduler is not None:
        # The user's own schedule, built last: on the optimizer the strategies left (one may have rebuilt it).
        # A strategy that installs its own schedule replaces the user's: that is the technique being tried.
        setup.scheduler = task.scheduler(setup.optimizer)
        setup.scheduler_per_epoch = task.scheduler_interval == "epoch"
    return setup


def train(model: nn.Module, task: Task, plan: Pipeline, seed: int, max_samples: int | None = None,
          baseline: Callable[[], nn.Module] | None = None, finetuning: bool = False,
          guards: Guards | None = None) -> TrainStats:
    """Train ``model`` in place following ``plan``; raise TrialFailure when the loss diverges.

    ``plan.fraction`` < 1 runs the whole schedule compressed into that share of its steps (see course.Course):
    the data in the full run's order, every LR schedule stepped as far as the whole recipe steps it.
    ``max_samples`` stops early (the re-measurement times a fixed amount of work, not a whole run).
    ``guards`` are the search's early stops: a run on course to train longer than ``guards.slower_than``
    (projected from a tenth of its steps: speed rankings settle long before accuracy does), or diverging from
    the baseline's loss at the same point of the schedule, is stopped.
    ``baseline`` loads the user's own trained model for a strategy that learns from it; ``finetuning`` says the
    run is a short fine-tuning after a transform.
    """
    clock = Clock(plan.device)
    clock.sync()
    t0 = time.perf_counter()
    setup = setup_for(model, task, plan, seed, baseline, finetuning)
    course = Course(setup, guards)
    model.train()
    setup.model.train()
    with contextlib.ExitStack() as stack:
        stack.enter_context(lifecycle.reference_numerics())  # sections' contexts below may change it
        for cm in setup.contexts:
            stack.enter_context(cm)
        loop = _Loop(setup, model, course, clock, max_samples)  # its first step's time counts from here
        for epoch in range(plan.epochs):
            if loop.finished():
                break
            if task.on_epoch is not None:
                task.on_epoch(model, epoch)  # the user's per-epoch hook (reset a carried hidden state, ...)
            loop.epoch()
    clock.sync()
    seconds = time.perf_counter() - t0
    return _stats(seconds, loop.step, loop.samples, loop.step_times, loop.epoch_starts, loop.loss_value, setup,
                  loop.profile, loop.course)


class _Loop:
    """One training run's steps, and what they measured: step times, the epochs' first steps, samples seen.
    ``model`` is the model trained (gradients are clipped on its parameters); ``setup.model`` what the loop drives
    (a wrapper sharing them)."""

    def __init__(self, setup: TrainingSetup, model: nn.Module, course: Course, clock: Clock, max_samples: int | None) -> None:
        self.setup, self.model, self.course, self.clock, self.max_samples = setup, model, course, clock, max_samples
        self.per_epoch = len(setup.batches)
        self.step, self.samples, self.loss_value = 0, 0, math.nan
        self.step_times: list[float] = []
        self.epoch_starts: list[int] = []  # indices into step_times of each epoch's first step
        self.last = time.perf_counter()
        self.profile = StepProfile(setup.plan.device)

    def finished(self) -> bool:
        return self.course.done(self.step) or (self.max_samples is not None and self.samples >= self.max_samples)

    def epoch(self) -> None:
        self.epoch_starts.append(len(self.step_times))
        # setup.batches is typed Sized (TrainingSetup): it is iterable too, one epoch of batches.
        for index, batch in enumerate(cast("Iterable[Any]", self.setup.batches)):
            self.train_step(index, batch)
            if self.finished():
                break

    def train_step(self, index: int, batch: Any) -> None:
        setup, course, profile, plan = self.setup, self.course, self.profile, self.setup.plan
        accumulate = setup.accumulate
        profile.lap("data")
        # The whole batch (tensors, tuples, dicts) on the device; the inputs as the plan wants them below.
        batch = move(batch, plan.device, setup.non_blocking)
        profile.lap("copy")
        # Gradient accumulation: gradients of `accumulate` batches add up before one optimizer step (the last
        # group of an epoch, or of a compressed run, may be shorter); with 1, every batch steps.
        closing = (index + 1) % accumulate == 0 or index + 1 == self.per_epoch or course.last(self.step + 1)
        if index % accumulate == 0:
            setup.optimizer.zero_grad(set_to_none=True)
        profile.lap("optimizer")
        with setup.autocast():
            loss = training_loss(setup.task, setup.loss, setup.base_loss, setup.model, batch, self.prepare)
        profile.lap("forward")
        part = loss / accumulate if accumulate > 1 else loss
        (setup.scaler.scale(part) if setup.scaler is not None else part).backward()
        profile.lap("backward")
        if closing:
            _optimizer_step(setup, self.model)
            course.optimizer_stepped()
        profile.lap("optimizer")
        self.step += 1
        self.samples += batch_size(batch)
        if course.checks(self.step):
            # Checking every step would force a device sync each step; a few dozen checks a run catch divergence
            # early.
            self.loss_value = loss.item()
            course.observe(self.step, self.loss_value)
        course.stepped(self.step, loss)  # per-epoch schedules, on the full recipe's epoch boundaries
        self.clock.sync()
        profile.step_done()
        now = time.perf_counter()
        self.step_times.append(now - self.last)
        self.last = now
        course.on_course(self.step, self.step_times)

    def prepare(self, inputs: object) -> object:
        return lifecycle.prepare_input(inputs, self.setup.plan)


def _stats(seconds: float, step: int, samples: int, step_times: list[float], epoch_starts: list[int],
           loss_value: float, setup: TrainingSetup, profile: StepProfile, course: Course) -> TrainStats:
    """The run's statistics: its own time without compilation, and the whole recipe's time projected from it."""
    # The first steps pay for worker start-up, allocator growth and lazy init; steady state excludes them.
    skip = min(len(step_times) // 10, 20)
    steady = step_times[skip:] or step_times
    stats = summarize(steady, step_times[0] if step_times else 0.0)
    compile_s = max(0.0, stats.first_call - stats.median) if step_times else 0.0
    if setup.recompiles:
        # A compiled model recompiles on a new shape (the last, partial batch): those spikes are compile time too.
        compile_s += sum(t - stats.median for t in step_times[1:] if t > 10 * stats.median)
    parts = dict(profile.seconds)
    parts[OTHER] = max(0.0, seconds - sum(parts.values()))
    own = seconds - compile_s
    mean_step = steady_mean(step_times)
    # An epoch's start (a DataLoader's workers starting again) costs more than a step: measured where this run
    # crossed an epoch boundary, and charged for every epoch start it left out.
    starts = [step_times[i] - stats.median for i in epoch_starts[1:] if i < len(step_times)]
    epoch_cost = max(0.0, sum(starts) / len(starts)) if starts else None
    left_steps = max(0, course.full_steps - step) if course.compressed else 0
    left_epochs = max(0, setup.plan.epochs - len(epoch_starts)) if course.compressed else 0
    projected = own + left_steps * mean_step + left_epochs * (epoch_cost or 0.0)
    return TrainStats(own, step, samples, stats, loss_value, compile_s, parts, projected_s=projected,
                      full_steps=course.full_steps, steady_steps=len(steady), epoch_cost_s=epoch_cost,
                      loss_curve=tuple(course.curve))
