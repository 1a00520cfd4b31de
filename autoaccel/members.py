"""Ensemble members: other feasible trained recipes of the study that a plan serves beside its own model.

The core chooses them (a strategy only says how many it needs, through ``Strategy.members_needed``), records
them with the trial, and charges their training to whoever uses them.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoaccel.cache import training_key
from autoaccel.configuration import factor_of
from autoaccel.pipeline import Member, Pipeline
from autoaccel.strategy import Strategy, apply_all
from autoaccel.task import Task


def member_of(t: FrozenTrial, task: Task, strategies: Sequence[Strategy], base: Pipeline, mode: str) -> Member | None:
    """Trial ``t``'s trained model as an ensemble member: its training settings (to reproduce it) and cost.
    None for a trial that is itself an ensemble, or whose model was not trained by a recipe of this study."""
    details = t.user_attrs.get("details") or {}
    if "checkpoint" not in details or details.get("members"):
        return None
    by_name = {s.name: s for s in strategies}
    train_params = {k: v for k, v in (t.user_attrs.get("config") or {}).items() if k.partition(".")[0] in by_name
                    and factor_of(by_name[k.partition(".")[0]], mode) == "train"}
    plan = apply_all(strategies, base, train_params)
    if training_key(task, plan) != details["checkpoint"]:
        return None
    metrics = t.user_attrs["metrics"]
    return Member(t.number, details["checkpoint"], plan, train_params, float(metrics["train_time"]),
                  float(metrics.get("memory", 0.0)))


def choose_members(study: optuna.Study, task: Task, strategies: Sequence[Strategy], base: Pipeline, mode: str,
                   plan: Pipeline, k: int) -> tuple[Member, ...]:
    """The ``k`` most accurate feasible trained models of training recipes other than ``plan``'s (none that is
    itself an ensemble), each with the training it cost. Fewer when the study has fewer."""
    seen, found = {training_key(task, plan)}, []
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for t in sorted(trials, key=lambda t: -t.user_attrs.get("metrics", {}).get("accuracy", 0.0)):
        feasible = float(t.user_attrs.get("constraint", 1.0)) <= 1e-12
        member = member_of(t, task, strategies, base, mode) if feasible and "duplicate_of" not in t.user_attrs else None
        if member is not None and member.key not in seen:
            seen.add(member.key)
            found.append(member)
        if len(found) == k:
            break
    return tuple(found)


def plan_of(study: optuna.Study, trial: int, task: Task, strategies: Sequence[Strategy], base: Pipeline, mode: str) -> Pipeline:
    """The plan a completed trial ran, its members rebuilt from the trials they came from."""
    trials = study.get_trials(deepcopy=False)
    t = trials[trial]
    plan = apply_all(strategies, base, dict(t.user_attrs.get("config") or {}))
    used = (t.user_attrs.get("details") or {}).get("members") or []
    members = [member_of(trials[int(m["trial"])], task, strategies, base, mode) for m in used]
    return plan.replace(members=tuple(m for m in members if m is not None)) if members else plan
