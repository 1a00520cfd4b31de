"""The budget plans the fidelity: how much of the user's schedule a search trial trains, and at what share the
train answer's quality is confirmed before it is given.

After a short probe of the user's recipe (its steady step time, projected to the whole run), the search knows
what one full training costs here. Every training trial of the search then trains the whole schedule compressed
to one *rung* (1, 1/2, 1/4, ... of its steps; see course.py), the baseline included, so candidates and the
baseline are always compared at the same fidelity. The rung is the largest that lets the search's share of the
budget run enough training trials to screen every training technique and combine them. In the finish the train
answer is trained again beside the baseline at a higher rung (successive halving's promotion, with one finalist),
and given only if its quality still holds there. Speed is projected from the steady step time either way, and
re-measured in paired, interleaved slices by the finish.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

RUNGS = tuple(1.0 / 2**k for k in range(0, 11))  # 1, 1/2, ..., 1/1024
# Training trials a search should afford: this many per training technique (a screen, a second setting, a
# stack or combination), plus a few for combining.
TRIALS_PER_TECHNIQUE = 3
EXTRA_TRIALS = 4
# Share of the search's time training trials may take (serving screens, failures and the baseline take the rest).
TRAINING_SHARE = 0.6
# A compressed run takes at least this many steps: the steady step time and the loss curve need them.
MIN_STEPS = 40
# Unless steps are few and dear (the budget affords fewer whole trainings than there are training techniques to
# screen: a zoo model's 3 epochs of 69 steps at half a second each): then speed is screened on slices this short,
# whatever the epoch count (DeepSpeed's autotuner profiles a few steps per experiment); the first fifth of a
# slice is warm-up, left out of its step time.
MIN_SLICE_STEPS = 16
# The answer's rung is up to this many times the search's (with --fidelity); its two trainings (the answer and the
# baseline) may take this share of the finish's time.
PROMOTION = 4
ANSWER_SHARE = 0.5
# The highest rung the recipe's ladder climbs to find where quality can be judged (curve.py, search/_ladder.py):
# the ladder (the recipe at each rung up to it: under two trainings at the top rung), a replica at the rung below it
# and two candidates promoted there (a training at half the top rung each) cost about LADDER_COST trainings at the
# top rung, which must fit in this share of the whole budget.
LADDER_SHARE = 0.35
LADDER_COST = 3.5
CLIMB_WHOLE = 1.5  # the recipe's runs at 1/2 and at full length, in whole trainings
PROBE_STEPS = 30  # steps of the user's recipe the probe times


@dataclass(frozen=True)
class Fidelity:
    """The fractions of the schedule the search and the answer train, and what they were planned from. ``answer``
    is the highest rung the recipe's ladder climbs and a candidate is promoted to (where quality can be judged)."""

    search: float = 1.0
    answer: float = 1.0
    full_s: float = 0.0  # one training of the user's whole recipe, projected from the probe (0: not probed)
    full_steps: int = 0
    step_s: float = 0.0
    how: str = "whole recipe"  # how it was chosen: planned from the probe, --fidelity, or not needed

    @property
    def compressed(self) -> bool:
        return self.search < 1.0

    def header(self) -> str:
        """One line for the run's header: what one training costs here, and what each trial trains."""
        if self.full_s <= 0:
            return f"fidelity: {self.how}"
        lead = f"one full training of your recipe takes about {duration(self.full_s)} here ({self.full_steps} steps)"
        if not self.compressed:
            return f"{lead}: every training trial trains it whole"
        up = "full length" if self.answer >= 1.0 else share(self.answer)
        return (f"{lead}: speed is judged on {max(1, round(self.search * self.full_steps))}-step runs projected to the whole "
                f"recipe, quality where your recipe has learned: its curve is measured from {share(self.search)} of your "
                f"schedule up to {up}, and candidates are promoted there ({self.how})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "Fidelity":
        if not data:
            return cls()
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def affordable(low: float, high: float, full_s: float, base_wall_s: float, seconds_left: float | None) -> float | None:
    """The highest rung above ``low``, at most ``high``, at which the promotion's two trainings (the answer's and
    the recipe's) fit in ``seconds_left``: each estimated as the baseline's trial at ``low`` (``base_wall_s``,
    start-up and evaluation included) plus the extra share of one full training. None: none fits."""
    if seconds_left is None:
        return high
    for rung in RUNGS:
        if low < rung <= high and 2.0 * (base_wall_s + full_s * (rung - low)) <= seconds_left:
            return rung
    return None


def share(fraction: float) -> str:
    """'1/16 of your schedule' style: the fraction as 1/k when it is one, else a percentage."""
    if fraction >= 1.0:
        return "full length"
    f = Fraction(fraction).limit_denominator(4096)
    return f"1/{f.denominator}" if f.numerator == 1 else f"{fraction:.0%}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan(full_s: float, full_steps: int, step_s: float, search_s: float | None, finish_s: float | None,
         techniques: int) -> Fidelity:
    """The largest rung at which ``search_s`` seconds of searching afford enough training trials for
    ``techniques`` training techniques, and the answer's rung that ``finish_s`` affords (never lower)."""
    if search_s is None or full_s <= 0 or full_steps <= 0:
        return Fidelity(1.0, 1.0, full_s, full_steps, step_s, "no time budget: every training trial trains the whole recipe")
    wanted = TRIALS_PER_TECHNIQUE * max(1, techniques) + EXTRA_TRIALS
    whole = TRAINING_SHARE * search_s / full_s  # whole trainings the search affords
    affordable = TRAINING_SHARE * search_s / (wanted * full_s)
    search = next((r for r in RUNGS if r <= affordable), RUNGS[-1])
    at_least = next((r for r in reversed(RUNGS) if r >= min(1.0, MIN_STEPS / full_steps)), 1.0)
    # Few and dear steps: MIN_STEPS-step runs would be half the schedule or all of it, and the budget does not
    # afford a whole training per technique: shorter slices, rather than screening a few techniques whole.
    dear = at_least >= 0.5 and whole < max(1, techniques)
    if dear:
        at_least = next((r for r in reversed(RUNGS) if r >= min(1.0, MIN_SLICE_STEPS / full_steps)), 1.0)
    search = max(search, at_least)
    answer = search
    if finish_s is not None:
        # The rung where the recipe's curve is looked for, and the answer promoted to: the highest whose ladder
        # and promotions the budget affords (curve.py says at which rung quality means something).
        share_s = LADDER_SHARE * (search_s + finish_s)
        answer = max(search, next((r for r in RUNGS if LADDER_COST * r * full_s <= share_s), search))
        if CLIMB_WHOLE * full_s <= share_s:
            # The recipe's own climb to full length (its runs at 1/2 and 1) fits even where promotions there do
            # not: serving changes are then judged on the recipe's model trained whole, and a training candidate is
            # promoted there if the finish's time allows (else it stays a candidate that `confirm` judges).
            answer = 1.0
    how = (f"planned for {wanted} training trials in {duration(search_s)} of searching" if search < 1.0
           else "the budget affords whole trainings")
    if dear and search < 1.0:
        how = (f"steps are few and dear: {duration(search_s)} of searching affords {whole:.1f} whole trainings for "
               f"{techniques} training techniques, so speed is screened on slices of steps after warm-up")
    return Fidelity(search, answer, full_s, full_steps, step_s, how)


def fixed(fraction: float, full_s: float = 0.0, full_steps: int = 0, step_s: float = 0.0) -> Fidelity:
    """The fidelity a user set with --fidelity: the search at that share, the answer promoted to PROMOTION times
    it (as far as the budget affords when the finish comes; full length at most)."""
    return Fidelity(fraction, min(1.0, fraction * PROMOTION), full_s, full_steps, step_s, "set by --fidelity")
