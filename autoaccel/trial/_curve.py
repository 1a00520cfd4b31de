"""The recipe's learning curve over the rungs of its schedule, and whether a rung is *informative*: whether a
quality drop measured there says anything about full length.

A compressed run (course.py) trains the whole schedule in a share of its steps. Speed transfers from any share;
quality does not: at 1/16 of a ResNet's schedule the recipe sits near chance, and two runs of the same math
differ by points. So before quality is judged at a rung, the search trains the user's recipe at the rungs above
it (the ladder, search/_ladder.py) and, once, again with another seed (a replica), and this module reads them:

- **informative**: a rung is informative when the recipe's curve has flattened there: its quality at the next
  measured rung above (or at full length, when known from ``--baseline-metric`` or a whole training) differs from
  its quality at this rung by no more than the quality budget, allowing for noise (the low end of the change's
  95% interval, training and sampling noise together). "Differs", not "gains": a curve that falls (a model that
  overfits by the end) has not flattened either. Full length is informative by definition; the top rung measured,
  with nothing above it, is informative only when the curve had flattened on the way up to it.
- **training noise**: the run-to-run spread of the recipe's quality at a rung, from the replica pairs at that rung
  (the recipe with another seed; a speed-only change, whose measured quality differs from the same math's only by
  rounding amplified over the run). Every drop judged at that rung carries it in its interval (finish/_summary.py).

Below an informative rung, candidates are ranked (by speed; by quality only against each other) and never
rejected or accepted against the budget; the finish promotes the fastest to the informative rung.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from autoaccel.trial._fidelity import share

Z95 = 1.959964  # two-sided 95% normal quantile


def key(fraction: float) -> str:
    """How a rung is spelled as a key of the curve's maps (JSON keys are strings)."""
    return repr(float(fraction))


@dataclass(frozen=True)
class RecipeCurve:
    """The recipe's quality (the quality slot: higher is better) at each rung measured, with its sampling noise
    (standard error), the run-to-run training noise where replicas measured it, and the budget it is judged by."""

    budget: float
    quality: dict[str, float] = field(default_factory=dict)  # repr(fraction) -> the recipe's quality there
    sampling: dict[str, float] = field(default_factory=dict)  # repr(fraction) -> standard error of that value
    noise: dict[str, float] = field(default_factory=dict)  # repr(fraction) -> run-to-run standard deviation
    trials: dict[str, int] = field(default_factory=dict)  # repr(fraction) -> the trial that measured it
    full_from: str = ""  # where a full-length value came from, when not from a trial ("--baseline-metric")

    @property
    def fractions(self) -> list[float]:
        return sorted(float(k) for k in self.quality)

    def value(self, fraction: float) -> float | None:
        return self.quality.get(key(fraction))

    def training_noise(self, fraction: float) -> float | None:
        """The run-to-run standard deviation of quality at ``fraction``: measured there, else measured at the
        nearest rung below it (noise shrinks as a run converges, so the lower rung's is the wider one); None when no
        replica measured any."""
        if (own := self.noise.get(key(fraction))) is not None:
            return own
        below = [float(k) for k in self.noise if float(k) <= fraction]
        return self.noise[key(max(below))] if below else None

    def above(self, fraction: float) -> float | None:
        """The next measured rung above ``fraction`` (full length among them, when known)."""
        return min((f for f in self.fractions if f > fraction + 1e-12), default=None)

    def change(self, fraction: float) -> tuple[float, float] | None:
        """The recipe's quality change from ``fraction`` to the next measured rung above it, with the standard
        deviation of that change (sampling and training noise of both values); None without a rung above."""
        up, here = self.above(fraction), self.value(fraction)
        if up is None or here is None:
            return None
        there = self.quality[key(up)]
        parts = [self.sampling.get(key(fraction), 0.0), self.sampling.get(key(up), 0.0),
                 self.training_noise(fraction) or 0.0, self.training_noise(up) or 0.0 if up < 1.0 else 0.0]
        return there - here, math.sqrt(sum(p * p for p in parts))

    def informative(self, fraction: float | None) -> bool:
        """Whether a quality drop measured at ``fraction`` may be judged against the budget (see the module)."""
        if fraction is None or fraction >= 1.0:
            return True
        found = self.change(fraction)
        if found is None:
            # The highest rung measured: informative when the curve had already flattened on the way up to it (the
            # rung below is informative, its change to this one within the budget); else nothing says so.
            below = max((f for f in self.fractions if f < fraction - 1e-12), default=None)
            return below is not None and self.value(fraction) is not None and self._flat(below)
        return self._flat(fraction)

    def _flat(self, fraction: float) -> bool:
        """Whether the change from ``fraction`` to the rung above it is within the budget, allowing for noise."""
        found = self.change(fraction)
        if found is None:
            return False
        delta, sd = found
        return abs(delta) - Z95 * sd <= self.budget + 1e-9

    def judged_at(self, fraction: float) -> float | None:
        """The lowest informative rung at or above ``fraction`` among those measured; None: none is."""
        return next((f for f in self.fractions if f >= fraction - 1e-12 and self.informative(f)), None)

    def why(self, fraction: float | None, fmt: Any = None) -> str:
        """In words: where the recipe stands at ``fraction``, and whether that makes the rung informative."""
        show = fmt or (lambda v: f"{v:.4g}")
        if fraction is None or fraction >= 1.0:
            return "full length"
        here = self.value(fraction)
        if here is None:
            return f"your recipe was not measured at {share(fraction)} of its schedule"
        lead = f"your recipe reaches {show(here)} at {share(fraction)} of its schedule"
        found = self.change(fraction)
        if found is None:
            if self.informative(fraction):
                return f"{lead}; its curve had flattened on the way up to it"
            return f"{lead}; nothing measured above it says whether its curve has flattened there"
        up = self.above(fraction)
        assert up is not None
        where = "at full length" + (f" ({self.full_from})" if self.full_from else "") if up >= 1.0 else f"at {share(up)}"
        delta, sd = found
        verdict = "flattened: within the budget" if self.informative(fraction) else "still changing: beyond the budget"
        return (f"{lead} and {show(self.quality[key(up)])} {where}, a change of {delta:+.4g} (noise \u00b1{Z95 * sd:.2g}), "
                f"{verdict} of {self.budget:g}")

    def evidence(self, fraction: float | None, fmt: Any = None) -> dict[str, Any]:
        """The quality part of an answer's evidence: the rung, the recipe's value there, informative, why."""
        f = 1.0 if fraction is None else float(fraction)
        up = self.above(f)
        return {"fraction": f, "recipe_value": self.value(f), "informative": self.informative(f),
                "why": self.why(f, fmt), "training_noise": self.training_noise(f) if f < 1.0 else None,
                "above": {"fraction": up, "recipe_value": self.quality[key(up)],
                          "from": self.full_from if up >= 1.0 and self.full_from else None} if up is not None else None}

    def to_json(self) -> dict[str, Any]:
        return {"budget": self.budget, "quality": dict(self.quality), "sampling": dict(self.sampling),
                "noise": dict(self.noise), "trials": dict(self.trials), "full_from": self.full_from,
                "informative": {k: self.informative(float(k)) for k in self.quality}}


def replica_sd(pairs: list[tuple[float, float]]) -> float | None:
    """Run-to-run standard deviation from pairs of runs of the same math: each difference has variance 2 sd^2."""
    if not pairs:
        return None
    return math.sqrt(sum((a - b) ** 2 for a, b in pairs) / (2 * len(pairs)))


def standard_error(ci95: Any) -> float:
    """A value's standard error from its 95% interval (0 without one)."""
    if not ci95 or len(ci95) != 2:
        return 0.0
    lo, hi = (float(v) for v in ci95)
    return max(0.0, hi - lo) / (2 * Z95) if math.isfinite(lo) and math.isfinite(hi) else 0.0
