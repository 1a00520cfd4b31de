"""Members: other feasible trained recipes of the study that a plan serves beside its own model.

The core chooses them (a strategy only says how many it needs, through ``Strategy.members_needed``), records
them with the trial, and charges their training to whoever uses them.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import TrialState

from autoaccel.plugin._configuration import factor_of
from autoaccel.plugin._pipeline import Member, Pipeline
from autoaccel.plugin._strategy import Strategy, apply_all, strategy_of
from autoaccel.task import Task
from autoaccel.trial import TrialRecord, read, training_key


def member_of(t: TrialRecord, task: Task, strategies: Sequence[Strategy], base: Pipeline, mode: str) -> Member | None:
    """Trial ``t``'s trained model as a member: its training settings (to reproduce it) and cost. None for a
    trial that itself serves members, or whose model was not trained by a recipe of this study."""
    checkpoint = t.details.get("checkpoint")
    if checkpoint is None or t.members:
        return None
    by_name = {s.name: s for s in strategies}
    train_params = {k: v for k, v in (t.config or {}).items() if strategy_of(k) in by_name
                    and factor_of(by_name[strategy_of(k)], mode) == "train"}
    plan = apply_all(strategies, base, train_params)
    if training_key(task, plan) != checkpoint:
        return None
    return Member(t.number, checkpoint, plan, train_params, float(t.metrics["train_time"]), float(t.metrics.get("memory", 0.0)))


def choose_members(study: optuna.Study, task: Task, strategies: Sequence[Strategy], base: Pipeline, mode: str,
                   plan: Pipeline, k: int) -> tuple[Member, ...]:
    """The ``k`` most accurate feasible trained models of training recipes other than ``plan``'s (none that
    itself serves members), each with the training it cost. Fewer when the study has fewer."""
    seen, found = {training_key(task, plan)}, []
    trials = [read(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    for t in sorted(trials, key=lambda t: -t.metrics.get("accuracy", 0.0)):
        member = member_of(t, task, strategies, base, mode) if t.feasible and t.duplicate_of is None else None
        if member is not None and member.key not in seen:
            seen.add(member.key)
            found.append(member)
        if len(found) == k:
            break
    return tuple(found)


def recipe_at(task: Task, base: Pipeline, fraction: float | None, replica: int = 0) -> Pipeline:
    """The user's recipe ``base`` (at the search's share of the schedule) training ``fraction`` of its schedule
    instead (None: the search's), from the task's seed or, as a replica, another (``replica``)."""
    if (fraction is None or fraction == base.fraction) and not replica:
        return base
    moved = base.replace(fraction=base.fraction if fraction is None else fraction, replica=replica)
    return moved.replace(baseline_key=training_key(task, moved))


def plan_of(study: optuna.Study, trial: int, task: Task, strategies: Sequence[Strategy], base: Pipeline, mode: str) -> Pipeline:
    """The plan a completed trial ran, its members rebuilt from the trials they came from."""
    trials = study.get_trials(deepcopy=False)
    t = read(trials[trial])
    # A trial trained at another share of the schedule (a rung, a promotion, a confirmation) than the search's, or a
    # replica of the recipe from another seed.
    base = recipe_at(task, base, t.fraction, t.replica or 0)
    plan = apply_all(strategies, base, t.config or {})
    members = [member_of(read(trials[int(m["trial"])]), task, strategies, base, mode) for m in t.members]
    return plan.replace(members=tuple(m for m in members if m is not None)) if members else plan
