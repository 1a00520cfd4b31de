"""From a study to an answer: baseline, feasible Pareto front, recommendation, speedups; pareto.json, recipe.yaml."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from autoaccel.trial import METRICS, SPEED_OBJECTIVES


@dataclass
class Point:
    """One measured configuration, as reported to the user."""

    trial: int
    role: str
    params: dict[str, Any]
    metrics: dict[str, float]
    metrics_ci95: dict[str, list[float]]
    speedup: dict[str, float]
    accuracy_drop: float
    feasible: bool
    plan: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Failure:
    trial: int
    kind: str
    reason: str
    params: dict[str, Any]


@dataclass
class Summary:
    objectives: tuple[str, ...]
    max_accuracy_drop: float
    baseline: Point
    pareto: list[Point]
    recommended: Point
    points: list[Point]
    failures: list[Failure]
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "objectives": list(self.objectives),
            "max_accuracy_drop": self.max_accuracy_drop,
            "baseline": self.baseline.to_json(),
            "pareto": [p.to_json() for p in self.pareto],
            "recommended": self.recommended.to_json(),
            "verdict": self.verdict,
            "trials": {"complete": len(self.points), "failed": len(self.failures)},
            "failures": [asdict(f) for f in self.failures],
        }


def speedups(metrics: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    """Ratios > 1 mean better than the baseline, whichever direction the metric goes."""
    out = {}
    for name in SPEED_OBJECTIVES:
        if name in metrics and name in base and metrics[name] > 0 and base[name] > 0:
            out[name] = metrics[name] / base[name] if METRICS[name] else base[name] / metrics[name]
    return out


def _point(t: FrozenTrial, base_metrics: dict[str, float], max_drop: float) -> Point:
    metrics = dict(t.user_attrs.get("metrics", {}))
    drop = base_metrics.get("accuracy", 0.0) - metrics.get("accuracy", 0.0)
    return Point(
        trial=t.number,
        role=str(t.user_attrs.get("role", "candidate")),
        params=dict(t.params),
        metrics=metrics,
        metrics_ci95={k: list(v) for k, v in t.user_attrs.get("ci95", {}).items()},
        speedup=speedups(metrics, base_metrics),
        accuracy_drop=drop,
        feasible=drop <= max_drop + 1e-12,
        plan=dict(t.user_attrs.get("plan", {})),
    )


def dominates(a: Point, b: Point, objectives: Sequence[str]) -> bool:
    better_or_equal = all(
        (a.metrics[o] >= b.metrics[o]) if METRICS[o] else (a.metrics[o] <= b.metrics[o]) for o in objectives
    )
    strictly = any((a.metrics[o] > b.metrics[o]) if METRICS[o] else (a.metrics[o] < b.metrics[o]) for o in objectives)
    return better_or_equal and strictly


def pareto_front(points: Sequence[Point], objectives: Sequence[str]) -> list[Point]:
    return [p for p in points if not any(dominates(q, p, objectives) for q in points if q is not p)]


def speed_score(point: Point, objectives: Sequence[str]) -> float:
    """Geometric mean of the speedups on the chosen speed objectives (1.0 = as fast as the baseline)."""
    ratios = [point.speedup[o] for o in objectives if o in SPEED_OBJECTIVES and o in point.speedup]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else 1.0


def summarize_study(study: optuna.Study, objectives: Sequence[str], max_drop: float) -> Summary:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and "metrics" in t.user_attrs]
    base_trial = next((t for t in complete if t.user_attrs.get("role") == "baseline"), None)
    if base_trial is None:
        raise ValueError("the study has no completed baseline trial")
    base_metrics = dict(base_trial.user_attrs["metrics"])
    points = [_point(t, base_metrics, max_drop) for t in complete if "duplicate_of" not in t.user_attrs]
    baseline = next(p for p in points if p.trial == base_trial.number)
    feasible = [p for p in points if p.feasible]
    front = sorted(pareto_front(feasible, objectives), key=lambda p: -speed_score(p, objectives))
    best = max((p for p in front if p is not baseline), key=lambda p: (speed_score(p, objectives), p.metrics["accuracy"]), default=None)
    if best is not None and speed_score(best, objectives) > 1.0:
        recommended = best
        verdict = (f"trial {best.trial} is {speed_score(best, objectives):.2f}x faster than your recipe "
                   f"(geometric mean over {', '.join(o for o in objectives if o in SPEED_OBJECTIVES)}), "
                   f"accuracy {best.metrics['accuracy']:.4f} vs {baseline.metrics['accuracy']:.4f}")
    else:
        recommended = baseline
        verdict = "no configuration beat your own recipe within the accuracy budget; keep it"
    failures = [
        Failure(t.number, str(t.user_attrs.get("failure_kind", "error")), str(t.user_attrs.get("reason", "unknown")), dict(t.params))
        for t in trials if t.state == TrialState.FAIL
    ]
    return Summary(tuple(objectives), max_drop, baseline, front, recommended, points, failures, verdict)


def write_outputs(summary: Summary, out_dir: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write pareto.json and recipe.yaml; files are replaced atomically so a reader never sees half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pareto = {**summary.to_json(), **meta}
    rec = summary.recommended
    recipe = {
        "autoaccel_recipe": 1,
        **meta,
        "trial": rec.trial,
        "params": rec.params,
        "plan": rec.plan,
        "metrics": rec.metrics,
        "speedup": rec.speedup,
        "accuracy_drop": rec.accuracy_drop,
        "verdict": summary.verdict,
    }
    paths = {"pareto": out_dir / "pareto.json", "recipe": out_dir / "recipe.yaml"}
    _atomic_write(paths["pareto"], json.dumps(pareto, indent=2, default=str) + "\n")
    _atomic_write(paths["recipe"], yaml.safe_dump(json.loads(json.dumps(recipe, default=str)), sort_keys=False))
    return paths


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
