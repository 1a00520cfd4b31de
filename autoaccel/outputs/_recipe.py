"""Applying a recipe in the user's own pipeline: `autoaccel apply recipe.yaml model.py` and `autoaccel.apply()`.

Training-time settings come back as a ready configuration (precision, batch size, DataLoader kwargs,
scheduler); post-training techniques are applied to the model; the result can be exported and is checked to
run (and, for ONNX and TorchScript, to agree with PyTorch).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from autoaccel.errors import AutoaccelError, TrialFailure, describe
from autoaccel.finish import PRIMARY
from autoaccel.plugin._pipeline import Member, Pipeline
from autoaccel.plugin._registry import Registry, default_registry
from autoaccel.plugin._strategy import apply_all, parse_param
from autoaccel.task import Task, call, prediction, validate_task
from autoaccel.trial import latency_input, lifecycle, training_key
from autoaccel.vocab import GOALS

EXPORTS = ("onnx", "torchscript", "state_dict")
ATOL = 1e-4


@dataclass
class Applied:
    """A recipe applied: the model to serve, the training configuration, the plan, and any export."""

    model: nn.Module
    config: dict[str, Any]
    plan: Pipeline
    export: dict[str, Any] = field(default_factory=dict)
    training: str = ""  # where the trained weights came from: the cache (reused) or a training run now




def read_recipe(path: str | Path, goal: str | None = None) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise AutoaccelError(f"{path}: no such recipe file; expected the recipe.yaml an optimize run wrote")
    try:
        recipe = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AutoaccelError(f"{path}: not a YAML recipe: {str(exc).splitlines()[0]}") from exc
    if not isinstance(recipe, dict) or not isinstance(recipe.get("params"), dict):
        raise AutoaccelError(f"{path}: expected a mapping with 'params' (a recipe.yaml from autoaccel optimize)")
    return select(recipe, goal, str(path))


def select(recipe: dict[str, Any], goal: str | None, where: str = "recipe") -> dict[str, Any]:
    """The recipe of one answer: ``goal``'s, or by default the primary one (combined where there is one).

    A recipe without answers (hand-written, or from an older autoaccel) is taken as it is.
    """
    answers = recipe.get("answers")
    if goal is not None and goal not in GOALS:
        raise AutoaccelError(f"--goal: expected one of {', '.join(GOALS)}, but got {goal!r}")
    if not isinstance(answers, dict):
        if goal is not None:
            raise AutoaccelError(f"{where}: --goal {goal} needs a recipe with answers per goal (from autoaccel optimize)")
        return recipe
    if not answers:
        raise AutoaccelError(f"{where}: this recipe holds no answer (every goal said keep your recipe); nothing to apply")
    # repr: a name read from YAML may hold a newline, and the error must stay one line.
    bad = [repr(g)[:40] for g, a in answers.items() if g not in GOALS or not isinstance(a, dict) or not isinstance(a.get("params"), dict)]
    if bad or recipe.get("goal") not in (None, *GOALS):
        raise AutoaccelError(f"{where}: answers must map goals ({', '.join(GOALS)}) to answers with params, and goal name one "
                             f"of them, but got {', '.join(bad)[:80] or repr(recipe.get('goal'))[:40]}")
    chosen = goal or recipe.get("goal") or next(g for g in PRIMARY if g in answers)
    if chosen not in answers:
        raise AutoaccelError(f"{where}: no {chosen} answer in this recipe (it has: {', '.join(map(str, answers))}); "
                             f"pick one with --goal")
    return {**{k: v for k, v in recipe.items() if k != "answers"}, **answers[chosen], "goal": chosen}


def training_config(plan: Pipeline) -> dict[str, Any]:
    """What to set in your own training script to train the way the recipe did: the recipe's own fields, then
    each training section as its strategy words it (DataLoader kwargs, autocast dtype, schedule ...)."""
    config: dict[str, Any] = {"batch_size": plan.batch_size, "lr": plan.lr, "epochs": plan.epochs}
    for strategy, step in lifecycle.steps(plan):
        if step.changes_training:
            config[step.name] = strategy.recipe(step.section)
    return config


def recipe_plan(recipe: dict[str, Any], task: Task | None, model: nn.Module | None, device: str = "cpu",
                registry: Registry | None = None) -> Pipeline:
    """The plan the recipe's answer ran, members included (each rebuilt from its own recipe)."""
    registry = registry or default_registry()
    strategies = list(registry.strategies.values())
    members = recipe.get("members") or []
    if not isinstance(members, list) or not all(isinstance(m, dict) and isinstance(m.get("trial"), int) for m in members):
        raise AutoaccelError("recipe: members must be a list of {trial, params, train_time} as optimize writes it")
    for params in [recipe["params"], *(m.get("params") or {} for m in members)]:
        validate_params(params, registry, task)
    base = Pipeline(device=device, batch_size=task.batch_size if task else 32, lr=task.lr if task else 0.01,
                    epochs=task.epochs if task else 1)
    if task is not None:
        base = base.replace(baseline_key=training_key(task, base))
    plan = apply_all(strategies, base, recipe["params"])
    if members and task is not None:
        built = []
        for m in members:
            member_plan = apply_all(strategies, base, m.get("params") or {})
            built.append(Member(int(m["trial"]), training_key(task, member_plan), member_plan, m.get("params") or {},
                                float(m.get("train_time", 0.0))))
        plan = plan.replace(members=tuple(built))
    return plan


def validate_params(params: Any, registry: Any, task: Task | None, where: str = "recipe") -> None:
    """Every setting names an installed strategy's parameter and holds a value its search space allows (the
    space the task gives it: a batch size the task's data can take, a precision that exists)."""
    if not isinstance(params, dict):
        raise AutoaccelError(f"{where}: params must be a mapping of <strategy>.<param>: value, but got {type(params).__name__}")
    for key, value in params.items():
        name, param = parse_param(str(key))
        if name not in registry.strategies:
            raise AutoaccelError(f"{where}: params.{str(key):.80}: no installed strategy '{name:.40}' "
                                 f"(known: {', '.join(sorted(registry.strategies))})")
        space = registry.strategies[name].space(task)
        if param not in space:
            raise AutoaccelError(f"{where}: params.{key}: strategy '{name}' has no parameter '{param}' (it has: {', '.join(space)})")
        spec = space[param]
        # bool is an int to Python, and 1 == True: a value must also have the type the space holds.
        kinds = {type(c) for c in getattr(spec, "choices", (spec.default,))}
        if float in kinds:
            kinds.add(int)
        if not isinstance(value, (str, int, float, bool)):
            raise AutoaccelError(f"{where}: params.{key}: expected a value inside {_describe_space(spec)}, but got a "
                                 f"{type(value).__name__}")  # never its repr: a YAML bomb would print megabytes
        if type(value) not in kinds or not spec.contains(value):
            raise AutoaccelError(f"{where}: params.{key}: expected a value inside {_describe_space(spec)}, but got {value!r:.60}")


def _describe_space(spec: Any) -> str:
    if hasattr(spec, "choices"):
        return "[" + ", ".join(str(c) for c in spec.choices) + "]"
    return f"[{spec.low}, {spec.high}]"


def check_task(recipe: dict[str, Any], task: Task, where: str) -> None:
    """A recipe measured on one task says nothing about another: refuse it, naming both."""
    written_for = recipe.get("task")
    if written_for is not None and written_for != task.name:
        raise AutoaccelError(f"{where}: this recipe was written for task '{written_for}', but the task given is "
                             f"'{task.name}'; run autoaccel optimize on it first")


def apply(model_or_task: nn.Module | Task | str | Path, recipe: dict[str, Any] | str | Path, device: str = "cpu",
          cache_dir: str | None = None, example_input: Any = None, goal: str | None = None,
          registry: Registry | None = None) -> Applied:
    """Apply ``recipe`` (a recipe.yaml path or its dict) to a trained model or to a Task.

    With an ``nn.Module`` (already trained), the post-training techniques are applied to it. With a Task (or
    the path of a model.py), the model is trained by the recipe (or loaded from ``Task.weights`` or the
    optimize run's checkpoint cache) and then transformed. ``registry`` holds the strategies the recipe names
    (default: the installed ones).
    """
    from autoaccel.task import load_task
    from autoaccel.trial import Trained, serve, serving, transform_model

    where = str(recipe) if isinstance(recipe, (str, Path)) else "recipe"
    data = read_recipe(recipe, goal) if isinstance(recipe, (str, Path)) else select(recipe, goal)
    if isinstance(model_or_task, (str, Path)):
        model_or_task = load_task(model_or_task)
    trained: Trained | None = None
    if isinstance(model_or_task, Task):
        task = validate_task(model_or_task)
        check_task(data, task, where)
        plan = recipe_plan(data, task, None, device, registry)
        model, trained = serving(task, plan, task.seed, cache_dir)
        example = latency_input(task.val_data, task.example_input)
    elif isinstance(model_or_task, nn.Module):
        plan = recipe_plan(data, None, model_or_task, device, registry)
        if plan.engine() is not None:
            raise AutoaccelError(f"apply(): this recipe serves through {plan.engine()}, which needs calibration data and an "
                                 "example input: pass the Task (or model.py) instead of a bare model")
        if data.get("members"):
            raise AutoaccelError("apply(): this recipe serves several models, whose other members are trained from their "
                                 "own recipes: pass the Task (or model.py) instead of a bare model")
        model = transform_model(None, plan, 0, model_or_task.to(device), None)
        example = example_input if example_input is not None else torch.zeros(1)
        task = None
    else:
        raise AutoaccelError(f"apply(): expected an nn.Module, a Task or a model.py path, but got {type(model_or_task).__name__}")
    if plan.engine() is not None and task is not None:
        # Served by another engine: the model handed back is that engine's session, as the trial measured it.
        model = serve(task, plan, model, example, task.seed)
    applied = Applied(model.eval(), training_config(plan), plan)
    if trained is not None:
        applied.training = (f"reused the cached checkpoint {trained.key}" if trained.details.get("cached_training")
                            else f"trained now by the recipe ({trained.metrics.get('train_time', 0.0):.3g}s)")
    return applied


def export(applied: Applied, kind: str, out: str | Path, example: Any) -> dict[str, Any]:
    """Export the applied model and check that the export runs and agrees with PyTorch.

    A file that failed to export or to pass its check is removed: nothing half-checked is left behind.
    """
    if kind not in EXPORTS:
        raise AutoaccelError(f"--export: expected one of {', '.join(EXPORTS)}, but got {kind!r}")
    path = Path(out)
    try:
        return _export(applied, kind, path, example)
    except AutoaccelError:
        path.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - exporters raise anything; the user gets one line
        path.unlink(missing_ok=True)
        reason = exc.reason if isinstance(exc, TrialFailure) else describe(exc)
        raise AutoaccelError(f"--export {kind}: the model does not export ({reason}); try --export state_dict") from exc


def _export(applied: Applied, kind: str, path: Path, example: Any) -> dict[str, Any]:
    from autoaccel.plugin._onnx import Layout, _Flat, check_onnx, export_onnx, flat_inputs

    path.parent.mkdir(parents=True, exist_ok=True)
    model = applied.model
    if kind == "state_dict":
        torch.save(model.state_dict(), path)
        torch.load(path, weights_only=True)  # it must read back
        return {"path": str(path), "kind": kind}
    if kind == "onnx":
        if lifecycle.export(applied.plan, model, path):
            return {"path": str(path), "kind": kind, "check": "the graph the recipe serves, written by its strategy"}
        export_onnx(model, example, path)
        diff = check_onnx(path, model, example)
        if diff > ATOL:
            raise AutoaccelError(f"--export onnx: {path} runs in onnxruntime but differs from PyTorch by {diff:.2e} (> {ATOL:g})")
        return {"path": str(path), "kind": kind, "max_abs_diff": diff}
    # Traced over flat positional inputs returning the prediction, as ONNX export sees it (onnx_export._Flat).
    flat = tuple(flat_inputs(example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = getattr(model, "_orig_mod", model).eval()
        traced = torch.jit.trace(_Flat(plain, example, Layout.of(plain, example)), flat)
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        diff = float((loaded(*flat)[0].float() - prediction(call(model, example)).float()).abs().max())
    if diff > ATOL:
        raise AutoaccelError(f"--export torchscript: {path} differs from the model by {diff:.2e} (> {ATOL:g})")
    return {"path": str(path), "kind": kind, "max_abs_diff": diff}
