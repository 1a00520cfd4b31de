"""The contexts the lifecycle hooks receive: what a strategy may use at each step of a plan's life."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import default_collate

from autoaccel.measure import Measurement
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import features


@dataclass(frozen=True)
class BuildContext:
    """What ``build_model`` may use: the task (its ``model`` and ``student`` factories), the plan and the seed."""

    task: Any
    plan: Pipeline
    seed: int


@dataclass
class TrainingSetup:
    """Everything the core's training loop runs with. ``configure_training`` hooks change its fields in order.

    The loop's contract (trial/_train.py), which a technique that keeps the math must keep too:

    - an epoch is one pass over ``batches``, and ``len(batches)`` is exactly its number of batches (the last
      group of an epoch closes an optimizer step, and a per-step schedule spans ``epochs * ceil(len / accumulate)``);
    - each batch: ``loss(model(x), y, x)`` (or the Task's training_step) under ``autocast()``; the loss divided by
      ``accumulate`` when it is above 1; backward through ``scaler`` when set; every ``accumulate`` batches (and at
      an epoch's end) gradients are unscaled and clipped to ``grad_clip`` when set, then one optimizer step and a
      per-step ``scheduler`` step; a per-epoch schedule steps at the whole recipe's epoch boundaries;
    - ``loss`` wrappers nest in hook order: a later strategy's wrapper receives the loss an earlier one installed.
    """

    task: Any
    plan: Pipeline
    seed: int
    model: nn.Module  # what the loop drives; a wrapper (torch.compile) must share the trained model's parameters
    batches: Sized  # an iterable of (inputs, targets) with a length: one epoch
    optimizer: torch.optim.Optimizer
    # (outputs, targets, inputs) -> loss. Outputs and inputs as the model returns and takes them (a tensor, a tuple,
    # a ModelOutput; batches.prediction finds the prediction in them); targets None under a user's training_step,
    # whose own loss the base loss then returns. A strategy changing the loss wraps the one it finds.
    loss: Callable[[Any, Any, Any], torch.Tensor]
    # The trained model of the user's own recipe (from the checkpoint cache, or Task.weights), for a strategy that
    # learns from it; raises TrialFailure when neither exists yet.
    baseline: Callable[[], nn.Module]
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    scaler: torch.amp.GradScaler | None = None
    contexts: list[contextlib.AbstractContextManager[Any]] = field(default_factory=list)  # around the whole run
    non_blocking: bool = False  # host-to-device copies may overlap compute (pinned memory)
    recompiles: bool = False  # slow steps at a new input shape are compilation: excluded from the run's time
    # A short run on a model a transform changed (fine-tuning after pruning), not the recipe's training: techniques
    # that only pay off over a whole run (compilation, learning from another model) may stand aside.
    finetuning: bool = False
    # The user's own recipe (Task.grad_clip, Task.accumulate, Task.scheduler_interval); a scheduler a strategy
    # installs steps per optimizer step unless it sets scheduler_per_epoch.
    grad_clip: float | None = None
    accumulate: int = 1
    scheduler_per_epoch: bool = False
    base_loss: Any = None  # the steps.BaseLoss the loss started as (the core's hand-off of a user step's loss)

    @property
    def total_steps(self) -> int:
        """Batches over the whole run (loop iterations)."""
        return self.plan.epochs * len(self.batches)

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps over the whole run (fewer than batches under gradient accumulation): what a
        per-step schedule spans."""
        return self.plan.epochs * -(-len(self.batches) // self.accumulate)


@dataclass
class HeldOut:
    """Validation outputs a post-training transform computed held out (see ``TransformContext.judge_on``)."""

    outputs: torch.Tensor | None = None


@dataclass(frozen=True)
class TransformContext:
    """What a post-training ``transform`` may use: the task, the plan, the seed, the core's fine-tuning loop
    (``finetune(model, epochs)`` trains with the plan's own recipe and charges the time to it) and
    ``trained(plan)``, the trained model of another recipe (a member), from the cache or trained now."""

    task: Any
    plan: Pipeline
    seed: int
    finetune: Callable[[nn.Module, int], nn.Module]
    trained: Callable[[Pipeline], nn.Module] | None = None
    # Validation outputs a transform computed held out, for ``judge_on``: read by the core after the transforms.
    held_out: HeldOut = field(default_factory=HeldOut)

    def judge_on(self, outputs: torch.Tensor) -> None:
        """Judge this plan's quality on ``outputs``, the validation set's outputs (in its order) computed without
        fitting on them, instead of evaluating the served model on data it was fit on: a stacking combiner is
        scored on its out-of-fold predictions."""
        self.held_out.outputs = outputs


@dataclass(frozen=True)
class ServeContext:
    """What ``serve`` may use: the plan, one example input of batch 1, and ``calibration()``, a few batches of
    training inputs (for engines that calibrate), empty without a task."""

    task: Any
    plan: Pipeline
    seed: int
    example: Any  # a tensor, or a tuple or dict of the model's arguments
    threads: int = 0

    def calibration(self, samples: int = 256, batch: int = 32, model: nn.Module | None = None) -> list[Any]:
        """Batches of training inputs for calibration: an array per batch for a model of one tensor input, a dict
        of arrays by input name (as onnx_export names them) for one taking several. A Task with its own
        evaluation_step calls its model in its own way (a (seq, batch) layout): given ``model``, the inputs are
        those the step passes it."""
        if self.task is None:
            return []
        from autoaccel.plugin._onnx import input_names, onnx_feed, onnx_feeds

        data = self.task.train_data
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(data), generator=g)[:samples].tolist()
        # Float inputs as float32 (the graph's input type); integer ones (token ids) keep their dtype.
        collated = [default_collate([data[i] for i in idx[s:s + batch]]) for s in range(0, len(idx), batch)]
        stacks = [features(b) for b in collated]
        if model is not None and self.task.evaluation_step is not None:
            stacks = [self._seen_inputs(model, b) for b in collated]
        if all(isinstance(x, torch.Tensor) for x in stacks):
            return [onnx_feed(x) for x in stacks]
        return [onnx_feeds(input_names(x), x) for x in stacks]

    def _seen_inputs(self, model: nn.Module, batch: Any) -> Any:
        """What the Task's evaluation_step passes ``model`` for ``batch`` (positional arguments, as exported)."""
        from autoaccel.task import evaluating, watching

        with torch.no_grad(), evaluating(model), watching(model) as seen:
            self.task.evaluation_step(model, batch)
        if seen.inputs is None:
            return features(batch)
        args = tuple(a for a in seen.inputs.args if isinstance(a, torch.Tensor))
        return args[0] if len(args) == 1 else args


class Stage:
    """Which hook of which strategy is running, so a failure is blamed on the settings acting there."""

    def __init__(self) -> None:
        self.name = "training"
        self.finetune_s = 0.0  # training spent after the main run (fine-tuning): the recipe's cost too

    def __call__(self, name: str) -> "Stage":
        self.name = name
        return self


@dataclass(frozen=True)
class Guards:
    """What stops a search trial's training early, set by the search: a run on course to train longer than
    ``slower_than`` seconds (projected to the whole recipe) cannot win; one whose loss goes far above the
    baseline's at the same point of the schedule (``reference_loss``: (progress in [0, 1], smoothed loss) pairs,
    the baseline's own ``TrainStats.loss_curve``) is diverging."""

    slower_than: float | None = None
    reference_loss: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class TrainStats:
    seconds: float  # wall time of the whole run, data loading and set-up included: what the user pays
    steps: int
    samples: int
    step_time: Measurement  # steady-state seconds per step (first steps excluded)
    final_loss: float
    compile_s: float  # first-step overhead (compilation, lazy init) and recompilation spikes, excluded from seconds
    profile: dict[str, float]  # seconds per part of the step (PROFILE_PARTS) and the rest of the run ("other")
    processes: int = 1  # processes that trained together (data parallelism): steps and samples are one process's
    # The whole recipe's training time: ``seconds`` when the run was the whole recipe; for a compressed run
    # (Pipeline.fraction < 1), its own time plus the steps and epoch starts it left out at its measured rates.
    projected_s: float = 0.0
    full_steps: int = 0  # loop iterations of the whole recipe
    steady_steps: int = 0  # steps the steady-state step time was measured over (warm-up left out)
    epoch_cost_s: float | None = None  # extra seconds an epoch's start costs (loader start-up), when one was seen
    loss_curve: tuple[tuple[float, float], ...] = ()  # (progress through the run, smoothed loss), for Guards


class TrainingRun(Protocol):
    """One training run of a plan as ``Strategy.launch_training`` receives it (launch.TrainingJob): what to
    train, a way to build the same untrained model in any process, to run the core's training loop there, and
    the whole run pickled for another process."""

    task: Any
    plan: Pipeline
    seed: int
    max_samples: int | None  # a timed slice of the run (re-measurement), not the whole run
    guards: Guards | None  # the search's early stops (a run that cannot win, or diverges)

    def build(self) -> nn.Module: ...

    def run(self, model: nn.Module) -> TrainStats: ...

    def portable(self) -> bytes: ...
