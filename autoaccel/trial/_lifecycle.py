"""The lifecycle a plan goes through: the core's calls of its strategies' hooks, in their declared order.

The core owns the order: build the model, train it (or reuse a cached training), transform it, serve it; at
each step it calls the hook of every section in the plan, in the order the strategies declared. It never
knows which technique a hook implements.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from autoaccel.plugin._contexts import BuildContext, ServeContext, Stage, TrainingSetup, TransformContext
from autoaccel.plugin._pipeline import Pipeline, Step
from autoaccel.plugin._strategy import Strategy, ordered
from autoaccel.task import map_tensors


@functools.lru_cache(maxsize=512)
def _order(strategies: tuple[Strategy, ...]) -> tuple[int, ...]:
    ranked = {s.name: i for i, s in enumerate(ordered(strategies))}
    return tuple(sorted(range(len(strategies)), key=lambda i: ranked[strategies[i].name]))


def steps(plan: Pipeline) -> list[tuple[Strategy, Step]]:
    """The plan's sections with their strategies, in the order the strategies declared, however the plan was
    assembled. (A plan knows its strategies only by name and declaration; here they are called.)"""
    held = plan.steps
    owners = tuple(cast(Strategy, s.strategy) for s in held)
    return [(owners[i], held[i]) for i in _order(owners)]


def start(plan: Pipeline) -> None:
    """Every strategy's per-process preparation before a plan runs (forgetting compiled graphs, ...)."""
    for strategy, step in steps(plan):
        strategy.start(step.section, plan)


def build_model(task: Any, plan: Pipeline, seed: int, stage: Stage | None = None) -> nn.Module:
    """The untrained model of the plan: what the ``build_model`` hooks build (None until one does), else the
    task's own. The task's model is not built when a hook builds another: its construction would draw from the
    seeded generator (changing the other's initial weights) and count in the trial's peak memory."""
    model: nn.Module | None = None
    ctx = BuildContext(task, plan, seed)
    for strategy, step in steps(plan):
        if stage is not None:
            stage(f"build:{step.name}")
        model = strategy.build_model(step.section, model, ctx)
    return (model if model is not None else task.model()).to(plan.device)


def configure_training(setup: TrainingSetup) -> TrainingSetup:
    for strategy, step in steps(setup.plan):
        strategy.configure_training(step.section, setup)
    return setup


def transform(model: nn.Module, ctx: TransformContext, stage: Stage | None = None) -> nn.Module:
    for strategy, step in steps(ctx.plan):
        if stage is not None:
            stage(f"transform:{step.name}")
        model = strategy.transform(step.section, model, ctx)
    return model


def serve(model: nn.Module, ctx: ServeContext, stage: Stage | None = None) -> nn.Module:
    for strategy, step in steps(ctx.plan):
        if stage is not None:
            stage(f"serve:{step.name}")
        model = strategy.serve(step.section, model, ctx)
    return model


@contextlib.contextmanager
def reference_numerics() -> Iterator[None]:
    """Full fp32 arithmetic (no TF32, highest matmul precision, no cuDNN autotuning) for the duration only: the
    user's recipe is measured as written, and a section that changes numerics says so in its own context."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
           torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.benchmark = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = old[:3]
        torch.set_float32_matmul_precision(old[3])


@contextlib.contextmanager
def inference(plan: Pipeline) -> Iterator[None]:
    """No gradients, reference numerics, then every section's inference context (autocast, backend flags)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(reference_numerics())
        for strategy, step in steps(plan):
            cm = strategy.inference_context(step.section, plan)
            if cm is not None:
                stack.enter_context(cm)
        yield


def export(plan: Pipeline, served: nn.Module, path: Path) -> bool:
    """Whether a strategy wrote the graph the plan serves to ``path``: the last to act on serving is asked first."""
    return any(strategy.export(step.section, served, path) for strategy, step in reversed(steps(plan)))


def prepare_input(inputs: Any, plan: Pipeline) -> Any:
    """Inputs on the plan's device, every tensor in them (a tensor, a tuple, a dict) as every section wants it (a
    memory layout, ...); each hook checks the tensor it gets (a layout for 4-D images leaves token ids alone)."""
    hooks = steps(plan)

    def one(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(plan.device)
        for strategy, step in hooks:
            tensor = strategy.prepare_input(step.section, tensor, plan)
        return tensor

    return map_tensors(one, inputs)
