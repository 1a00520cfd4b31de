"""The run's time: when the search stops starting trials and when the whole run should be done (--timeout,
--budget), and the share of the schedule search trials train, planned from a probe of the user's recipe."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from rich.markup import escape

from autoaccel.errors import TrialFailure
from autoaccel.options import FINISH_SHARE, Options, parse_fidelity
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.trial import Fidelity, InProcessRunner, IsolatedRunner
from autoaccel.trial import fidelity as fidelities


@dataclass
class Budget:
    """Monotonic times: ``deadline`` for starting search trials (``why`` says which limit it is), ``end`` for the
    whole run (None: no limit). A worker that joins a run takes the run's (team/)."""

    deadline: float | None = None
    why: str = ""
    end: float | None = None

    def begin(self, options: Options, say: Callable[[str], None]) -> None:
        """From now: the deadline at --timeout, or when the budget's share for searching is spent (the rest is
        kept for the finish)."""
        now = time.monotonic()
        ends: list[tuple[float, str]] = []
        end = None
        if options.timeout:
            ends.append((now + options.timeout, "--timeout reached"))
        if (budget := options.resolved_budget()) is not None:
            end = now + budget * 60.0
            ends.append((now + budget * 60.0 * (1 - FINISH_SHARE), f"search share of the {budget:g}-minute budget spent"))
            say(f"budget: {budget:g} minutes, about {budget * (1 - FINISH_SHARE):.1f} of them searching "
                "(--budget MINUTES, or --trials N, to change)")
        self.deadline, self.why = min(ends) if ends else (None, "")
        self.end = end

    def spent(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def left(self) -> float | None:
        """Seconds until the run should be done (None: no limit)."""
        return None if self.end is None else self.end - time.monotonic()


def study_fidelity(study: optuna.Study, plan: Callable[[], Fidelity]) -> Fidelity:
    """The share of the schedule every search trial trains, chosen once per study: a resumed run or a joining
    worker keeps the study's, so that its trials stay comparable with the baseline."""
    stored = study.user_attrs.get("fidelity")
    if stored is not None:
        return Fidelity.from_json(stored)
    chosen = plan()
    study.set_user_attr("fidelity", chosen.to_json())
    return chosen


def plan_fidelity(options: Options, base: Pipeline, seed: int, runner: IsolatedRunner | InProcessRunner,
                  budget: Budget, techniques: int, say: Callable[[str], None]) -> Fidelity:
    """Probe the user's recipe for a few dozen steps and plan from its projected training time and the budget;
    or take --fidelity as given."""
    chosen = parse_fidelity(options.fidelity)
    if not base.train or chosen == 1.0 or (chosen is None and budget.deadline is None):
        return Fidelity(how="every training trial trains your whole recipe" if base.train else "nothing trains")
    try:
        found = runner.probe(base, seed)
    except TrialFailure as failure:
        # The baseline trial will fail with the same reason, said there; here only the plan is lost.
        say(escape(f"could not time your recipe ahead of the search ({failure.reason}); training it whole"))
        return Fidelity(how="whole recipe (the probe failed)")
    full_s, steps, step_s = found["full_s"], int(found["full_steps"]), found["step_s"]
    if chosen is not None:
        return fidelities.fixed(chosen, full_s, steps, step_s)
    now = time.monotonic()
    search_s = max(0.0, budget.deadline - now) if budget.deadline is not None else None
    finish_s = max(0.0, budget.end - (budget.deadline or now)) if budget.end is not None else None
    return fidelities.plan(full_s, steps, step_s, search_s, finish_s, techniques)
