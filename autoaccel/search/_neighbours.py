"""Local moves of the search: unmeasured configurations one setting away from a measured one.

Two uses: every other combining trial explores around the best configurations found so far (the sampler models
the whole space, a local move refines where it already pays), and a sampler proposal that repeats a measured
configuration is moved to its nearest unmeasured neighbour instead of stalling (TPE repeats itself on a small
space).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

from autoaccel.plugin._configuration import factor_of
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._space import Param
from autoaccel.plugin._strategy import Strategy, strategy_of
from autoaccel.search import _study as studies
from autoaccel.search._screening import incumbent
from autoaccel.trial import TrialRecord

# A configuration over the budget is moved from when its drop is at most this many budgets beyond it.
NEAR_BUDGET = 2.0
Build = Callable[[dict[str, Any]], tuple[dict[str, Any], Pipeline, int]]


class Neighbours:
    def __init__(self, space: Mapping[str, Param], defaults: Mapping[str, Any], mode: str, build: Build) -> None:
        self.space, self.defaults, self.mode, self.build = space, defaults, mode, build

    def near(self, study: optuna.Study, searched: Sequence[Strategy], settings: Mapping[str, Any],
             factor: str | None, seed: int, first: frozenset[str] = frozenset()) -> dict[str, Any] | None:
        """An unmeasured configuration one setting away from ``settings``, among the ``searched`` techniques of
        ``factor`` (any factor when None); moves are tried in an order drawn from ``seed``, so calls spread out,
        the moves of the techniques named in ``first`` before the others."""
        moves = [(name, value) for s in searched if factor is None or factor_of(s, self.mode) == factor
                 for name, param in self.space.items() if name.startswith(f"{s.name}.")
                 for value in param.grid_values() if value != settings.get(name, param.default)]
        random.Random(seed).shuffle(moves)
        moves.sort(key=lambda move: strategy_of(move[0]) not in first)  # stable: shuffled within each part
        for name, value in moves:
            candidate = {**settings, name: value}
            config, plan, missing = self.build({**self.defaults, **candidate})
            if missing or not config or studies.duplicate_of(study, plan.fingerprint()) is not None:
                continue
            return candidate
        return None

    def around_best(self, study: optuna.Study, records: Sequence[TrialRecord], base: TrialRecord,
                    searched: Sequence[Strategy], factor: str, metrics: Sequence[str], turn: int) -> dict[str, Any] | None:
        """One setting away from the best feasible configuration of ``factor``, or from its fastest one over the
        accuracy budget (one setting may bring it back: a fine-tuning epoch, a milder cut); which of the two is
        tried first alternates with ``turn``."""
        names = {s.name for s in searched if factor_of(s, self.mode) == factor}
        budget = float(study.user_attrs.get("max_accuracy_drop") or 0.0)
        for feasible in ((True, False) if turn % 4 < 2 else (False, True)):
            # Over the budget, only by a little: a configuration that lost many times the budget (a cut that
            # broke the model) is not one setting away from keeping it.
            near_enough = records if feasible else [r for r in records if (r.constraint or 0.0) <= NEAR_BUDGET * budget]
            top = incumbent(near_enough, base, names, metrics, feasible=feasible)
            # Over the budget, the settings of the techniques that cost accuracy alone are moved first: where a
            # milder cut or a fine-tuning epoch may bring it back.
            first = frozenset() if feasible else costly(records)
            if top is not None and (near := self.near(study, searched, top.settings, factor, top.number + len(records), first)):
                return near
        return None


def costly(records: Sequence[TrialRecord]) -> frozenset[str]:
    """Techniques measured alone (their only change from the user's recipe) over the accuracy budget."""
    alone = (r for r in records if r.measured and r.duplicate_of is None and len({strategy_of(k) for k in r.settings}) == 1)
    return frozenset(strategy_of(next(iter(r.settings))) for r in alone if not r.feasible)
