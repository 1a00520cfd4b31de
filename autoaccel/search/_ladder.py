"""The recipe's ladder: before candidates are judged on quality, the user's recipe is trained at the rungs above
the search's (1/16, 1/8, 1/4, ... of its schedule) until a rung is found where its curve has flattened
(trial/_curve.py says when); when that is the search's own rung, once more there from another seed (its
run-to-run noise joins every candidate's interval). Quality drops are judged there; below it candidates are ranked
and the fastest promoted (finish/_promotion.py). The ladder reads what it has measured from the study's trials, so a
resumed run or a joining worker climbs on from where the study is.

Its trials are the recipe's own (role ``rung``): they count against the budget's time, not against ``--trials``,
and their checkpoints are what serving trials serve from (the recipe's model at a rung where it has learned).
"""

from __future__ import annotations

from collections.abc import Sequence

from autoaccel.finish import recipe_curve
from autoaccel.task import Shown
from autoaccel.trial import Fidelity, TrialRecord, share
from autoaccel.trial._curve import RecipeCurve
from autoaccel.vocab import Role

# A rung is climbed only when its training (that share of one whole training, as the probe timed it) takes at most
# this share of the search's time left: the candidates still need the rest.
RUNG_SHARE = 0.4


class Ladder:
    """What to train of the recipe next to know where quality can be judged; None when that is known (or the
    budget cannot tell more)."""

    def __init__(self, fidelity: Fidelity) -> None:
        self.fidelity = fidelity

    def next(self, records: Sequence[TrialRecord], curve: RecipeCurve, seconds_left: float | None) -> tuple[float, int] | None:
        """(fraction, replica) of the recipe's next training; None: the ladder is done."""
        low = self.fidelity.search
        if not self.fidelity.compressed or curve.value(low) is None:
            return None
        if any(r.role == Role.RUNG and r.failure_kind and not r.not_run for r in records):
            return None  # a rung failed (said on its line): judged with what there is, not retried
        found = curve.judged_at(low)
        if found == low:
            # Candidates are judged where they are measured: the run-to-run noise there joins their intervals.
            replicated = any(r.replica and recipe_curve.fraction_of(r) == low for r in records)
            return None if replicated else (low, 1)
        if found is not None:
            # Judged higher up: only the finish's promotions train there, and measure its noise first (promotion.py).
            return None
        top = max(f for f in curve.fractions if f < 1.0)
        up = min(1.0, top * 2)
        if up > self.fidelity.answer + 1e-12 or not self._affordable(up, seconds_left):
            return None
        return (up, 0)

    def _affordable(self, fraction: float, seconds_left: float | None) -> bool:
        """Whether one training of the recipe at ``fraction`` fits in the share of the search's time it may take."""
        if seconds_left is None or self.fidelity.full_s <= 0:
            return True
        return self.fidelity.full_s * fraction <= RUNG_SHARE * seconds_left

    @staticmethod
    def serving_fraction(curve: RecipeCurve, low: float) -> float | None:
        """The rung serving trials serve the recipe's model from: where its curve flattened, else the highest it
        was trained at (the most learned model the search has); None: the search's own."""
        found = curve.judged_at(low)
        if found is None:
            below = [f for f in curve.fractions if f < 1.0]
            found = max(below) if below else None
        return None if found is None or found == low else found

    @staticmethod
    def words(curve: RecipeCurve, low: float, shown: Shown) -> str:
        """The ladder's finding in one line for the run's log."""
        points = ", ".join(f"{shown.fmt(curve.quality[k])} at {share(float(k))}" for k in sorted(curve.quality, key=float))
        found = curve.judged_at(low)
        if found == low:
            return f"your recipe reaches {points}: quality can be judged at {share(low)}, the search's rung"
        if found is None:
            return (f"your recipe reaches {points}: its curve has not flattened at any rung the budget affords, so no "
                    "quality drop is judged here; the answers keep to speed-only changes, `autoaccel confirm` judges the rest")
        return (f"your recipe reaches {points}: quality is judged at {share(found)}, where its curve has flattened; at "
                f"{share(low)} candidates are ranked by speed, and the fastest promoted to {share(found)}")
