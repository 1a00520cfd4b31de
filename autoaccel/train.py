"""The training loop the core owns. What it runs with (batches, optimizer, scheduler, autocast, loss scaling,
the loss itself) comes from a TrainingSetup that the plan's strategies configure through their hooks."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import torch
from torch import nn

from autoaccel import lifecycle
from autoaccel.batches import move
from autoaccel.batches import size as batch_size
from autoaccel.contexts import TrainingSetup, TrainStats
from autoaccel.data import train_batches
from autoaccel.errors import TrialFailure
from autoaccel.measure import Clock, summarize
from autoaccel.pipeline import Pipeline
from autoaccel.profile import OTHER, StepProfile
from autoaccel.steps import BaseLoss, training_loss
from autoaccel.task import Task

EARLY_STOP_MIN_STEPS = 20


def device_type(device: str) -> str:
    return device.split(":")[0]


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
    if setup.scheduler is not None and not setup.scheduler_per_epoch:
        setup.scheduler.step()


def _epoch_step(scheduler: object, loss: torch.Tensor) -> None:
    """A per-epoch schedule steps once an epoch; one that anneals on a plateau is given the epoch's last loss."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(float(loss.item()))
    else:
        scheduler.step()  # type: ignore[attr-defined]


def _check_course(step_times: list[float], total_steps: int, limit: float) -> None:
    """Stop a run on course to train longer than ``limit``: projected from the steps so far, the first left out
    (compilation and lazy init, which train_time leaves out too)."""
    steady = step_times[1:] or step_times
    projected = sum(steady) / len(steady) * total_steps
    if projected > limit:
        raise TrialFailure(f"stopped early after {len(step_times)} of {total_steps} steps: on course for {projected:.2f} s of "
                           f"training, more than the {limit:.2f} s a training answer could take", kind="too_slow")


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
          stop_slower_than: float | None = None) -> TrainStats:
    """Train ``model`` in place following ``plan``; raise TrialFailure when the loss diverges.

    ``max_samples`` stops early (the re-measurement times a fixed amount of work, not a whole run).
    ``stop_slower_than`` (seconds) is the search's low-fidelity check: once a tenth of the steps ran, a run on
    course to take longer than that is stopped (speed rankings settle long before accuracy does, and
    a recipe slower than that cannot be the training answer, so its accuracy is never worth the rest).
    """
    clock = Clock(plan.device)
    clock.sync()
    t0 = time.perf_counter()
    setup = setup_for(model, task, plan, seed, baseline, finetuning)
    driven, optimizer, scheduler, scaler = setup.model, setup.optimizer, setup.scheduler, setup.scaler
    total_steps = setup.total_steps
    # Where the projection is judged: a tenth of the run, and past the first steps' warm-up.
    checkpoint = max(EARLY_STOP_MIN_STEPS, total_steps // 10) if stop_slower_than is not None else -1
    step_times: list[float] = []
    samples, step, loss_value = 0, 0, math.nan
    model.train()
    driven.train()
    with contextlib.ExitStack() as stack:
        stack.enter_context(lifecycle.reference_numerics())  # sections' contexts below may change it
        for cm in setup.contexts:
            stack.enter_context(cm)
        last = time.perf_counter()
        profile = StepProfile(plan.device)
        accumulate, per_epoch = setup.accumulate, len(setup.batches)

        def prepare(inputs: object) -> object:
            return lifecycle.prepare_input(inputs, plan)

        for epoch in range(plan.epochs):
            if task.on_epoch is not None:
                task.on_epoch(model, epoch)  # the user's per-epoch hook (reset a carried hidden state, ...)
            for index, batch in enumerate(setup.batches):
                profile.lap("data")
                # The whole batch (tensors, tuples, dicts) on the device; the inputs as the plan wants them below.
                batch = move(batch, plan.device, setup.non_blocking)
                profile.lap("copy")
                # Gradient accumulation: gradients of `accumulate` batches add up before one optimizer step (the
                # last group of an epoch may be shorter); with 1, every batch steps, as in the plain loop.
                closing = (index + 1) % accumulate == 0 or index + 1 == per_epoch
                if index % accumulate == 0:
                    optimizer.zero_grad(set_to_none=True)
                profile.lap("optimizer")
                with setup.autocast():
                    loss = training_loss(task, setup.loss, setup.base_loss, driven, batch, prepare)
                profile.lap("forward")
                part = loss / accumulate if accumulate > 1 else loss
                (scaler.scale(part) if scaler is not None else part).backward()
                profile.lap("backward")
                if closing:
                    _optimizer_step(setup, model)
                profile.lap("optimizer")
                step += 1
                samples += batch_size(batch)
                if step % 50 == 0 or step == total_steps:
                    # Checking every step would force a device sync each step; every 50 catches divergence early.
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        raise TrialFailure(f"training diverged: loss became {loss_value} at step {step}", kind="diverged")
                clock.sync()
                profile.step_done()
                now = time.perf_counter()
                step_times.append(now - last)
                last = now
                if step == checkpoint and step < total_steps:
                    _check_course(step_times, total_steps, stop_slower_than)  # type: ignore[arg-type]
                if max_samples is not None and samples >= max_samples:
                    break
            if max_samples is not None and samples >= max_samples:
                break
            if scheduler is not None and setup.scheduler_per_epoch:
                _epoch_step(scheduler, loss)
    clock.sync()
    seconds = time.perf_counter() - t0
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
    return TrainStats(seconds - compile_s, step, samples, stats, loss_value, compile_s, parts)
