"""The words every part of autoaccel shares, with nothing heavy behind them: the command line, the options and
the outputs import them without importing torch or the trial runner (``autoaccel --help`` stays quick).

The enums are ``StrEnum``s: each member equals its string (``Goal.TRAIN == "train"``), so records stored by Optuna
as JSON read the same words as before and code compares against the names. The tuples and sets below hold the
plain strings (``.value``): they end up in pareto.json and recipe.yaml, and YAML's safe dumper takes only plain
``str``."""

from __future__ import annotations

from enum import StrEnum


class Goal(StrEnum):
    """What an answer is for: training, serving, or both changes applied together."""

    TRAIN = "train"
    SERVE = "serve"
    COMBINED = "combined"


# The factors a configuration changes independently (each has its own answer); combined joins the two.
FACTORS: tuple[str, ...] = (Goal.TRAIN.value, Goal.SERVE.value)
GOALS: tuple[str, ...] = tuple(g.value for g in Goal)


class Mode(StrEnum):
    """What a search looks at (strategy.MODES maps each to the phases its strategies act in)."""

    TRAIN = "train"
    INFERENCE = "inference"
    BOTH = "both"


MODE_NAMES: tuple[str, ...] = tuple(m.value for m in Mode)


class Role(StrEnum):
    """Why a trial of the study ran."""

    BASELINE = "baseline"  # the user's recipe, trial 0
    SCREEN = "screen"  # one technique alone (or on top of the best recipe so far)
    STACK = "stack"  # a technique added to a feasible winner
    CANDIDATE = "candidate"  # sampled by Optuna
    LOCAL = "local"  # one setting away from the best so far
    NEIGHBOUR = "neighbour"  # instead of a sampled repeat of a measured configuration
    ABLATION = "ablation"  # the finish: an answer with one technique dropped
    COMBINED = "combined"  # the finish: the train and serve answers together
    PROMOTION = "promotion"  # the finish: a train candidate and the recipe at a higher share of the schedule
    RUNG = "rung"  # the search: the recipe at a higher rung, or again from another seed (its learning curve)
    CONFIRM = "confirm"  # `autoaccel confirm`: an answer trained whole


# The trials the search itself proposes (the finish's and confirm's always run to the end).
SEARCH_ROLES = frozenset(r.value for r in (Role.CANDIDATE, Role.SCREEN, Role.STACK, Role.LOCAL, Role.NEIGHBOUR))


class FailureKind(StrEnum):
    """Why a trial has no measurement (TrialFailure.kind, the record's failure_kind)."""

    ERROR = "error"
    CRASH = "crash"
    TIMEOUT = "timeout"
    OOM = "oom"
    UNSUPPORTED = "unsupported"
    DIVERGED = "diverged"
    TOO_SLOW = "too_slow"  # stopped early: on course to train slower than an answer could
    INFEASIBLE = "infeasible"  # not run yet: too few feasible trained models for its members
    BUSY = "busy"  # not run: another worker was measuring the same configuration
    INTERRUPTED = "interrupted"


# Metrics every trial reports; the objectives are chosen among them. True = higher is better. "accuracy" is the
# quality slot: the task's metric oriented so that higher is better (Metric.sign), whatever the metric is; every
# output shows it under the metric's own name and sign (metrics.Shown).
METRICS: dict[str, bool] = {
    "accuracy": True,
    "train_time": False,
    "train_throughput": True,
    "latency": False,
    "throughput": True,
    "memory": False,
}
OBJECTIVES = tuple(METRICS)
SPEED_OBJECTIVES = ("train_time", "train_throughput", "latency", "throughput", "memory")
REMEASURED = ("train_time", "train_throughput", "latency", "throughput")
TRAINING_OBJECTIVES = ("train_time", "train_throughput")
