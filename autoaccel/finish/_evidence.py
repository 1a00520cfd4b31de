"""Which evidence stands behind each claim of an answer: how its speed was measured (paired slices of training,
interleaved inference timings, or whole trainings) and at what share of the user's schedule its quality was.

Every answer in pareto.json carries an ``evidence`` object; the console, the report and recipe.yaml say it in words:
"training 1.7x [1.6, 1.8] faster (paired 200-step slices); accuracy within budget at 1/4 of your schedule, not yet
at full length".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoaccel.trial import share


def speed_slice(samples: int, batch_size: int, rounds: int) -> dict[str, Any]:
    """Training speed from the finish's paired, interleaved slices: ``samples`` per slice, ``rounds`` pairs."""
    return {"kind": "slice", "samples": samples, "steps": max(1, -(-samples // max(1, batch_size))), "rounds": rounds}


def of(goal: str, speed: Mapping[str, Any] | None, quality_fraction: float, search_fraction: float,
       confirmed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The evidence object of one answer. ``speed``: the training slices that timed it (None for a serving answer,
    whose training is the baseline's); ``quality_fraction``: the share of the schedule its quality was measured
    at; ``confirmed``: full-length paired trainings (`autoaccel confirm`), which supersede both."""
    out: dict[str, Any] = {"quality": {"fraction": quality_fraction, "search_fraction": search_fraction}}
    if goal != "serve" and speed is not None:
        out["speed"] = dict(speed)
    elif goal == "serve":
        out["speed"] = {"kind": "inference", "note": "latency timed interleaved with your model's"}
    if confirmed:
        out["speed"] = {"kind": "full", **{k: v for k, v in confirmed.items() if k != "quality_drop"}}
        out["quality"] = {"fraction": 1.0, "search_fraction": search_fraction}
    return out


def words(evidence: Mapping[str, Any] | None, goal: str) -> str:
    """The evidence in one clause: '(paired 200-step slices); quality at 1/4 of your schedule, not yet at full length'."""
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
    fraction = float(quality.get("fraction", 1.0))
    if fraction >= 1.0:
        parts.append("quality at full length")
    else:
        trained = "its model" if goal == "serve" else "quality"
        parts.append(f"{trained} at {share(fraction)} of your schedule, not yet at full length (autoaccel confirm)")
    return "; ".join(parts)
