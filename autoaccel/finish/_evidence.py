"""Which evidence stands behind each claim of an answer: how its speed was measured (paired slices of training,
interleaved inference timings, or whole trainings) and at what share of the user's schedule its quality was, with
where the user's recipe stands there (trial/_curve.py): a claim of quality at a rung where the recipe has not
learned yet says nothing, and the evidence says so.

Every answer in pareto.json carries an ``evidence`` object; the console, the report and recipe.yaml say it in words:
"training 1.7x [1.6, 1.8] faster (paired 200-step slices); quality at 1/4 of your schedule, where your recipe
reaches 0.98 of its full-length 0.99".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoaccel.task import Shown
from autoaccel.trial import Point, share
from autoaccel.trial._curve import RecipeCurve

SAME_MATH = "same math"


def speed_slice(samples: int, batch_size: int, rounds: int) -> dict[str, Any]:
    """Training speed from the finish's paired, interleaved slices: ``samples`` per slice, ``rounds`` pairs."""
    return {"kind": "slice", "samples": samples, "steps": max(1, -(-samples // max(1, batch_size))), "rounds": rounds}


def quality_of(point: Point, curve: RecipeCurve | None) -> dict[str, Any]:
    """The quality part of a point's evidence: the rung it was measured at, the recipe's quality there, whether
    that rung is informative and why; a speed-only change whose loss agreed with the recipe's says it has the
    recipe's math (its quality is the recipe's wherever it is measured)."""
    fraction = point.fraction
    if curve is None:
        out: dict[str, Any] = {"fraction": fraction, "recipe_value": None, "informative": fraction >= 1.0,
                               "why": "full length" if fraction >= 1.0 else "your recipe's curve was not measured"}
    else:
        out = curve.evidence(fraction, point.shown.fmt)
    out["basis"] = point.judged
    if point.judged == SAME_MATH and point.goal == "serve":
        out["why"] = ("an exact serving change: it computes your trained model's outputs up to rounding, so its drop "
                      f"on the model at this share of your schedule is its drop on any; {out['why']}")
    elif point.judged == SAME_MATH:
        out["why"] = ("a speed-only change: the same training math as your recipe (its loss agreed with your recipe's "
                      f"run), so its quality is your recipe's; {out['why']}")
    return out


def of(goal: str, speed: Mapping[str, Any] | None, quality: Mapping[str, Any], search_fraction: float,
       confirmed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The evidence object of one answer. ``speed``: the training slices that timed it (None for a serving answer,
    whose training is the baseline's); ``quality``: what its quality rests on (quality_of); ``confirmed``:
    full-length paired trainings (`autoaccel confirm`), which supersede both."""
    out: dict[str, Any] = {"quality": {**quality, "search_fraction": search_fraction}}
    if goal != "serve" and speed is not None:
        out["speed"] = dict(speed)
    elif goal == "serve":
        out["speed"] = {"kind": "inference", "note": "latency timed interleaved with your model's"}
    if confirmed:
        out["speed"] = {"kind": "full", **{k: v for k, v in confirmed.items() if k not in ("quality_drop", "recipe_value")}}
        out["quality"] = {"fraction": 1.0, "search_fraction": search_fraction, "recipe_value": confirmed.get("recipe_value"),
                          "informative": True, "basis": "measured", "why": "full length: trained whole beside your recipe"}
    return out


def _quality_words(quality: Mapping[str, Any], goal: str, shown: Shown) -> str:
    fraction = float(quality.get("fraction", 1.0))
    if quality.get("basis") == SAME_MATH and goal == "serve":
        at = "at full length" if fraction >= 1.0 else f"at {share(fraction)} of your schedule"
        return f"quality: an exact serving change (your trained model's outputs up to rounding), judged on its model {at}"
    if quality.get("basis") == SAME_MATH:
        return "quality: the same training math as your recipe (a speed-only change whose loss agreed with your recipe's)"
    if fraction >= 1.0:
        return "quality at full length"
    what = "its model" if goal == "serve" else "quality"
    value = quality.get("recipe_value")
    if value is None:
        return f"{what} at {share(fraction)} of your schedule, not yet at full length (autoaccel confirm)"
    if not quality.get("informative", True):
        return (f"quality not judged: at {share(fraction)} of your schedule your recipe reaches only {shown.fmt(value)}, "
                "not yet where its curve flattens; a candidate whose quality is unknown, autoaccel confirm judges it")
    above = quality.get("above") or {}
    where = ""
    if above.get("recipe_value") is not None:
        up = float(above["fraction"])
        where = (f" of its full-length {shown.fmt(above['recipe_value'])}" if up >= 1.0
                 else f" ({shown.fmt(above['recipe_value'])} at {share(up)}: its curve has flattened)")
    return f"{what} at {share(fraction)} of your schedule, where your recipe reaches {shown.fmt(value)}{where}; not yet at full length (autoaccel confirm)"


def words(evidence: Mapping[str, Any] | None, goal: str, shown: Shown | None = None) -> str:
    """The evidence in one clause: '(paired 200-step slices); quality at 1/4 of your schedule, where your recipe
    reaches 0.98 of its full-length 0.99'."""
    if not evidence:
        return ""
    speed = evidence.get("speed") or {}
    quality = evidence.get("quality") or {}
    parts = []
    if speed.get("kind") == "slice":
        parts.append(f"training speed from {speed['rounds']} paired {speed['steps']}-step slices")
    elif speed.get("kind") == "full" and speed.get("baseline") == "projected":
        # Your recipe was not trained here (its weights or metric were given): its time is the search's projection.
        parts.append("training speed from its whole training against your recipe's projected time")
    elif speed.get("kind") == "full":
        rounds = int(speed.get("rounds", 1))
        parts.append("training speed from one whole training each, back to back" if rounds == 1 else
                     f"training speed from {rounds} paired rounds of whole trainings")
    parts.append(_quality_words(quality, goal, shown or Shown()))
    return "; ".join(parts)
