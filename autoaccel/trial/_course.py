"""Where a training run is in the user's whole schedule: how long it runs, when its LR schedule steps, and when
the search's guards stop it.

A run at ``Pipeline.fraction`` f < 1 is the whole recipe compressed, as Composer's ``scale_schedule_ratio`` does:
it takes ceil(f x the recipe's steps) batches, in the full run's data order, and every LR schedule steps as many
times as over the whole recipe, spread evenly over the shorter run (a per-epoch schedule at the recipe's epoch
boundaries scaled by f, a per-step one several times a step). Truncating the schedule instead would judge every
candidate at a high learning rate and favour whatever converges fastest early (Wu et al., ICLR 2018, short-horizon
bias). At f = 1 nothing changes: a per-step schedule steps once per optimizer step, a per-epoch one at each epoch's end.
"""

from __future__ import annotations

import math

import torch

from autoaccel.errors import TrialFailure
from autoaccel.plugin._contexts import Guards, TrainingSetup

# The speed guard is judged a tenth of the way in, and after at least this many steps (past the warm-up).
EARLY_STOP_MIN_STEPS = 20
# Before that, a run whose every step past the first is already this many times slower than the bar allows is
# stopped at once (fp16 emulated on a CPU: seconds a step, where waiting for 20 steps costs minutes).
FAR_SLOWER = 4.0
FAR_AFTER = 3  # steps past the first that must all be that slow
# Loss checks per run (each syncs the device): every CHECK_EVERY steps at most, at least CHECKS_PER_RUN a run.
CHECK_EVERY = 50
CHECKS_PER_RUN = 20
# A run is diverging when, past DIVERGE_AFTER of its schedule, its smoothed loss is above DIVERGE_START times the
# baseline's loss at the start (it has gone backwards from an untrained model) and DIVERGE_FACTOR times the
# baseline's at the same point: a slower learner (a larger batch) stays below both, a blown-up one does not.
DIVERGE_AFTER = 0.2
DIVERGE_START = 1.5
DIVERGE_FACTOR = 3.0
SMOOTHING = 0.3  # weight of the newest loss in the smoothed curve


class Course:
    """The run's length, its schedule's stepping and its guards; the training loop tells it each step."""

    def __init__(self, setup: TrainingSetup, guards: Guards | None) -> None:
        self.setup = setup
        self.guards = guards or Guards()
        fraction = min(1.0, max(0.0, float(setup.plan.fraction)))
        self.full_steps = setup.total_steps
        self.compressed = fraction < 1.0
        self.run_steps = max(1, math.ceil(fraction * self.full_steps)) if self.compressed else self.full_steps
        self.full_optimizer_steps = setup.optimizer_steps
        self.run_optimizer_steps = max(1, round(self.full_optimizer_steps * self.run_steps / max(1, self.full_steps)))
        self.every = max(1, min(CHECK_EVERY, self.run_steps // CHECKS_PER_RUN))
        # A whole recipe is judged a tenth of the way in; a compressed run, already short, half-way: its steady
        # state must first outlast the warm-up (bf16 kernels on a CPU settle over a dozen steps or more).
        share = 2 if self.compressed else 10
        self.speed_check = max(EARLY_STOP_MIN_STEPS, self.run_steps // share) if self.guards.slower_than is not None else -1
        self.optimizer_steps = 0
        self.schedule_steps = 0  # per-step schedule steps taken
        self.epoch_steps = 0  # per-epoch schedule steps taken
        self.smoothed: float | None = None
        self.curve: list[tuple[float, float]] = []

    def done(self, step: int) -> bool:
        return step >= self.run_steps

    def last(self, step: int) -> bool:
        return step == self.run_steps

    def checks(self, step: int) -> bool:
        return step % self.every == 0 or step == self.run_steps

    def optimizer_stepped(self) -> None:
        """A per-step schedule steps as far as the whole recipe has by now (once per step when uncompressed)."""
        self.optimizer_steps += 1
        scheduler = self.setup.scheduler
        if scheduler is None or self.setup.scheduler_per_epoch:
            return
        due = self.full_optimizer_steps * self.optimizer_steps // self.run_optimizer_steps
        if self.optimizer_steps >= self.run_optimizer_steps:
            due = self.full_optimizer_steps  # the schedule ends where the recipe's ends
        while self.schedule_steps < min(due, self.full_optimizer_steps):
            scheduler.step()
            self.schedule_steps += 1

    def stepped(self, step: int, loss: torch.Tensor) -> None:
        """A per-epoch schedule steps at each of the recipe's epoch ends, scaled into this run."""
        scheduler = self.setup.scheduler
        if scheduler is None or not self.setup.scheduler_per_epoch:
            return
        due = self.setup.plan.epochs * step // self.run_steps
        while self.epoch_steps < min(due, self.setup.plan.epochs):
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(float(loss.item()))  # one that anneals on a plateau is given the latest loss
            else:
                scheduler.step()
            self.epoch_steps += 1

    def observe(self, step: int, loss: float) -> None:
        """A checked loss: NaN or infinite stops the run; so does one diverging from the baseline's curve."""
        if not math.isfinite(loss):
            raise TrialFailure(f"training diverged: loss became {loss} at step {step}", kind="diverged")
        self.smoothed = loss if self.smoothed is None else SMOOTHING * loss + (1 - SMOOTHING) * self.smoothed
        progress = step / self.run_steps
        self.curve.append((round(progress, 4), self.smoothed))
        reference = self.guards.reference_loss
        if not reference or progress < DIVERGE_AFTER:
            return
        start = reference[0][1]
        here = next((value for at, value in reversed(reference) if at <= progress), start)
        if self.smoothed > DIVERGE_START * start and self.smoothed > DIVERGE_FACTOR * here:
            raise TrialFailure(f"training diverged: loss {self.smoothed:.4g} at {progress:.0%} of the schedule, where your "
                               f"recipe's was {here:.4g} (and {start:.4g} at the start); stopped there", kind="diverged")

    def on_course(self, step: int, step_times: list[float]) -> None:
        """Stop a run on course to train the whole recipe longer than the guard allows: projected from the
        steps so far, the first left out (compilation and lazy init, which train_time leaves out too)."""
        limit = self.guards.slower_than
        if limit is None or step >= self.run_steps or step > self.speed_check:
            return
        timed = step_times[1:]  # the first step is compilation and lazy init
        if step < self.speed_check and len(timed) >= FAR_AFTER and min(timed) * self.full_steps > FAR_SLOWER * limit:
            raise TrialFailure(f"stopped early after {step} of {self.run_steps} steps: each step so far takes at least "
                               f"{min(timed):.3g} s, on course for over {min(timed) * self.full_steps:.1f} s of training, "
                               f"{FAR_SLOWER:g}x the {limit:.2f} s a training answer could take", kind="too_slow")
        if step != self.speed_check:
            return
        # Estimated as the whole run's projection is (the bar it is held to comes from those).
        projected = steady_mean(step_times) * self.full_steps
        if projected > limit:
            raise TrialFailure(f"stopped early after {step} of {self.run_steps} steps: on course for {projected:.2f} s of "
                               f"training, more than the {limit:.2f} s a training answer could take", kind="too_slow")


def steady_mean(step_times: list[float]) -> float:
    """Seconds per step in steady state, for projecting the steps a compressed run left out: the mean of the
    steps past the first fifth (oneDNN and the allocator settle over several steps, not one), the slowest and
    fastest tenth trimmed (a stray spike of a shared machine, a short last batch)."""
    steady = sorted(step_times[max(1, len(step_times) // 5):] or step_times)
    cut = len(steady) // 10
    kept = steady[cut:len(steady) - cut] or steady
    return sum(kept) / len(kept) if kept else 0.0
