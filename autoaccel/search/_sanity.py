"""Quality of a speed-only training change: the same math's, once a sanity check on the loss agrees.

A change that keeps the training math (Section.keeps_math: the loader, the memory layout, compilation, optimizer
kernels) trains the same model up to rounding. On a compressed run (fidelity.py) the accuracy of two such runs
can still differ by several points: a few dozen steps from scratch amplify rounding into another model. So a
training trial whose plan differs from a measured one only by speed-only sections is given that trial's quality
(its accuracy, interval and per-sample rows, so paired intervals still hold) when its smoothed loss curve agrees
with that trial's within the sections' stated tolerance; otherwise its own measured quality stands and the
failed check is recorded. Either way the trial's own measured accuracy stays in its details.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autoaccel.trial import TrialRecord

# Loss points before this share of the run are left out: the first steps' losses are noisy for everyone.
SKIP = 0.1
QUALITY_DETAILS = ("correct", "correct_n", "metric_rows", "metric_replicates")  # what paired intervals of the drop are computed from


def twin(records: Sequence[TrialRecord], me: TrialRecord) -> TrialRecord | None:
    """The measured trial with ``me``'s training math whose quality ``me`` may take: same math key and share of
    the schedule, its own quality measured (not itself inherited); the baseline first, else the earliest."""
    math = me.math or {}
    if me.goal != "train" or math.get("tolerance") is None:
        return None
    found = [r for r in records if r.measured and r.number != me.number and r.duplicate_of is None
             and (r.math or {}).get("key") == math.get("key") and (r.fraction or 1.0) == (me.fraction or 1.0)
             and "from" not in (r.details.get("quality") or {}) and _curve(r.details)]
    return min(found, key=lambda r: (r.role != "baseline", r.number), default=None)


def _curve(details: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(p), float(v)) for p, v in ((details.get("fidelity") or {}).get("loss_curve") or [])]


def loss_gap(mine: Sequence[tuple[float, float]], reference: Sequence[tuple[float, float]]) -> float:
    """Mean relative gap between two smoothed loss curves, each point against the reference's latest point at or
    before its progress (runs of the same math and length check at the same steps)."""
    gaps = []
    for progress, value in mine:
        if progress < SKIP:
            continue
        ref = next((v for p, v in reversed(reference) if p <= progress + 1e-9), None)
        if ref is not None:
            gaps.append(abs(value - ref) / max(abs(ref), 1e-8))
    return sum(gaps) / len(gaps) if gaps else float("inf")


def inherit(metrics: dict[str, float], ci95: dict[str, Any], details: dict[str, Any], source: TrialRecord,
            tolerance: float) -> bool:
    """Give a speed-only trial's result ``source``'s quality when their losses agree; True when it did. The
    result's dicts are changed in place (they are about to be recorded)."""
    gap = loss_gap(_curve(details), _curve(source.details))
    check = {"against": source.number, "loss_gap": round(gap, 4), "tolerance": tolerance,
             "measured": metrics["accuracy"]}
    if gap > tolerance:
        details["quality"] = {**check, "sanity": "failed"}
        return False
    metrics["accuracy"] = source.metrics["accuracy"]
    if "accuracy" in source.ci95:
        ci95["accuracy"] = tuple(source.ci95["accuracy"])
    for key in QUALITY_DETAILS:
        details.pop(key, None)
        if key in source.details:
            details[key] = source.details[key]
    details["quality"] = {**check, "from": source.number, "sanity": "passed"}
    return True
