"""The user's recipe as the study measured it at each rung, read from the trials in one place: the recipe each trial
is compared with (the recipe at the trial's own share of the schedule), and the recipe's curve (trial/_curve.py)
with its run-to-run noise, which the search, the finish and the outputs all judge quality by."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autoaccel.task import Shown
from autoaccel.trial import TrialRecord
from autoaccel.trial._curve import RecipeCurve, key, replica_sd, standard_error
from autoaccel.vocab import Role

RECIPE_ROLES = frozenset({Role.BASELINE.value, Role.RUNG.value, Role.PROMOTION.value, Role.CONFIRM.value})


def fraction_of(r: TrialRecord) -> float:
    return float(r.fraction or 1.0)


def is_recipe(r: TrialRecord) -> bool:
    """A measured trial of the user's recipe itself (no setting changed), from the task's seed or another."""
    # The baseline is the recipe whatever its stored parameters say (the search's defaults); others by their settings.
    return r.measured and r.duplicate_of is None and (r.role == Role.BASELINE or (not r.settings and r.role in RECIPE_ROLES))


def recipes(records: Iterable[TrialRecord]) -> dict[float, TrialRecord]:
    """The recipe's own trial (the task's seed) at each share of the schedule it was measured at, the earliest."""
    out: dict[float, TrialRecord] = {}
    for r in sorted(records, key=lambda r: r.number):
        if is_recipe(r) and not r.replica:
            out.setdefault(fraction_of(r), r)
    return out


def _pairs(records: Sequence[TrialRecord], found: Mapping[float, TrialRecord]) -> dict[float, list[tuple[float, float]]]:
    """Per rung, pairs of qualities that differ only by training noise: the recipe and each replica from another
    seed; a speed-only change's own measured quality and the same math's it was checked against (search/_sanity)."""
    by_number = {r.number: r for r in records}
    pairs: dict[float, list[tuple[float, float]]] = {}
    for r in records:
        f = fraction_of(r)
        if is_recipe(r) and r.replica and f in found:
            pairs.setdefault(f, []).append((found[f].metrics["accuracy"], r.metrics["accuracy"]))
            continue
        check = r.details.get("quality") or {} if r.measured and r.duplicate_of is None else {}
        source = by_number.get(int(check["against"])) if "against" in check and "measured" in check else None
        if source is not None and source.measured and fraction_of(source) == f:
            pairs.setdefault(f, []).append((float(source.metrics["accuracy"]), float(check["measured"])))
    return pairs


def curve_of(records: Sequence[TrialRecord], budget: float, stated: float | None = None) -> RecipeCurve:
    """The recipe's curve from the study's trials; ``stated``: the metric the user measured after a whole
    training of their recipe (--baseline-metric), in the metric's own units, which stands for full length when no
    whole training of it was measured here."""
    found = recipes(records)
    quality = {key(f): float(r.metrics["accuracy"]) for f, r in found.items()}
    sampling = {key(f): standard_error(r.ci95.get("accuracy")) for f, r in found.items()}
    trials = {key(f): r.number for f, r in found.items()}
    noise = {key(f): sd for f, pairs in _pairs(records, found).items() if (sd := replica_sd(pairs)) is not None}
    full_from = ""
    if stated is not None and key(1.0) not in quality and found:
        shown = Shown.of(next(iter(found.values())).details.get("metric"))
        quality[key(1.0)] = shown.sign * float(stated)
        full_from = "the value you stated, --baseline-metric"
    return RecipeCurve(float(budget), quality, sampling, noise, trials, full_from)


def stored(attrs: Mapping[str, Any]) -> float | None:
    """The --baseline-metric a study recorded (None: none)."""
    value = attrs.get("baseline_metric")
    return None if value is None else float(value)
