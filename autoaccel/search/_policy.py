"""The policy: what the search measures next. The user's recipe first; then, in stages, every technique alone,
stacked on the best so far, sampled combinations (Optuna) and local moves one setting away from the best
(stages.py, screening.py, neighbours.py). It reads the study's records and proposes; it runs nothing, so the
replay benchmark (bench/search_replay.py) and a real run drive the very same policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from autoaccel.finish import judging
from autoaccel.options import Options
from autoaccel.plugin._configuration import factor_of
from autoaccel.plugin._strategy import Strategy
from autoaccel.search._neighbours import Neighbours
from autoaccel.search._plans import Plans
from autoaccel.search._screening import incumbent
from autoaccel.search._setup import Setup
from autoaccel.search._stages import Proposal, Stages
from autoaccel.trial import TrialRecord
from autoaccel.vocab import FACTORS, SEARCH_ROLES, TRAINING_OBJECTIVES

# Proposals in a row of measured configurations after which, every technique searched, the search has run out
# of new configurations (the run then finishes early).
MAX_REPEATS = 20
# A training trial on course to take this many times the fastest feasible training time so far (the user's recipe
# or a faster configuration) is stopped early: it cannot be the training answer (the margin is for the projection,
# made from a tenth of the run).
STOP_SLOWER = 1.1


class Policy:
    def __init__(self, setup: Setup, plans: Plans, options: Options, objectives: tuple[str, ...]) -> None:
        self.setup, self.mode, self.objectives = setup, options.mode, objectives
        self.turn = 0  # sampled trials and local moves asked so far: which factor the next one varies
        self.stages = Stages(setup.strategies, setup.space, self.mode,
                             {f: judging(f, objectives) for f in FACTORS}, self.factors())
        self.neighbours = Neighbours(setup.space, setup.defaults, self.mode, plans.build)
        # A fixed count of trials (no time budget) makes every trial equally dear: when it cannot screen every
        # technique alone, the run is short (see Stages.short).
        self.stages.short = options.trials is not None and options.trials - 1 < self.stages.screening.size

    def factors(self, strategies: Sequence[Strategy] | None = None) -> tuple[str, ...]:
        """The factors that have strategies to search, in the order trials alternate between them."""
        present = {factor_of(s, self.mode) for s in (self.setup.strategies if strategies is None else strategies)}
        # Serving first: its trials reuse the baseline's trained model and cost evaluation only.
        return tuple(f for f in reversed(FACTORS) if f in present)

    def _next_factor(self) -> str | None:
        """The factor the next sampled trial or local move varies: they alternate, one turn each."""
        factors = self.factors(self.stages.searched)
        if not factors:
            return None
        factor = factors[self.turn % len(factors)]
        self.turn += 1
        return factor

    def propose(self, study: optuna.Study, records: list[TrialRecord], base: TrialRecord) -> Proposal:
        """The next proposal (its messages say what the user is told before it runs); ``config`` None: a sampled
        trial, whose settings Optuna suggests (see ``sampling``)."""
        proposal = self.stages.next(records, base)
        if proposal.role == "local":
            # Half the combining trials explore one setting away from the best configurations so far.
            near = self._local(study, records, base)
            proposal = Proposal("local", near, messages=proposal.messages) if near is not None else \
                Proposal("candidate", messages=proposal.messages)
        return proposal

    def _local(self, study: optuna.Study, records: list[TrialRecord], base: TrialRecord) -> dict[str, Any] | None:
        """A local move around the best configurations of the next factor (see neighbours.py)."""
        factor = self._next_factor()
        if factor is None:
            return None
        return self.neighbours.around_best(study, records, base, self.stages.searched, factor,
                                           judging(factor, self.objectives), self.turn)

    def sampling(self, role: str) -> tuple[Sequence[Strategy], tuple[str, ...]]:
        """What a trial of ``role`` suggests: which strategies, and the factors it may vary. Enqueued trials (the
        baseline, combined answers, ablation variants) fix every factor; a sampled trial varies one factor at a
        time, so each answer has trials that changed only what it judges."""
        if role != "candidate":
            return self.setup.strategies, FACTORS
        # Alternate on every proposal, reused or not: a factor whose proposals keep repeating measured
        # configurations must not starve the other one.
        factor = self._next_factor()
        return self.stages.searched, (factor,) if factor is not None else ()

    def instead_of_repeat(self, study: optuna.Study, trial: TrialRecord) -> dict[str, Any] | None:
        """A sampled trial that repeated a measured configuration (TPE does, on a small space): its nearest
        configuration not measured yet, so a proposal explores where the model points instead of stalling."""
        factor = trial.goal if trial.goal in FACTORS else None
        return self.neighbours.near(study, self.stages.searched, trial.settings, factor, trial.number)

    def observed(self, proposal: Proposal, trial: TrialRecord, done: TrialRecord, over: TrialRecord | None) -> list[str]:
        """Learn from the trial a proposal became (``done``: the measurement it reused, or itself)."""
        return self.stages.observed(proposal, trial, done, over)

    def exhausted(self, repeats: int) -> bool:
        """Whether ``repeats`` proposals in a row of measured configurations, every technique searched, mean the
        search has run out of new configurations."""
        return repeats >= MAX_REPEATS and self.stages.stage == "widened"

    def verdicts(self, records: list[TrialRecord], base: TrialRecord) -> dict[str, Any]:
        """Why each technique was kept or dropped, as the report says it."""
        return {k: v.to_json() for k, v in self.stages.verdicts(records, base).items()}

    def has_speed_bar(self, goal: str, role: str) -> bool:
        """Whether a trial of ``goal`` and ``role`` is held to a speed bar: a search trial of the training factor,
        when training time is an objective."""
        return goal == "train" and role in SEARCH_ROLES and any(o in TRAINING_OBJECTIVES for o in self.objectives)

    def speed_bar(self, records: list[TrialRecord], base: TrialRecord | None, goal: str, role: str) -> float | None:
        """Seconds of training beyond which a search trial of the training factor is stopped early: it can no
        longer win, being slower than the fastest configuration within the accuracy budget so far (STOP_SLOWER
        times its training time, a margin for the projection's noise), so its accuracy is not worth the rest of
        its run. A screen on top of that configuration is judged against it, and would not help either."""
        if base is None or not self.has_speed_bar(goal, role):
            return None
        best = incumbent(records, base, self.stages.techniques("train"), judging("train", self.objectives))
        fastest = min(base.metrics["train_time"], best.metrics["train_time"] if best is not None else float("inf"))
        return fastest * STOP_SLOWER
