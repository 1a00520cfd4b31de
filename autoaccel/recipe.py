"""Applying a recipe in the user's own pipeline: `autoaccel apply recipe.yaml model.py` and `autoaccel.apply()`.

Training-time settings come back as a ready configuration (precision, batch size, DataLoader kwargs,
scheduler); post-training techniques are applied to the model; the result can be exported and is checked to
run (and, for ONNX and TorchScript, to agree with PyTorch).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from autoaccel.errors import AutoaccelError
from autoaccel.evaluate import latency_input
from autoaccel.pipeline import Pipeline
from autoaccel.registry import default_registry
from autoaccel.strategy import apply_all, split_params
from autoaccel.task import Task, validate_task

EXPORTS = ("onnx", "torchscript", "state_dict")
ATOL = 1e-4


@dataclass
class Applied:
    """A recipe applied: the model to serve, the training configuration, the plan, and any export."""

    model: nn.Module
    config: dict[str, Any]
    plan: Pipeline
    export: dict[str, Any] = field(default_factory=dict)


def read_recipe(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise AutoaccelError(f"{path}: no such recipe file; expected the recipe.yaml an optimize run wrote")
    try:
        recipe = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AutoaccelError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(recipe, dict) or not isinstance(recipe.get("params"), dict):
        raise AutoaccelError(f"{path}: expected a mapping with 'params' (a recipe.yaml from autoaccel optimize)")
    return recipe


def training_config(plan: Pipeline) -> dict[str, Any]:
    """What to set in your own training script to train the way the recipe did."""
    loader: dict[str, Any] = {"batch_size": plan.batch_size, "num_workers": plan.loader.num_workers,
                              "pin_memory": plan.loader.pin_memory}
    if plan.loader.num_workers > 0:
        loader.update(persistent_workers=plan.loader.persistent_workers, prefetch_factor=plan.loader.prefetch_factor)
    return {
        "precision": plan.precision,
        "autocast_dtype": {"bf16": "torch.bfloat16", "fp16": "torch.float16"}.get(plan.precision),
        "grad_scaler": plan.loss_scaling,
        "lr": plan.lr,
        "epochs": plan.epochs,
        "dataloader": loader,
        "cache_dataset_in_memory": plan.loader.cache,
        "scheduler": dataclasses.asdict(plan.schedule),
        "memory_format": plan.memory_format,
        "compile_mode": plan.compile_mode,
        "distillation": dataclasses.asdict(plan.distill) if plan.distill else None,
    }


def recipe_plan(recipe: dict[str, Any], task: Task | None, model: nn.Module | None, device: str = "cpu") -> Pipeline:
    registry = default_registry()
    unknown = [name for name in split_params(recipe["params"]) if name not in registry.strategies]
    if unknown:
        raise AutoaccelError(f"recipe: strategies {', '.join(unknown)} are not installed here (known: {', '.join(sorted(registry.strategies))})")
    base = Pipeline(device=device, batch_size=task.batch_size if task else 32, lr=task.lr if task else 0.01,
                    epochs=task.epochs if task else 1)
    return apply_all(list(registry.strategies.values()), base, recipe["params"])


def apply(model_or_task: nn.Module | Task | str | Path, recipe: dict[str, Any] | str | Path, device: str = "cpu",
          cache_dir: str | None = None, example_input: torch.Tensor | None = None) -> Applied:
    """Apply ``recipe`` (a recipe.yaml path or its dict) to a trained model or to a Task.

    With an ``nn.Module`` (already trained), the post-training techniques are applied to it. With a Task (or
    the path of a model.py), the model is trained by the recipe (or loaded from ``Task.weights`` or the
    optimize run's checkpoint cache) and then transformed.
    """
    from autoaccel.loading import load_task
    from autoaccel.trial import _runtime, _transform, served_model

    data = read_recipe(recipe) if isinstance(recipe, (str, Path)) else recipe
    if isinstance(model_or_task, (str, Path)):
        model_or_task = load_task(model_or_task)
    if isinstance(model_or_task, Task):
        task = validate_task(model_or_task)
        plan = recipe_plan(data, task, None, device)
        model = served_model(task, plan, task.seed, cache_dir)
        example = latency_input(task.val_data, task.example_input)
    elif isinstance(model_or_task, nn.Module):
        plan = recipe_plan(data, None, model_or_task, device)
        if plan.runtime.kind == "onnxruntime":
            raise AutoaccelError("apply(): this recipe serves through ONNX Runtime, which needs calibration data and an "
                                 "example input: pass the Task (or model.py) instead of a bare model")
        model = _transform(None, plan, 0, model_or_task.to(device), None, "")  # type: ignore[arg-type]
        example = example_input if example_input is not None else torch.zeros(1)
        task = None
    else:
        raise AutoaccelError(f"apply(): expected an nn.Module, a Task or a model.py path, but got {type(model_or_task).__name__}")
    if plan.runtime.kind == "onnxruntime" and task is not None:
        model = _runtime(task, plan, model, example, task.seed)
    return Applied(model.eval(), training_config(plan), plan)


def export(applied: Applied, kind: str, out: str | Path, example: torch.Tensor) -> dict[str, Any]:
    """Export the applied model and check that the export runs and agrees with PyTorch."""
    from autoaccel.export import check_onnx
    from autoaccel.onnx_runtime import OrtModule, export_onnx

    if kind not in EXPORTS:
        raise AutoaccelError(f"--export: expected one of {', '.join(EXPORTS)}, but got {kind!r}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = applied.model
    if kind == "state_dict":
        torch.save(model.state_dict(), path)
        torch.load(path, weights_only=True)  # it must read back
        return {"path": str(path), "kind": kind}
    if kind == "onnx":
        if isinstance(model, OrtModule):
            import shutil

            shutil.copyfile(model.path, path)
            return {"path": str(path), "kind": kind, "check": "copied the ONNX Runtime graph the recipe serves"}
        export_onnx(model, example, path)
        diff = check_onnx(path, model, example)
        if diff > ATOL:
            raise AutoaccelError(f"--export onnx: {path} runs in onnxruntime but differs from PyTorch by {diff:.2e} (> {ATOL:g})")
        return {"path": str(path), "kind": kind, "max_abs_diff": diff}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(getattr(model, "_orig_mod", model).eval(), example)
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        diff = float((loaded(example).float() - model(example).float()).abs().max())
    if diff > ATOL:
        raise AutoaccelError(f"--export torchscript: {path} differs from the model by {diff:.2e} (> {ATOL:g})")
    return {"path": str(path), "kind": kind, "max_abs_diff": diff}
