"""The training loop the core owns: precision, loss scaling, batch size, schedule and loader come from the plan."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from autoaccel.data import train_batches
from autoaccel.errors import TrialFailure
from autoaccel.measure import Clock, Measurement, summarize
from autoaccel.pipeline import Pipeline
from autoaccel.schedule import lr_multiplier
from autoaccel.task import Task

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def device_type(device: str) -> str:
    return device.split(":")[0]


def autocast(plan: Pipeline, inference: bool = False) -> contextlib.AbstractContextManager[object]:
    """The autocast context for the plan's precision (a no-op for fp32 and tf32, and at inference for
    quantized models and ONNX Runtime, which run in their own precision)."""
    dtype = AUTOCAST_DTYPES.get(plan.precision)
    if inference and (plan.quantized or plan.runtime.kind != "eager"):
        dtype = None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type(plan.device), dtype=dtype)


@contextlib.contextmanager
def backend_flags(plan: Pipeline) -> Iterator[None]:
    """TF32, cuDNN autotuning and fp32 matmul precision for the duration only, so one trial's settings never
    leak into the next. The precision strategy owns TF32 when it chose tf32; otherwise matmul_precision may."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
           torch.get_float32_matmul_precision())
    tf32 = plan.precision == "tf32" or (plan.precision == "fp32" and plan.matmul_precision != "highest")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = plan.cudnn_benchmark
    if plan.precision == "fp32":
        torch.set_float32_matmul_precision(plan.matmul_precision)
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = old[:3]
        torch.set_float32_matmul_precision(old[3])


def prepare_input(inputs: torch.Tensor, plan: Pipeline) -> torch.Tensor:
    """Move a batch to the device in the plan's memory format (channels_last applies to 4-D images)."""
    inputs = inputs.to(plan.device)
    if plan.memory_format == "channels_last" and inputs.ndim == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs


@dataclass(frozen=True)
class TrainStats:
    seconds: float  # wall time of the whole run, data loading and set-up included: what the user pays
    steps: int
    samples: int
    step_time: Measurement  # steady-state seconds per step (first steps excluded)
    final_loss: float
    compile_s: float  # first-step overhead (compilation, lazy init) and recompilation spikes, excluded from seconds


def to_device(batch: torch.Tensor, device: str, non_blocking: bool) -> torch.Tensor:
    return batch.to(device, non_blocking=non_blocking) if batch.device.type != device_type(device) else batch


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s distillation term: KL between softened distributions, scaled by T^2 so its gradient
    magnitude does not shrink as T grows."""
    t = temperature
    return nn.functional.kl_div(
        nn.functional.log_softmax(student.float() / t, dim=1),
        nn.functional.log_softmax(teacher.float() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)


def train(model: nn.Module, task: Task, plan: Pipeline, seed: int, max_samples: int | None = None,
          teacher: nn.Module | None = None) -> TrainStats:
    """Train ``model`` in place following ``plan``; raise TrialFailure when the loss diverges.

    ``max_samples`` stops early (the re-measurement times a fixed amount of work, not a whole run).
    With ``teacher`` and ``plan.distill`` set, the loss mixes the task loss with the distillation term.
    """
    clock = Clock(plan.device)
    clock.sync()
    t0 = time.perf_counter()
    batches = train_batches(task.train_data, plan.loader, plan.batch_size, plan.device, seed)
    optimizer = task.optimizer(model.parameters(), plan.lr)
    total_steps = plan.epochs * len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(plan.schedule, total_steps))
    scaler = torch.amp.GradScaler(device_type(plan.device), enabled=plan.loss_scaling)
    non_blocking = plan.loader.pin_memory
    step_times: list[float] = []
    samples, step, loss_value = 0, 0, math.nan
    model.train()
    if teacher is not None:
        teacher.eval()
    with backend_flags(plan):
        last = time.perf_counter()
        for _epoch in range(plan.epochs):
            for inputs, targets in batches:
                inputs = to_device(inputs, plan.device, non_blocking)
                targets = to_device(targets, plan.device, non_blocking)
                optimizer.zero_grad(set_to_none=True)
                if plan.memory_format == "channels_last" and inputs.ndim == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                with autocast(plan):
                    outputs = model(inputs)
                    loss = task.loss(outputs, targets)
                    if teacher is not None and plan.distill is not None:
                        with torch.no_grad():
                            soft = teacher(inputs)
                        alpha = plan.distill.alpha
                        loss = (1 - alpha) * loss + alpha * kd_loss(outputs, soft, plan.distill.temperature)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                samples += len(targets)
                if step % 50 == 0 or step == total_steps:
                    # Checking every step would force a device sync each step; every 50 catches divergence early.
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        raise TrialFailure(f"training diverged: loss became {loss_value} at step {step}", kind="diverged")
                clock.sync()
                now = time.perf_counter()
                step_times.append(now - last)
                last = now
                if max_samples is not None and samples >= max_samples:
                    break
            if max_samples is not None and samples >= max_samples:
                break
    clock.sync()
    seconds = time.perf_counter() - t0
    # The first steps pay for worker start-up, allocator growth and lazy init; steady state excludes them.
    skip = min(len(step_times) // 10, 20)
    steady = step_times[skip:] or step_times
    stats = summarize(steady, step_times[0] if step_times else 0.0)
    compile_s = max(0.0, stats.first_call - stats.median) if step_times else 0.0
    if plan.compile_mode:
        # A compiled model recompiles on a new shape (the last, partial batch): those spikes are compile time too.
        compile_s += sum(t - stats.median for t in step_times[1:] if t > 10 * stats.median)
    return TrainStats(seconds - compile_s, step, samples, stats, loss_value, compile_s)
