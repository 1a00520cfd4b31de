"""From a study to its answers: baseline, feasible Pareto front, one answer per goal with speedups and
intervals; pareto.json and recipe.yaml."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState, create_trial
from scipy import stats

from autoaccel.finish import _evidence as evidence
from autoaccel.finish._answers import Answer, goals_for, judging, provisional
from autoaccel.finish._recipe_curve import curve_of, fraction_of, recipes
from autoaccel.finish._recipe_curve import stored as stated_metric
from autoaccel.task import Shown, paired_drop
from autoaccel.trial import Point, TrialRecord, read
from autoaccel.trial._curve import Z95, RecipeCurve
from autoaccel.vocab import METRICS, SPEED_OBJECTIVES, FailureKind

# The primary answer (pareto.json's `recommended`): both changes where there is such an answer, else the one
# there is.
PRIMARY = ("combined", "train", "serve")
# pareto.json's layout version: 2 added evidence.quality's recipe_value, informative and why, and the recipe's curve.
SCHEMA = 2


@dataclass
class Failure:
    trial: int
    kind: str
    reason: str
    params: dict[str, Any]
    where: str = ""  # the user's last frame and the library's that raised: "model.py:42 in forward → torch/..."


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
    remeasured: bool
    answers: list[Answer] = field(default_factory=list)
    # How the search went: the baseline's training profile (seconds per part) and each technique's screening
    # verdict ({strategy: {status, reason, trial, speedup}}); empty for studies that predate them.
    profile: dict[str, float] = field(default_factory=dict)
    screening: dict[str, Any] = field(default_factory=dict)
    # The recipe's quality at each rung measured and where quality can be judged (trial/_curve.py).
    curve: RecipeCurve | None = None
    # Distinct training configurations the search trained and judged (measured, or stopped early as too slow).
    training_configurations: int = 0

    @property
    def metric(self) -> Shown:
        """The task's metric, as outputs name and show it."""
        return self.baseline.shown

    def answer(self, goal: str) -> Answer | None:
        return next((a for a in self.answers if a.goal == goal), None)

    def point(self, trial: int) -> Point | None:
        return next((p for p in self.points if p.trial == trial), None)

    @property
    def stopped(self) -> list[Failure]:
        """Trials the search stopped early because they could not be an answer (too slow): not a fault."""
        return [f for f in self.failures if f.kind == FailureKind.TOO_SLOW]

    @property
    def failed(self) -> list[Failure]:
        """Trials that failed: a technique that does not work here, a timeout, a crash."""
        return [f for f in self.failures if f.kind != FailureKind.TOO_SLOW]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "objectives": list(self.objectives),
            # "accuracy" in metrics is the quality slot: this metric, negated when lower is better; each point's
            # "metric" shows it under its own name and sign. The budget and drops are in its units (worse > 0).
            "metric": self.metric.to_json(),
            "max_accuracy_drop": self.max_accuracy_drop,
            "remeasured": self.remeasured,
            "answers": [a.to_json() for a in self.answers],
            "baseline": self.baseline.to_json(),
            "pareto": [p.to_json() for p in self.pareto],
            # The primary answer's point (combined, else train, else serve; the baseline when none is given).
            "recommended": self.recommended.to_json(),
            "verdict": self.verdict,
            # Trials stopped early as too slow are the search economising, not failures: counted apart.
            "trials": {"complete": len(self.points), "failed": len(self.failed), "stopped_early": len(self.stopped),
                       "by_kind": dict(Counter(f.kind for f in self.failures))},
            "failures": [asdict(f) for f in self.failures],
            "search": {"profile": self.profile, "screening": self.screening,
                       "training_configurations": self.training_configurations,
                       "recipe_curve": self.curve.to_json() if self.curve is not None else None},
        }


def single_speedups(metrics: Mapping[str, float], base: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Ratios (> 1 is better than the baseline, whichever way the metric goes) from one measurement each."""
    out = {}
    for name in SPEED_OBJECTIVES:
        if name in metrics and name in base and metrics[name] > 0 and base[name] > 0:
            value = metrics[name] / base[name] if METRICS[name] else base[name] / metrics[name]
            out[name] = {"value": value, "ci95": None, "label": "single measurement", "source": "trial"}
    return out


def _unpack(hex_bits: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), dtype=np.uint8))[:n].astype(np.float64)


def accuracy_drop(base: TrialRecord | FrozenTrial, cand: TrialRecord | FrozenTrial,
                  training_noise: float | None = None) -> dict[str, Any]:
    """The drop against the baseline with a 95% interval: paired over validation samples when both trials
    stored per-sample correctness or the metric's rows (same samples or batches, so their shared difficulty
    cancels), else from the two metric intervals as if independent. ``training_noise``: the run-to-run standard
    deviation of quality at the trials' rung (curve.py), which two trainings differ by even with the same math:
    it widens the interval (with_training_noise)."""
    base, cand = _record(base), _record(cand)
    b_acc, c_acc = base.metrics["accuracy"], cand.metrics["accuracy"]
    drop = b_acc - c_acc
    b_det, c_det = base.details, cand.details
    n = int(b_det.get("correct_n", 0))
    b_rows, c_rows = np.asarray(b_det.get("metric_rows", [])), np.asarray(c_det.get("metric_rows", []))
    shown = Shown.of(b_det.get("metric"))
    if n > 1 and "correct" in b_det and "correct" in c_det and c_det.get("correct_n") == n:
        d = _unpack(b_det["correct"], n) - _unpack(c_det["correct"], n)
        half = float(stats.norm.ppf(0.975)) * float(np.std(d, ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.inf
        lo, hi = drop - half, drop + half
    elif len(b_rows) > 1 and b_rows.shape == c_rows.shape and Shown.of(c_det.get("metric")) == shown:
        lo, hi = paired_drop(b_rows, c_rows, shown.name, shown.direction)
        lo, hi = min(lo, drop), max(hi, drop)
    elif (pair := _replicate_drops(b_det, c_det, shown)) is not None:
        # Whole-set and torchmetrics metrics: both trials scored on the same bootstrap resamples; each
        # resample's difference is one paired draw of the drop (quality slot: oriented by the metric's sign).
        lo, hi = (float(v) for v in np.percentile(pair, [2.5, 97.5]))
        lo, hi = min(lo, drop), max(hi, drop)
    else:
        bl, bh = base.ci95.get("accuracy", [b_acc, b_acc])
        cl, ch = cand.ci95.get("accuracy", [c_acc, c_acc])
        half = math.hypot((bh - bl) / 2, (ch - cl) / 2)
        lo, hi = drop - half, drop + half
    return with_training_noise({"value": drop, "ci95": [lo, hi], "within_noise": lo <= 0.0 <= hi}, training_noise)


def with_training_noise(drop: dict[str, Any], sd: float | None) -> dict[str, Any]:
    """The drop's interval with run-to-run training noise joined to its sampling noise: two independent trainings
    differ by sqrt(2) x sd, added in quadrature to each side of the sampling interval."""
    if not sd or drop.get("training_noise") is not None:
        return drop
    half = Z95 * math.sqrt(2.0) * sd
    value, (lo, hi) = drop["value"], drop["ci95"]
    lo, hi = value - math.hypot(value - lo, half), value + math.hypot(hi - value, half)
    return {**drop, "ci95": [lo, hi], "within_noise": lo <= 0.0 <= hi, "training_noise": sd}


def _replicate_drops(base: Mapping[str, Any], cand: Mapping[str, Any], shown: Shown) -> np.ndarray | None:
    """The drop on each bootstrap resample both trials were scored on, where both stored them; None otherwise."""
    b, c = np.asarray(base.get("metric_replicates", []), float), np.asarray(cand.get("metric_replicates", []), float)
    if len(b) < 2 or b.shape != c.shape or Shown.of(cand.get("metric")) != shown:
        return None
    drops = shown.sign * (b - c)
    drops = drops[np.isfinite(drops)]
    return drops if len(drops) >= 2 else None


def over_budget(drop: Mapping[str, Any], max_drop: float, fraction: float | None,
                curve: RecipeCurve | None = None) -> float:
    """How far a quality drop is over the budget (<= 0: within it). At a rung where the recipe has not learned yet
    (``curve`` says the rung is not informative) nothing is over: candidates there are ranked, never rejected
    against a budget meant for full length. On a compressed run (a low rung of the schedule, where the accuracy of
    the same math moves by points between runs) successive halving keeps what can still win: the drop is over only
    beyond noise, by the low end of its 95% interval (training noise included where measured). At full length by
    its value."""
    compressed = fraction is not None and fraction < 1.0
    if compressed and curve is not None and not curve.informative(fraction):
        return 0.0
    return (float(drop["ci95"][0]) if compressed else float(drop["value"])) - max_drop


def judge(base: TrialRecord, cand: TrialRecord, max_drop: float, curve: RecipeCurve) -> tuple[dict[str, Any], float]:
    """``cand``'s quality drop against ``base`` (the recipe at ``cand``'s share of the schedule), its interval with
    that rung's training noise when ``cand`` trained a model of its own (a serving change serves the recipe's very
    checkpoint: only sampling noise parts them), and how far it is over the budget as the curve lets it be judged
    there (over_budget): the one verdict the search's constraint and the finish's points share."""
    fraction = fraction_of(cand)
    trained = cand.goal != "serve" and fraction < 1.0
    drop = accuracy_drop(base, cand, curve.training_noise(fraction) if trained else None)
    # An exact serving change (serves_exactly) is judged on whatever model the recipe has there, learned or not:
    # it changes no model's outputs beyond rounding, so its drop there is its drop on any.
    return drop, over_budget(drop, max_drop, cand.fraction, None if serves_exactly(cand) else curve)


def serves_exactly(t: TrialRecord) -> bool:
    """A serving trial whose every serving section keeps the trained model's outputs (Section.keeps_math)."""
    return t.goal == "serve" and bool((t.math or {}).get("serves_exactly"))


def dominates(a: Point, b: Point, objectives: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one: exactly when ``a`` alone
    is the front of the pair (one definition of dominance, Optuna's, for the front and this test alike)."""
    front = pareto_front([a, b], objectives)
    return len(front) == 1 and front[0] is a


def pareto_front(points: Sequence[Point], objectives: Sequence[str]) -> list[Point]:
    """The points no other point dominates on ``objectives`` (equal points all stay), in their given order.

    Optuna's own front (``Study.best_trials``) of a throwaway in-memory study holding one trial per point: the
    search study's trials would not do, as they include duplicates and judge feasibility without tolerance.
    """
    # Optuna refuses NaN; a NaN compares false both ways, so such a point is on the front and dominates nothing.
    comparable = [i for i, p in enumerate(points) if not any(math.isnan(p.metrics[o]) for o in objectives)]
    if not objectives or not comparable:
        return list(points)
    study = optuna.create_study(directions=["maximize" if METRICS[o] else "minimize" for o in objectives])
    study.add_trials([create_trial(values=[float(points[i].metrics[o]) for o in objectives], user_attrs={"index": i})
                      for i in comparable])
    kept = {int(t.user_attrs["index"]) for t in study.best_trials} | (set(range(len(points))) - set(comparable))
    return [p for i, p in enumerate(points) if i in kept]


def speed_objectives(objectives: Sequence[str]) -> list[str]:
    return [o for o in objectives if o in SPEED_OBJECTIVES]


def speed_score(point: Point, objectives: Sequence[str]) -> float:
    """Geometric mean of the speedups on the chosen speed objectives (1.0 = as fast as the baseline)."""
    ratios = [point.ratio(o) for o in speed_objectives(objectives) if o in point.speedup]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else 1.0


def _record(t: TrialRecord | FrozenTrial) -> TrialRecord:
    return t if isinstance(t, TrialRecord) else read(t)


def _point(t: TrialRecord, base: TrialRecord, max_drop: float, curve: RecipeCurve) -> Point:
    """``t`` against ``base``, the recipe at ``t``'s own share of the schedule, its quality judged as the curve
    says it can be there."""
    fraction = fraction_of(t)
    drop, over = judge(base, t, max_drop, curve)
    details = t.details
    check = details.get("quality") or {}
    # A speed-only change whose loss agreed with the recipe's own run: its quality is the recipe's, at any rung.
    same_math = (check.get("sanity") == "passed" and check.get("from") == base.number) or serves_exactly(t)
    return Point(
        trial=t.number,
        role=t.role,
        params=t.settings,
        metrics=dict(t.metrics),
        metrics_ci95={k: list(v) for k, v in t.ci95.items()},
        speedup=single_speedups(t.metrics, base.metrics),
        accuracy_drop=drop,
        # Judged as the constraint was (over_budget); the interval is shown beside it.
        feasible=over <= 1e-12,
        plan=dict(t.plan),
        goal=t.goal or ("baseline" if t.role == "baseline" else "combined"),
        members=t.members,
        load={k: details[k] for k in ("foreign_cores", "loadavg") if k in details},
        finetune_s=float(details.get("finetune_s", 0.0)),
        shown=Shown.of(details.get("metric")),
        fraction=fraction,
        judged="same math" if same_math else ("measured" if curve.informative(fraction) else "not judged"),
    )


def _apply_remeasure(point: Point, entry: Mapping[str, Any], objectives: Sequence[str]) -> None:
    for objective, r in entry.get("objectives", {}).items():
        point.speedup[objective] = {"source": "interleaved re-measurement", **r}
    # A point's label speaks for its own goal's metrics only; other metrics carry their own labels.
    # Every speedup entry carries its label (single_speedups, a re-measurement's Ratio.to_json).
    labels: set[str] = {point.speedup[o].get("label", "") for o in judging(point.goal, objectives) if o in point.speedup}
    if labels:
        point.verdict = labels.pop() if len(labels) == 1 else "mixed: " + ", ".join(
            f"{o} {point.speedup[o].get('label')}" for o in judging(point.goal, objectives) if o in point.speedup)


def summarize_study(study: optuna.Study, objectives: Sequence[str], max_drop: float) -> Summary:
    trials = [read(t) for t in study.get_trials(deepcopy=False)]
    complete = [t for t in trials if t.measured]
    base_trial = next((t for t in complete if t.role == "baseline"), None)
    if base_trial is None:
        raise ValueError("the study has no completed baseline trial")
    curve = curve_of(complete, max_drop, stated_metric(study.user_attrs))
    # Each trial is compared with the recipe at its own share of the schedule (the search's, a rung of the recipe's
    # curve that serving trials and promotions use); confirmations are compared at full length by confirm.py. The
    # recipe's own trials at other rungs (its curve, its replicas) are not candidates.
    references = recipes(complete)
    points = [_point(t, references[fraction_of(t)], max_drop, curve) for t in complete
              if t.duplicate_of is None and fraction_of(t) in references and t.role not in ("rung", "confirm")
              and (t.settings or t.number == base_trial.number)]
    baseline = next(p for p in points if p.trial == base_trial.number)
    baseline.verdict = "baseline"
    feasible = [p for p in points if p.feasible]
    front = pareto_front(feasible, objectives)
    remeasure = study.user_attrs.get("remeasure") or {}
    entries = remeasure.get("trials", {}) if remeasure.get("baseline") == base_trial.number else {}
    for p in points:
        if str(p.trial) in entries:
            _apply_remeasure(p, entries[str(p.trial)], objectives)
    front.sort(key=lambda p: -speed_score(p, objectives))
    goals = study.user_attrs.get("goals") or goals_for(str(study.user_attrs.get("mode", "both")))
    stored = study.user_attrs.get("answers") or {}
    if stored.get("baseline") == base_trial.number:
        answers = [Answer.from_json(stored["goals"][g]) for g in goals if g in stored.get("goals", {})]
    else:
        answers = [provisional(g, points, baseline, objectives, max_drop, curve) for g in goals if g != "combined"]
        for a in answers:
            if a.given and (judged := next((p for p in points if p.trial == a.trial), None)) is not None:
                # Every given answer states its evidence, a provisional one too (its quality's rung and the recipe's).
                a.evidence = evidence.of(a.goal, None, evidence.quality_of(judged, curve), baseline.fraction)
    given = {a.goal: a for a in answers if a.given}
    primary = next((given[g] for g in PRIMARY if g in given), None)
    recommended = next((p for p in points if primary is not None and p.trial == primary.trial), baseline)
    verdict = "; ".join(f"{a.goal}: {a.verdict}" for a in answers) or "no goal could be judged"
    failures = [Failure(t.number, t.failure_kind or "error", t.reason or "unknown", t.config or dict(t.params), t.where or "")
                # A proposal that repeated a failed configuration ran nothing: the failure is listed once, as it ran.
                for t in trials if t.state == TrialState.FAIL and not t.not_run and t.duplicate_of is None]
    # (by settings: a configuration promoted to another share of the schedule is the same configuration)
    trained = {repr(sorted(t.settings.items())) for t in trials if t.goal in ("train", "combined") and t.role not in ("baseline", "rung")
               and t.duplicate_of is None and (t.state == TrialState.COMPLETE or t.failure_kind == FailureKind.TOO_SLOW)}
    return Summary(tuple(objectives), max_drop, baseline, front, recommended, points, failures, verdict, bool(entries),
                   answers, dict(base_trial.details.get("profile") or {}), dict(study.user_attrs.get("screening") or {}),
                   curve, len(trained))


def recipe_answers(summary: Summary) -> dict[str, Any]:
    """Every given answer, keyed by goal, as `autoaccel apply --goal` reads them."""
    out = {}
    for a in summary.answers:
        if not a.given:
            continue
        point = summary.point(a.trial)
        members = [{**m, "params": (summary.point(int(m["trial"])) or summary.baseline).params}
                   for m in a.members]
        out[a.goal] = {"trial": a.trial, "params": a.params, "plan": point.plan if point else {},
                       "metrics": point.metrics if point else {}, "speedup": a.speedup, "accuracy_drop": a.accuracy_drop,
                       "members": members, "verdict": a.verdict, "evidence": a.evidence,
                       "evidence_in_words": evidence.words(a.evidence, a.goal, summary.metric)}
    return out


def output_texts(summary: Summary, meta: dict[str, Any]) -> dict[str, str]:
    """The text of pareto.json and recipe.yaml (published together, with the report and model, by outputs.py)."""
    pareto = {**summary.to_json(), **meta}
    rec = summary.recommended
    answers = recipe_answers(summary)
    recipe = {
        "autoaccel_recipe": 2,
        **meta,
        # The primary answer, as in pareto.json's `recommended`; every answer is under `answers`.
        "goal": next((g for g in PRIMARY if g in answers), None),
        "trial": rec.trial,
        "params": rec.params,
        "plan": rec.plan,
        "metrics": rec.metrics,
        "speedup": rec.speedup,
        "accuracy_drop": rec.accuracy_drop,
        "verdict": summary.verdict,
        "answers": answers,
    }
    return {"pareto.json": json.dumps(pareto, indent=2, default=str) + "\n",
            "recipe.yaml": yaml.safe_dump(json.loads(json.dumps(recipe, default=str)), sort_keys=False)}
