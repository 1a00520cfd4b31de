"""Successive halving's promotion for the train answer: a finalist that won on speed is trained again at a higher
rung beside the user's recipe (same seed and data order) and given only if its quality holds there.

- Judged below an informative rung (trial/_curve.py: the recipe had not learned there), it goes to the lowest
  informative rung the recipe's ladder found, where the recipe is already trained; without one, or the time to
  train it there, it stays a candidate whose quality is unknown.
- Judged at an informative rung, it goes as high as the rest of the budget affords (its recipe trained beside it),
  for more evidence; a speed-only change of the recipe's own math needs none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from autoaccel.finish._answers import Answer, candidate, describe_speed, judging, keep
from autoaccel.finish._finishing import Finishing
from autoaccel.finish._summary import Point, Summary, over_budget
from autoaccel.trial import affordable, read, share
from autoaccel.trial._curve import key
from autoaccel.vocab import Role

if TYPE_CHECKING:
    from autoaccel.finish._finishing import Runner


class Promotion:
    """Promotes the train answer and remembers the point its quality was judged on (``judged_on``)."""

    def __init__(self, given: Finishing, study: optuna.Study, runner: "Runner", refresh: Callable[[], Summary]) -> None:
        self.given, self.study, self.runner, self.refresh = given, study, runner, refresh
        self.fidelity = given.fidelity
        self.judged_on: Point | None = None  # the promoted trial the train answer's quality was judged on

    def promote(self, answer: Answer) -> Answer:
        """The answer promoted and judged at the higher rung; or 'keep your recipe' saying why. A rejection that a
        later finalist might escape (over budget or failed at the rung) is marked ``promotable``."""
        summary = self.refresh()
        point = summary.point(answer.trial)
        assert point is not None, answer.trial
        if point.judged == "not judged":
            return self._to_informative(answer, point, summary)
        low, high = self.fidelity.search, self.fidelity.answer
        if not answer.given or high <= low or point.judged == "same math":
            return answer
        # The rung was planned from the finish's share of the budget; what is left of it now decides.
        rung = affordable(low, high, self.fidelity.full_s, self.baseline_wall(), self.left())
        if rung is None:
            return self._unpromoted(answer, f"no time was left in the budget to train it at a higher share of your "
                                            f"schedule than the search's {share(low)}")
        self.given.say(f"train answer: training it and your recipe at {share(rung)} of your schedule "
                       f"(the search judged quality at {share(low)}) ...")
        base = self.given.run_fixed(self.study, self.runner, {}, Role.PROMOTION.value, rung)
        mine = self.given.run_fixed(self.study, self.runner, answer.params, Role.PROMOTION.value, rung)
        if base is None or mine is None:
            return self._unpromoted(answer, f"its training at {share(rung)} of your schedule failed")
        # Kept out here, the next finalist is not tried: this one had already passed an informative rung.
        return self._held(answer, mine, rung, f"quality judged at {share(rung)} of your schedule, after the search's "
                                              f"{share(low)}", promotable=False)

    def _to_informative(self, answer: Answer, point: Point, summary: Summary) -> Answer:
        curve, low = summary.curve, self.fidelity.search
        judged = judging("train", self.given.objectives)
        rung = curve.judged_at(low) if curve is not None else None
        if rung is None:
            return keep("train", summary.baseline, candidate(point, judged, curve))
        left = self.left()
        # The recipe is already trained there (the ladder): one training at that rung with the search's start-up,
        # two when its run-to-run noise is still to be measured.
        trainings = 1 if curve is not None and key(rung) in curve.noise else 2
        if left is not None and trainings * (self.baseline_wall() + self.fidelity.full_s * (rung - low)) > left:
            why = (f"no time was left in the budget to train it at {share(rung)} of your schedule, where your recipe "
                   "has learned")
            return keep("train", summary.baseline, candidate(point, judged, curve, why))
        self.given.say(f"train answer: quality was not judged at {share(low)} of your schedule (your recipe has not "
                       f"learned there); training it at {share(rung)}, where your recipe has ...")
        self.measure_noise(rung)
        trial = self.given.run_fixed(self.study, self.runner, answer.params, Role.PROMOTION.value, rung)
        if trial is None:
            return keep("train", summary.baseline, {"trial": answer.trial, "params": answer.params, "promotable": True,
                                                     "reason": f"its training at {share(rung)} of your schedule failed"})
        return self._held(answer, trial, rung, f"quality not judged at the search's {share(low)} (your recipe had not "
                                               f"learned there); judged at {share(rung)}", promotable=True)

    def _held(self, answer: Answer, trial: optuna.trial.FrozenTrial, rung: float, lead: str, promotable: bool) -> Answer:
        """The answer judged on its promoted ``trial`` against the recipe's run at ``rung`` (the study's point for
        it: its drop paired over samples, with that rung's training noise): given with that quality, or kept out
        (``promotable``: the next finalist may be promoted in its place)."""
        summary = self.refresh()
        promoted = summary.point(trial.number)
        curve = summary.curve
        assert promoted is not None and curve is not None, trial.number
        recipe = curve.trials.get(key(rung))
        shown, drop, max_drop = promoted.shown, promoted.accuracy_drop, self.given.max_drop
        reference = curve.value(rung)
        figures = (f"{shown.name} {shown.fmt(promoted.metrics['accuracy'])} vs "
                   f"{shown.fmt(reference if reference is not None else float('nan'))} at {share(rung)} of your schedule "
                   f"(trial {promoted.trial} and your recipe's trial {recipe})")
        # Below full length out only when over the budget beyond noise; at full length by its value.
        if over_budget(drop, max_drop, rung) > 1e-12:
            beyond = " beyond noise" if rung < 1.0 else ""
            why = (f"its {shown.drop_word} {drop['value']:.4g} [{drop['ci95'][0]:.4g}, {drop['ci95'][1]:.4g}] at "
                   f"{share(rung)} of your schedule is over the budget of {max_drop:g}{beyond} ({figures})")
            return keep("train", summary.baseline, {"trial": answer.trial, "params": answer.params, "reason": why,
                                                     "promotable": promotable, "fraction": rung,
                                                     "informative": curve.informative(rung)})
        self.judged_on = promoted
        noise = " (the difference is within noise)" if drop["within_noise"] else ""
        answer.verdict = f"{describe_speed(answer.speedup, self.given.objectives)}; {figures}{noise}"
        answer.accuracy_drop = {**drop, "fraction": rung, "trials": [promoted.trial, recipe]}
        answer.notes.append(f"{lead}: {shown.drop_word} {drop['value']:+.4f} [{drop['ci95'][0]:+.4f}, "
                            f"{drop['ci95'][1]:+.4f}]")
        return answer

    def _unpromoted(self, answer: Answer, why: str) -> Answer:
        """The train answer when it could not be trained at a higher rung: its quality stands at the search's
        (informative) rung, where a drop within noise kept it in the running; given only if the drop itself is
        within the budget."""
        low, drop, max_drop = self.fidelity.search, answer.accuracy_drop, self.given.max_drop
        if over_budget(drop, max_drop, None) > 1e-12:  # by its value, as at full length: nothing more to go on
            return keep("train", self.refresh().baseline, {
                "trial": answer.trial, "params": answer.params,
                "reason": f"{why}, and at {share(low)} of your schedule its accuracy drop {drop['value']:.4g} is over the "
                          f"budget of {max_drop:g} (within noise: it could still have won at a higher share)"})
        answer.notes.append(f"{why}; its quality stands at {share(low)}")
        return answer

    def measure_noise(self, rung: float) -> None:
        """Train the recipe at ``rung`` once more from another seed, unless its run-to-run noise is measured there: a
        trial trained at that rung is then judged with that noise in its interval. The ladder leaves it to the finish,
        as only the finish trains candidates above the search's rung."""
        curve = self.refresh().curve
        if rung >= 1.0 or curve is None or key(rung) in curve.noise:
            return
        self.given.say(f"  your recipe again from another seed at {share(rung)}: how far two runs of the same math differ there")
        self.given.run_fixed(self.study, self.runner, {}, Role.RUNG.value, rung, 1)

    def left(self) -> float | None:
        """Seconds left of the run's budget (None: no budget); the finisher fits its re-measurement to it too."""
        return self.given.budget_end - time.monotonic() if self.given.budget_end is not None else None

    def baseline_wall(self) -> float:
        """Wall seconds of the baseline's search trial (a training at the search's rung, start-up and evaluation)."""
        base = next(t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("role") == Role.BASELINE)
        return read(base).seconds or 0.0

    def crowds_out(self, trainings: int) -> bool:
        """Whether ``trainings`` more runs at the search's rung (an ablation's variants) would leave no time in the
        budget for the train answer's promotion that the budget affords now. Quality at a higher rung is worth
        more than a minimal answer: evidence, not tidiness."""
        low, high = self.fidelity.search, self.fidelity.answer
        left = self.left()
        if high <= low or left is None:
            return False
        wall = self.baseline_wall()
        possible = affordable(low, high, self.fidelity.full_s, wall, left)
        return possible is not None and affordable(low, high, self.fidelity.full_s, wall, left - trainings * wall) is None
