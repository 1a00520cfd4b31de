"""Answers per goal: what the user can change independently gets its own answer, judged on its own metrics.

- train: the fastest training recipe (serving unchanged), judged on train_time / train_throughput;
- serve: the fastest serving of the user's trained model, judged on latency / throughput;
- combined (--mode both): the train answer's model served by the serve answer, re-measured together.

An answer is given only when every metric that judges its goal lies above 1.0 beyond noise and its accuracy is
within budget; otherwise the goal says "keep your recipe", with the best candidate tried and why it was
rejected. Every requested speed metric is reported beside it, so a regression elsewhere is never hidden.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from autoaccel.task import Shown
from autoaccel.vocab import SPEED_OBJECTIVES, TRAINING_OBJECTIVES

if TYPE_CHECKING:
    from autoaccel.trial import Point
    from autoaccel.trial._curve import RecipeCurve

SERVING_OBJECTIVES = ("latency", "throughput")
GOAL_WORDS = {"train_time": "training", "train_throughput": "training throughput", "latency": "latency",
              "throughput": "serving throughput", "memory": "memory"}
# A trial's single-measurement ratio and its re-measured interval disagree when they are further apart than
# this factor: a shared VM drifts by up to ~40% within a run, so closer than 2x is drift, not contradiction.
AGREEMENT = 2.0


def goals_for(mode: str, factors: Sequence[str] = ("train", "serve")) -> tuple[str, ...]:
    """The goals a search answers: those whose factor it searched (and combined when it searched both)."""
    wanted = {"train": ("train",), "inference": ("serve",)}.get(mode, ("train", "serve"))
    goals = tuple(g for g in wanted if g in factors)
    return goals + ("combined",) if len(goals) == 2 else goals


def judging(goal: str, objectives: Sequence[str]) -> list[str]:
    """The requested metrics that judge ``goal`` (memory judges none: it is reported, never the aim)."""
    pool = {"train": TRAINING_OBJECTIVES, "serve": SERVING_OBJECTIVES,
            "combined": TRAINING_OBJECTIVES + SERVING_OBJECTIVES}.get(goal, ())
    return [o for o in objectives if o in pool]


def goal_score(point: "Point", metrics: Sequence[str]) -> float:
    """Geometric mean of the goal's own ratios: ranks candidates of one goal, never shown as a headline."""
    ratios = [point.ratio(o) for o in metrics]
    return math.exp(sum(math.log(max(r, 1e-12)) for r in ratios) / len(ratios)) if ratios else 1.0


def agrees(single: float, entry: Mapping[str, Any]) -> bool:
    """Whether one trial's ratio is compatible with a re-measured interval (within the drift allowance)."""
    lo, hi = entry.get("ci95") or (entry["value"], entry["value"])
    return lo / AGREEMENT <= single <= hi * AGREEMENT


def _fmt(entry: Mapping[str, Any]) -> str:
    ci = entry.get("ci95")
    return f"{entry['value']:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{entry['value']:.2f}x (one measurement)"


def describe_speed(speedup: Mapping[str, Mapping[str, Any]], objectives: Sequence[str]) -> str:
    """'training 2.10x [1.9, 2.3] faster; latency 0.84x [0.8, 0.9], slower' over every requested speed metric."""
    parts = []
    for o in objectives:
        if o not in SPEED_OBJECTIVES or o not in speedup:
            continue
        entry = speedup[o]
        label = entry.get("label", "")
        if label.startswith("unchanged"):
            parts.append(f"{GOAL_WORDS[o]} unchanged (same trained model)")
            continue
        better = entry["value"] > 1 if not entry.get("ci95") else label == "faster"
        worse = entry["value"] < 1 if not entry.get("ci95") else label == "slower"
        if label == "unreliable":
            word = "unreliable"
        elif better:
            word = "faster" if o != "memory" else "less memory"
        elif worse:
            word = "slower" if o != "memory" else "more memory"
        else:
            word = "within noise"
        parts.append(f"{GOAL_WORDS[o]} {_fmt(entry)} {word}")
    return "; ".join(parts)


def describe_drop(drop: Mapping[str, Any], base_acc: float, acc: float, shown: Shown | None = None) -> str:
    """'accuracy 0.9712 vs 0.9733' (qualities shown as the metric's own values, under its name)."""
    shown = shown or Shown()
    text = f"{shown.name} {shown.fmt(acc)} vs {shown.fmt(base_acc)}"
    if drop.get("within_noise"):
        text += " (the difference is within noise)"
    return text


@dataclass
class Answer:
    """One goal's answer: the trial and settings to apply with their evidence, or 'keep your recipe'."""

    goal: str
    given: bool
    trial: int
    params: dict[str, Any]
    speedup: dict[str, dict[str, Any]]
    accuracy_drop: dict[str, Any]
    verdict: str
    source: str = "interleaved re-measurement"
    members: list[dict[str, Any]] = field(default_factory=list)
    rejected: dict[str, Any] | None = None  # the best candidate tried, and why it is not the answer
    notes: list[str] = field(default_factory=list)  # techniques dropped as not pulling their weight, re-checks
    # How each claim was measured (evidence.py): speed from paired slices or whole trainings, quality at which
    # share of the user's schedule.
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Answer":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def rejection(point: "Point", judged: Sequence[str], max_drop: float, why: str = "") -> dict[str, Any]:
    """Why ``point`` is not an answer, in words, with its figures."""
    if not why:
        if not point.feasible:
            why = (f"its {point.shown.drop_word} {point.accuracy_drop['value']:.4g} is over the budget of {max_drop:g}")
        else:
            # With an interval, anything not above 1 beyond noise; on one measurement, what did not beat 1.0.
            slow = [o for o in judged if o in point.speedup and (
                point.speedup[o].get("label") != "faster" if point.speedup[o].get("ci95") else point.ratio(o) <= 1.0)]
            unconfirmed = [o for o in judged if o in point.speedup and o not in slow and not point.speedup[o].get("ci95")
                           and point.speedup[o].get("label") != "faster"]
            why = "; ".join([f"{GOAL_WORDS[o]} {_fmt(point.speedup[o])} is not faster beyond noise" for o in slow]
                            + [f"{GOAL_WORDS[o]} {_fmt(point.speedup[o])} is not confirmed beyond noise by a paired "
                               "re-measurement" for o in unconfirmed]) \
                or "it is not faster beyond noise"
    return {"trial": point.trial, "params": point.params, "reason": why}


def candidate(point: "Point", judged: Sequence[str], curve: "RecipeCurve | None", why: str = "") -> dict[str, Any]:
    """A fast configuration whose quality has no informative evidence (measured where the user's recipe has not
    learned yet): not an answer, but its speed claim is reported as a candidate that `autoaccel confirm` judges."""
    where = curve.why(point.fraction, point.shown.fmt) if curve is not None else "your recipe's curve was not measured"
    speed = describe_speed(point.speedup, judged) or "its speed"
    reason = (f"{speed}; quality unknown, `autoaccel confirm` judges it "
              f"({why + '; ' if why else ''}quality not judged: {where})")
    return {"trial": point.trial, "params": point.params, "reason": reason, "candidate": True,
            "speedup": {o: point.speedup[o] for o in judged if o in point.speedup}}


def keep(goal: str, baseline: "Point", rejected: dict[str, Any] | None, note: str = "") -> Answer:
    what = {"train": "your training recipe", "serve": "serving your trained model as it is",
            "combined": "your recipe"}[goal]
    verdict = f"keep {what}"
    if rejected is not None:
        settings = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in rejected["params"].items()) or "your recipe"
        if rejected.get("candidate"):  # not rejected: its quality could not be judged in this run
            verdict += f": the fastest, trial {rejected['trial']} ({settings}), is a candidate, not an answer: {rejected['reason']}"
        else:
            verdict += f": the best candidate, trial {rejected['trial']} ({settings}), was rejected because {rejected['reason']}"
    elif note:
        verdict += f": {note}"
    else:
        verdict += ": no candidate of this goal was measured"
    return Answer(goal, False, baseline.trial, {}, {}, {"value": 0.0, "ci95": [0.0, 0.0], "within_noise": True},
                  verdict, source="", rejected=rejected)


def give(goal: str, point: "Point", baseline: "Point", objectives: Sequence[str], source: str,
         notes: Sequence[str] = ()) -> Answer:
    # Compared with the recipe at the point's own rung (a serving change at the rung where the recipe has learned),
    # whose quality is the point's plus its drop.
    recipe = point.metrics["accuracy"] + point.accuracy_drop["value"]
    verdict = (f"{describe_speed(point.speedup, objectives)}; "
               f"{describe_drop(point.accuracy_drop, recipe, point.metrics['accuracy'], point.shown)}")
    if source != "interleaved re-measurement":
        verdict += " (single measurements, not yet re-measured)"
    speedup = {o: point.speedup[o] for o in objectives if o in point.speedup}  # what the user asked for, no more
    return Answer(goal, True, point.trial, dict(point.params), speedup, dict(point.accuracy_drop), verdict,
                  source, list(point.members), None, list(notes))


def qualifies(point: "Point", judged: Sequence[str], remeasured: bool) -> bool:
    """Feasible, and faster beyond noise on every judging metric (on one measurement: simply faster)."""
    if not point.feasible or not judged:
        return False
    if remeasured:
        return all(point.speedup.get(o, {}).get("label") == "faster" for o in judged)
    return all(point.ratio(o) > 1.0 for o in judged)


def ranked(points: Sequence["Point"], goal: str, judged: Sequence[str]) -> list["Point"]:
    """The goal's candidates, best first: feasible before infeasible, then by the goal's own ratios (so the
    'best candidate tried' of a rejected goal is the one that nearly made it)."""
    return sorted((p for p in points if p.goal == goal), key=lambda p: (not p.feasible, -goal_score(p, judged)))


def _remeasured(point: "Point", judged: Sequence[str]) -> bool:
    return all(point.speedup.get(o, {}).get("source") == "interleaved re-measurement" for o in judged)


def provisional(goal: str, points: Sequence["Point"], baseline: "Point", objectives: Sequence[str],
                max_drop: float, curve: "RecipeCurve | None" = None) -> Answer:
    """The answer from single measurements (no re-measurement was run): the best qualifying candidate."""
    judged = judging(goal, objectives)
    if not judged:
        return keep(goal, baseline, None, f"no requested objective judges this goal (add one of "
                                          f"{', '.join(judging(goal, SPEED_OBJECTIVES))} to --objectives)")
    mine = ranked(points, goal, judged)
    fast = [p for p in mine if qualifies(p, judged, remeasured=_remeasured(p, judged))]
    # Quality measured where the recipe has not learned yet is no evidence: such a configuration is a candidate.
    best = next((p for p in fast if p.judged != "not judged"), None)
    if best is not None:
        return give(goal, best, baseline, objectives, "interleaved re-measurement" if _remeasured(best, judged) else "trial")
    if fast:
        return keep(goal, baseline, candidate(fast[0], judged, curve))
    return keep(goal, baseline, rejection(mine[0], judged, max_drop) if mine else None)
