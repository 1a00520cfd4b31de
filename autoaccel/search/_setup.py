"""What is decided before the first trial: the target, the strategies that can run, their joint space and defaults,
and the user's recipe as a plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy

from autoaccel.errors import AutoaccelError, did_you_mean
from autoaccel.options import Options
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._registry import collect_strategies
from autoaccel.plugin._space import Categorical, Param
from autoaccel.plugin._strategy import MODES, Capability, Strategy, qualified
from autoaccel.task import Target, Task
from autoaccel.trial import training_key


@dataclass
class Setup:
    """Everything decided before the first trial: target, strategies, space, defaults, and the user's recipe as a
    plan (the Pipeline every configuration is applied to)."""

    target: Target
    strategies: list[Strategy]
    skipped: dict[str, str]
    space: dict[str, Param]
    defaults: dict[str, Any]
    base: Pipeline
    capabilities: dict[str, Capability] = field(default_factory=dict)


def base_pipeline(task: Task, target: Target, mode: str) -> Pipeline:
    """The user's recipe as a plan. In inference mode with Task.weights nothing trains; without weights the
    recipe trains once (cached) and every post-training variant starts from that model."""
    plan = Pipeline(device=target.device, batch_size=task.batch_size, lr=task.lr, epochs=task.epochs,
                    train=not (mode == "inference" and task.weights))
    # A strategy may learn from the trained model of the user's own recipe, found in the checkpoint cache.
    plan = plan.replace(baseline_key=training_key(task, plan))
    if mode == "inference" and not task.weights:
        plan = plan.replace(weights_from=plan)
    return plan


def set_up_search(task: Task, options: Options, pm: pluggy.PluginManager) -> Setup:
    """Detect the target and assemble the space; every user error surfaces here, before storage is opened."""
    target = pm.hook.autoaccel_detect_target(spec=options.target)
    registry = collect_strategies(pm)
    chosen = registry.select(options.strategies, options.exclude or ())
    phases = MODES[options.mode]
    strategies, skipped, caps = [], {}, {}
    probe = task.model()  # one fresh model, for the strategies' cheap checks of what it is made of (Strategy.fits)
    for s in chosen:
        cap = s.capability(target, task, probe)
        caps[s.name] = cap
        if s.phase not in phases:
            skipped[s.name] = f"acts in phase {s.phase.name.lower()}, which --mode {options.mode} does not search"
        elif not cap.supported:
            skipped[s.name] = cap.reason or "not supported on this target"
        elif options.strategies is None and (why := s.left_out_by_default(target)) is not None:
            skipped[s.name] = f"{why} (name it in --strategies to search it)"
        elif s.needs_training and options.mode == "inference":
            skipped[s.name] = "needs several trained models; --mode inference has exactly one"
        else:
            strategies.append(s)
    if options.strategies is not None and not strategies:
        raise AutoaccelError(f"--strategies: none of {','.join(options.strategies)} can run here ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    space: dict[str, Param] = {}
    for s in strategies:
        for name, param in s.effective_space(target, task, probe).items():
            space[qualified(s, name)] = param
    for name, values in (options.choices or {}).items():
        space[name] = _narrow(space, name, values)
    defaults = {k: p.default for k, p in space.items()}
    return Setup(target, strategies, skipped, space, defaults, base_pipeline(task, target, options.mode), caps)


def _narrow(space: dict[str, Param], name: str, values: tuple[object, ...]) -> Param:
    if name not in space:
        raise AutoaccelError(f"--choices: unknown parameter '{name}'{did_you_mean(name, space)} "
                             f"(parameters are <strategy>.<param>, e.g. {next(iter(space), 'batch_size.size')})")
    param = space[name]
    bad = [v for v in values if not param.contains(v)]
    if bad or not values:
        raise AutoaccelError(f"--choices: {name} takes values inside {param}, but got {list(values)!r}")
    if param.when and param.default not in values:
        # A conditional parameter is inactive in the user's recipe (lr_scaling applies only to a changed batch
        # size): the baseline stays reachable without its default, so the choices are exactly those given.
        return Categorical(tuple(dict.fromkeys(values)), values[0], param.when)
    kept = tuple(dict.fromkeys([param.default, *values]))  # the off value stays: the baseline must be reachable
    return Categorical(kept, param.default, param.when)


def default_study_name(task: Task, target: Target, mode: str) -> str:
    return f"{task.name}-{target.key}-{mode}"
