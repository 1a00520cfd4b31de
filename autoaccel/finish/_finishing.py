"""What the finish is handed by the search that ran the study: the run's settings and how to measure more. The
finish imports nothing of the search; its collaborators (the finisher, the promotion) share these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import optuna

if TYPE_CHECKING:
    from autoaccel.options import Options
    from autoaccel.plugin._pipeline import Pipeline
    from autoaccel.task import Task
    from autoaccel.trial import Fidelity, InProcessRunner, IsolatedRunner

    Runner = IsolatedRunner | InProcessRunner


class RunFixed(Protocol):
    """Measure one configuration as a trial of the study (role: why; fraction: a share of the schedule other than
    the search's; replica: the recipe from another seed); None when it failed. The search's executor does it."""

    def __call__(self, study: optuna.Study, runner: Runner, config: dict[str, Any], role: str,
                 fraction: float | None = None, replica: int | None = None) -> optuna.trial.FrozenTrial | None: ...


@dataclass(frozen=True)
class Finishing:
    """Everything the finish works with, given by the search that ran the study: the run's settings, and how to
    measure more (a configuration as a trial of the study) and to rebuild a trial's plan. The finish imports
    nothing of the search; it is handed these."""

    task: Task
    options: Options
    objectives: tuple[str, ...]
    goals: tuple[str, ...]  # the answers this run gives (train, serve, combined: those its factors allow)
    trains: bool  # whether the user's recipe trains here (not in --mode inference with Task.weights)
    max_drop: float  # the quality budget in the metric's own units
    fidelity: Fidelity  # the shares of the schedule the search and the answer train
    budget_end: float | None  # monotonic time by which the run should be done (None: no limit)
    plan_of: Callable[[optuna.Study, int], Pipeline]
    run_fixed: RunFixed
    say: Callable[[str], None]
