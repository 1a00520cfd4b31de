"""The end of a search: the finalists of each goal re-measured against the baseline, one answer per goal chosen,
checked for consistency across its measurements and made minimal (an ablation), the train answer promoted to a
higher rung (promotion.py), and the combined answer run and re-measured. Each step records what it found in the
study, so `autoaccel report` rebuilds it from storage."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import optuna
from rich.markup import escape

from autoaccel.errors import TrialFailure
from autoaccel.finish import _evidence as evidence
from autoaccel.finish._answers import (
    Answer,
    agrees,
    candidate,
    give,
    goal_score,
    judging,
    keep,
    qualifies,
    ranked,
    rejection,
)
from autoaccel.finish._finishing import Finishing
from autoaccel.finish._promotion import Promotion
from autoaccel.finish._study_facts import importances
from autoaccel.finish._summary import Point, Summary, over_budget, single_speedups, summarize_study
from autoaccel.plugin._strategy import split_params, strategy_of
from autoaccel.trial import Ratio, paired_ratio, read, share, train_samples, training_key
from autoaccel.vocab import REMEASURED, TRAINING_OBJECTIVES

# Train finalists promoted to an informative rung at most, in order, until one holds there.
PROMOTED = 2
# The share of the time left that the finalists' re-measurement may take (the promotion and the ablation need the
# rest), and the fewest rounds a re-measurement cut to fit is left with (its intervals need them).
REMEASURE_SHARE = 0.4
FEWEST_ROUNDS = 3

if TYPE_CHECKING:
    from autoaccel.finish._finishing import Runner
    from autoaccel.trial import Timings


def timed_objectives(objectives: tuple[str, ...], trains: bool) -> list[str]:
    """The objectives the re-measurement times: training ones only where the recipe trains."""
    return [o for o in objectives if o in REMEASURED and (o not in TRAINING_OBJECTIVES or trains)]


# The training speedup of a serving variant: it trains nothing new (the user's own checkpoint).
UNCHANGED = {"value": 1.0, "ci95": [1.0, 1.0], "label": "unchanged (same trained model)", "source": "same checkpoint"}


def _speedups(timings: "Timings", timed: list[str], ref: int, i: int) -> dict[str, dict[str, Any]]:
    """Paired speedups of plan ``i`` over plan ``ref`` per timed objective, rounds of unequal load discarded;
    both training objectives read the one training timing (seconds for the same samples)."""
    out = {}
    for o in timed:
        key = "train_time" if o in TRAINING_OBJECTIVES else o
        s, load = timings.seconds[key], timings.load.get(key)
        r = paired_ratio(s[ref], s[i], base_load=load[ref] if load else None, cand_load=load[i] if load else None)
        out[o] = {**r.to_json(), "source": "interleaved re-measurement"}
    return out


# How a plan whose training goes beyond its own run is re-measured.
BEYOND = ("interleaved re-measurement: its own training and that of each model it serves beside its own timed in "
          "the same rounds, fine-tuning at the share of its own training its trial measured")


def _beyond(timings: "Timings", timed: list[str], ref: int, i: int, members: list[int], finetune: float) -> dict[str, dict[str, Any]]:
    """Paired training speedups of plan ``i`` whose model needs more training than its own run: each round's cost
    is its own slice, times one plus its fine-tuning's share of its own training, plus the slice of each member
    (plans ``members``, timed in the same round over the same samples: a member trains the same data)."""
    s, load = timings.seconds["train_time"], timings.load.get("train_time")
    cost = [s[i][r] * (1.0 + finetune) + sum(s[m][r] for m in members) for r in range(len(s[i]))]
    # A round is as loaded as the busiest of the measurements it sums.
    cand_load = [max((v for v in (load[j][r] for j in (i, *members)) if v is not None), default=None)
                 for r in range(len(s[i]))] if load else None
    r = paired_ratio(s[ref], cost, base_load=load[ref] if load else None, cand_load=cand_load)
    return {o: {**r.to_json(), "source": BEYOND} for o in timed if o in TRAINING_OBJECTIVES}


def _all(finalists: dict[str, list[int]]) -> list[int]:
    return list(dict.fromkeys(t for ts in finalists.values() for t in ts))


class Finisher:
    """The end of a search: finalists re-measured, one answer per goal chosen, checked and made minimal.

    Every figure it produces is stored in the study (``remeasure``, ``answers``, ``ablation``), so that
    `autoaccel report` rebuilds the same answers from storage alone.
    """

    def __init__(self, given: Finishing, study: optuna.Study, runner: Runner) -> None:
        self.given, self.study, self.runner = given, study, runner
        self.objectives = given.objectives
        self.max_drop = given.max_drop
        self.rounds = given.options.remeasure_rounds
        self.timed = timed_objectives(given.objectives, given.trains)
        self.entries: dict[str, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.slice: dict[str, Any] | None = None  # the training slices the last re-measurement timed
        self.fidelity = given.fidelity
        self.summary = self.refresh()
        self.promotion = Promotion(given, study, runner, self.refresh)

    def refresh(self) -> Summary:
        self.summary = summarize_study(self.study, self.objectives, self.max_drop)
        return self.summary

    def compare(self, trials: list[int], ref: int = 0, timed: list[str] | None = None) -> dict[int, dict[str, dict[str, Any]]] | None:
        """Time the trials' plans interleaved; speedup of each over ``trials[ref]``. None when it failed.

        A trial whose model needs training beyond its own run (ensemble members, fine-tuning) has that training
        re-measured too: its members' recipes are timed in the same rounds (``_beyond``)."""
        timed = self.timed if timed is None else timed
        training = any(o in TRAINING_OBJECTIVES for o in timed)
        points = {t: self.point(t) for t in trials}
        members = list(dict.fromkeys(int(m["trial"]) for t in trials for m in points[t].members)) if training else []
        extra = [m for m in members if m not in trials]
        everyone = [*trials, *extra]
        plans = [self.given.plan_of(self.study, t) for t in everyone]
        samples = train_samples(self.summary.baseline, plans)
        if training:
            self.slice = evidence.speed_slice(samples, plans[0].batch_size, self.rounds)
        try:
            # Members' serving is timed along (unused): their training is what the plans that serve them pay.
            timings = self.runner.remeasure(plans, tuple(timed), self.rounds, self.given.task.seed, samples)
        except TrialFailure as failure:
            self.given.say(f"[yellow]re-measurement failed ({failure.kind}): {escape(failure.reason)}[/]")
            return None
        found = {t: _speedups(timings, timed, ref, i) for i, t in enumerate(trials) if i != ref}
        for i, t in enumerate(trials):
            p = points[t]
            if i == ref or not training or not (p.finetune_s or p.members):
                continue
            own = p.metrics["train_time"] - p.finetune_s - sum(float(m["train_time"]) for m in p.members)
            parts = [everyone.index(int(m["trial"])) for m in p.members]
            found[t].update(_beyond(timings, timed, ref, i, parts, p.finetune_s / own if own > 0 else 0.0))
        return found

    def round_s(self, trials: list[int]) -> float:
        """Seconds one re-measurement round of ``trials`` and the baseline takes, estimated: each plan's training
        slice at its own measured rate (serving variants of the recipe's model are not trained again), and its
        serving figures at the timing budget each."""
        base = self.summary.baseline
        plans = [self.given.plan_of(self.study, t) for t in [base.trial, *trials]]
        samples = train_samples(base, plans)
        key = self.training_key(base.trial)
        serving = sum(o not in TRAINING_OBJECTIVES for o in self.timed) * self.given.options.timing_budget_s
        timed_training = any(o in TRAINING_OBJECTIVES for o in self.timed)
        total = 0.0
        for t in [base.trial, *trials]:
            rate = float(self.point(t).metrics.get("train_throughput") or 0.0)
            trains = timed_training and (t == base.trial or self.training_key(t) != key)
            total += serving + (samples / rate if trains and rate > 0 else 0.0)
        return total

    def fit(self, finalists: dict[str, list[int]]) -> tuple[dict[str, list[int]], str]:
        """The finalists and rounds the time left affords (REMEASURE_SHARE of it): the lowest-ranked finalists
        dropped first (one per goal kept), then rounds cut to FEWEST_ROUNDS; and how it was cut, in words."""
        left = self.promotion.left()
        if left is None:
            return finalists, ""
        allowed = REMEASURE_SHARE * max(0.0, left)
        kept = {g: list(ts) for g, ts in finalists.items()}
        before = (len(_all(kept)), self.rounds)
        while any(len(ts) > 1 for ts in kept.values()) and self.rounds * self.round_s(_all(kept)) > allowed:
            longest = max(kept, key=lambda g: len(kept[g]))
            kept[longest] = kept[longest][:-1]
        while self.rounds > FEWEST_ROUNDS and self.rounds * self.round_s(_all(kept)) > allowed:
            self.rounds -= 1
        if (len(_all(kept)), self.rounds) == before:
            return finalists, ""
        return kept, f" (what the {left:.0f} s left of the budget affords; {before[0]} finalist(s) in {before[1]} rounds wanted)"

    def remeasure(self, trials: list[int]) -> bool:
        """Re-measure ``trials`` against the baseline and record their speedups in the study.

        Serving variants of the user's own trained model train exactly as the baseline does (the same
        checkpoint): their training is not timed again, and their training speedup is recorded as unchanged,
        unless they fine-tune after training or serve ensemble members, whose training is re-measured as well.
        """
        self.refresh()  # trials may have just run (ablation variants, the combined answer)
        base = self.summary.baseline.trial
        key = self.training_key(base)
        same = [t for t in trials if self.training_key(t) == key and not self.point(t).finetune_s and not self.point(t).members]
        serving = [o for o in self.timed if o not in TRAINING_OBJECTIVES]
        found: dict[int, dict[str, dict[str, Any]]] = {}
        for group, timed in (([t for t in trials if t not in same], self.timed), (same, serving)):
            if not group or not timed:
                continue
            measured = self.compare([base, *group], timed=timed)
            if measured is None:
                return False
            found.update(measured)
        for t in same:
            found.setdefault(t, {}).update({o: dict(UNCHANGED) for o in self.timed if o in TRAINING_OBJECTIVES})
        for t, speedup in found.items():
            self.entries[str(t)] = {"objectives": speedup}
        self.study.set_user_attr("remeasure", {"baseline": base, "rounds": self.rounds, "trials": self.entries})
        self.refresh()
        return True

    def training_key(self, trial: int) -> str:
        return training_key(self.given.task, self.given.plan_of(self.study, trial))

    def point(self, trial: int) -> Point:
        found = self.summary.point(trial)
        assert found is not None, trial
        return found

    def run(self) -> None:
        goals = self.given.goals
        # Answers and re-measurements of an earlier finish no longer hold once trials were added; cleared first,
        # a finish killed midway leaves the study saying "not re-measured" rather than claiming it was.
        self.study.set_user_attr("answers", None)
        self.study.set_user_attr("remeasure", None)
        self.refresh()
        if self.rounds == 0 or not self.timed:
            self.study.set_user_attr("ablation", importances(self.study, self.objectives))
            return
        finalists: dict[str, list[int]] = {}
        own = [g for g in goals if g != "combined"]
        share = max(1, self.given.options.max_finalists // max(1, len(own)))
        for goal in own:
            judged = judging(goal, self.objectives)
            mine = [p for p in self.summary.points if p.goal == goal and p.feasible and judged and goal_score(p, judged) > 1.0]
            finalists[goal] = [p.trial for p in sorted(mine, key=lambda p: -goal_score(p, judged))[:share]]
        finalists, cut = self.fit(finalists)
        everyone = _all(finalists)
        if everyone:
            self.given.say(f"re-measuring the baseline and {len(everyone)} finalist(s) interleaved, "
                           f"{self.rounds} rounds{cut} ...")
            if not self.remeasure(everyone):
                # No paired evidence: the answers stay on single measurements and say so (no study attribute).
                self.study.set_user_attr("ablation", importances(self.study, self.objectives))
                return
        answers: dict[str, Answer] = {}
        for goal in finalists:
            # A train answer is promoted within decide, at once: the other goals' ablations must not spend its time.
            answers[goal] = self.decide(goal, finalists[goal])
        if "combined" in goals:
            answers["combined"] = self.combine(answers)
        for goal, answer in answers.items():
            if answer.given:
                # The point its quality rests on: the promotion's, at the rung it was judged at, else its own.
                on = self.judged_on(goal, answer)
                answer.evidence = evidence.of(goal, self.slice, evidence.quality_of(on, self.summary.curve),
                                              self.fidelity.search)
        self.study.set_user_attr("answers", {"baseline": self.summary.baseline.trial,
                                             "goals": {g: a.to_json() for g, a in answers.items()}})
        if self.rows:
            self.study.set_user_attr("ablation", {"method": "ablation", "rows": self.rows})
        else:
            self.study.set_user_attr("ablation", importances(self.study, self.objectives))

    def decide(self, goal: str, finalists: list[int]) -> Answer:
        """The first finalist (fastest on the goal's own metrics) that stays faster beyond noise, agrees with
        itself across measurements and is within the accuracy budget, made minimal; else keep the recipe."""
        base, judged = self.summary.baseline, judging(goal, self.objectives)
        if not judged:
            return keep(goal, base, None, f"no requested objective judges this goal (add one of "
                                          f"{', '.join(judging(goal, REMEASURED))} to --objectives)")
        rejected = None
        promotions = 0
        for p in self.in_order(finalists, judged):
            if qualifies(p, judged, remeasured=True):
                why = self.check(p, judged)
                if not why and p.judged == "not judged" and goal != "train":
                    # A serving change judged on a model that has not learned yet: a candidate, not an answer.
                    rejected = rejected or candidate(p, judged, self.summary.curve)
                    continue
                if not why:
                    # Only the first is made minimal: a later finalist's time goes to judging its quality.
                    point, notes = self.minimise(self.point(p.trial), goal, judged) if not promotions else (p, [])
                    answer = give(goal, point, base, self.objectives, "interleaved re-measurement", notes)
                    if goal != "train":
                        return answer
                    promotions += 1
                    answer = self.promotion.promote(answer)
                    if answer.given or answer.rejected is None or promotions >= PROMOTED or not answer.rejected.get("promotable"):
                        return answer
                    rejected = rejected or answer.rejected
                    continue
                rejected = rejected or rejection(p, judged, self.max_drop, why)
            rejected = rejected or rejection(self.point(p.trial), judged, self.max_drop)
        if rejected is None:
            mine = ranked(self.summary.points, goal, judged)
            rejected = rejection(mine[0], judged, self.max_drop) if mine else None
        return keep(goal, base, rejected)

    def in_order(self, finalists: list[int], judged: list[str]) -> list[Point]:
        """The finalists in the order they are tried: fastest first, except that below an informative rung (where
        nothing is rejected on quality) those whose quality kept up with the others' (within noise of the recipe's,
        training noise included) go before those that fell behind: quality ranks candidates against each other."""
        points = [self.point(t) for t in finalists]

        def behind(p: Point) -> bool:
            return p.judged == "not judged" and over_budget(p.accuracy_drop, self.max_drop, p.fraction) > 1e-12

        return sorted(points, key=lambda p: (behind(p), -goal_score(p, judged)))

    def judged_on(self, goal: str, answer: Answer) -> Point:
        """The point an answer's quality rests on: the train answer's promotion, at the rung it was judged at, else
        the answer's own trial."""
        promoted = self.promotion.judged_on if goal == "train" else None  # set only for the answer that held
        return promoted if promoted is not None else self.point(answer.trial)

    def check(self, p: Point, judged: list[str]) -> str:
        """'' when the trial's own ratio agrees with its re-measurement; otherwise measure again, and say why
        the measurement is unreliable (with the figures) if it still disagrees."""
        single = {o: r["value"] for o, r in single_speedups(p.metrics, self.summary.baseline.metrics).items()}
        first = {o: dict(p.speedup[o]) for o in judged}
        if all(agrees(single[o], first[o]) for o in judged if o in single):
            return ""
        self.given.say(f"trial {p.trial}: its own measurement and its re-measurement disagree; measuring again")
        if not self.remeasure([p.trial]):
            return "its re-measurement failed"
        again = self.point(p.trial)
        ok = all(agrees(single[o], again.speedup[o]) or _overlap(first[o], again.speedup[o]) for o in judged if o in single)
        if ok and qualifies(again, judged, remeasured=True):
            return ""
        figures = "; ".join(f"{o}: {single[o]:.2f}x in its trial, {first[o]['value']:.2f}x "
                            f"[{first[o]['ci95'][0]:.2f}, {first[o]['ci95'][1]:.2f}] re-measured, then "
                            f"{again.speedup[o]['value']:.2f}x" for o in judged if o in single)
        return f"its measurement is unreliable ({figures})" if not ok else "it was not faster beyond noise when measured again"

    def minimise(self, p: Point, goal: str, judged: list[str]) -> tuple[Point, list[str]]:
        """Drop each technique of ``p`` in turn; one whose removal does not slow the answer beyond noise (and
        keeps accuracy within budget) does not earn its place. The slimmer answer is re-measured and returned."""
        names = list(split_params(p.params))
        if len(names) < 2 or not self.given.options.ablation:
            return p, []
        if goal == "train" and self.promotion.crowds_out(len(names) + 1):
            return p, [f"not made minimal: the budget left goes to judging its quality at a higher share of your schedule "
                       f"than the search's {share(self.fidelity.search)} (a larger --budget does both)"]
        left = self.promotion.left()
        if goal != "serve" and left is not None and (len(names) * self.promotion.baseline_wall()
                                                     + self.rounds * self.round_s([p.trial]) * len(names) / 2) > left:
            # Each variant trains (at the search's share) and is re-measured: not started where it cannot end.
            return p, [f"not made minimal: dropping each of its {len(names)} techniques takes a training each, and the "
                       f"{max(0.0, left):.0f} s left of the budget do not afford them (a larger --budget does)"]
        self.given.say(f"{goal} answer: dropping each of {', '.join(names)} from trial {p.trial} ...")
        variants: dict[str, int] = {}
        for name in names:
            config = {k: v for k, v in p.params.items() if not k.startswith(f"{name}.")}
            trial = self.given.run_fixed(self.study, self.runner, config, "ablation")
            row: dict[str, Any] = {"goal": goal, "trial": p.trial, "technique": name,
                                   "dropped": {k: v for k, v in p.params.items() if k.startswith(f"{name}.")}}
            if trial is None:
                row["error"] = "the variant without it failed"
            else:
                variants[name] = trial.number
            self.rows.append(row)
        self.refresh()
        found = self.compare([p.trial, *variants.values()]) if variants else None
        useless = []
        for row in self.rows[-len(names):]:
            name = row["technique"]
            if name not in variants:
                continue
            variant = self.point(variants[name])
            row["accuracy"] = variant.metrics["accuracy"]
            row["accuracy_change"] = p.metrics["accuracy"] - variant.metrics["accuracy"]
            if found is None:
                row["error"] = "re-measurement failed"
                continue
            # How much faster the answer is *with* the technique than without it (> 1: it pulls its weight).
            row["speedup"] = _inverse(found[variants[name]])
            if variant.feasible and all(row["speedup"].get(o, {}).get("label") != "faster" for o in judged):
                useless.append(name)
                row["verdict"] = "dropped: removing it did not slow the answer beyond noise"  # unless _kept says otherwise
            else:
                row["verdict"] = "kept"
        rows = {row["technique"]: row for row in self.rows[-len(names):]}
        if not useless:
            return p, []
        if len(useless) == len(names):
            return p, self._kept(rows, useless, "each alone looked dispensable, but not all of them at once; kept them")
        slim = {k: v for k, v in p.params.items() if strategy_of(k) not in useless}
        trial = self.given.run_fixed(self.study, self.runner, slim, "ablation")
        if trial is None or not self.remeasure([trial.number]):
            return p, self._kept(rows, useless, "the answer without them could not be measured; kept them")
        lean = self.point(trial.number)
        if qualifies(lean, judged, remeasured=True):
            return lean, [f"dropped {name}: removing it did not slow the answer beyond noise" for name in useless]
        return p, self._kept(rows, useless, "without them together the answer was no longer faster beyond noise; kept them")

    @staticmethod
    def _kept(rows: dict[str, dict[str, Any]], names: list[str], why: str) -> list[str]:
        """Mark ablation rows whose technique the answer keeps after all, and say why."""
        for name in names:
            rows[name]["verdict"] = f"kept: {why}"
        return [f"{', '.join(names)}: {why}"]

    def combine(self, answers: dict[str, Answer]) -> Answer:
        """The train answer's model served by the serve answer, run and re-measured together; its accuracy loss
        is attributed to the training change alone and the serving change alone."""
        base = self.summary.baseline
        train, serve = answers.get("train"), answers.get("serve")
        if train is None or serve is None or not (train.given and serve.given):
            missing = [g for g, a in (("train", train), ("serve", serve)) if a is None or not a.given]
            return keep("combined", base, None, f"a combined answer needs both a train and a serve answer; "
                                                f"{' and '.join(missing)} said keep your recipe")
        # Measured where both halves' quality was: the train answer's promotion rung, else the serve answer's model's.
        halves = {"train": self.judged_on("train", train), "serve": self.judged_on("serve", serve)}
        at_rung = halves["serve" if halves["train"].judged == "same math" else "train"].fraction
        if at_rung != self.fidelity.search:
            self.promotion.measure_noise(at_rung)  # it trains its own model there: judged with that rung's noise
        trial = self.given.run_fixed(self.study, self.runner, {**train.params, **serve.params}, "combined", at_rung)
        if trial is None:
            last = read(self.study.get_trials(deepcopy=False)[-1])  # the combination's own trial, just run
            return keep("combined", base, None, f"the combination failed to run: {last.reason or 'unknown reason'}")
        self.given.say(f"combined answer: re-measuring trial {trial.number} against the baseline ...")
        self.remeasure([trial.number])
        p = self.point(trial.number)
        judged = judging("combined", self.objectives)
        why = self.check(p, judged) if qualifies(p, judged, remeasured=True) else ""
        p = self.point(trial.number)
        def at(d: dict[str, Any]) -> str:
            return f" at {share(d['fraction'])} of your schedule" if d.get("fraction", 1.0) < 1.0 else ""

        curve = self.summary.curve
        told = "" if curve is None else (" (informative: your recipe has learned there)" if curve.informative(p.fraction)
                                         else " (not informative: your recipe has not learned there)")
        # A speed-only training change inherits your recipe's quality (no drop of its own); an exact serving change
        # (also "same math") measured its own drop on the model it served, which is what it reports.
        alone = {g: ("+0.0000 (a speed-only change: your recipe's math)" if q.judged == "same math" and g == "train"
                     else f"{q.accuracy_drop['value']:+.4f}{at({'fraction': q.fraction})}") for g, q in halves.items()}
        attribution = (f"{p.shown.drop_word} {p.accuracy_drop['value']:+.4f} [{p.accuracy_drop['ci95'][0]:+.4f}, "
                       f"{p.accuracy_drop['ci95'][1]:+.4f}]{at({'fraction': p.fraction})}{told}; with the training change "
                       f"alone {alone['train']}, with the serving change alone {alone['serve']}")
        if why or not qualifies(p, judged, remeasured=True):
            rejected = rejection(p, judged, self.max_drop, why)
            rejected["reason"] += f" ({attribution})"
            return keep("combined", base, rejected)
        return give("combined", p, base, self.objectives, "interleaved re-measurement", [attribution])


def _inverse(speedup: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Speedups of the reference over each variant, from the variant-over-reference figures (1/x, bounds swap)."""
    out = {}
    for o, r in speedup.items():
        lo, hi = r["ci95"]
        inv = Ratio(1 / r["value"], (1 / hi if hi > 0 else math.inf, 1 / lo if lo > 0 else math.inf),
                    int(r.get("discarded_rounds", 0)), str(r.get("unreliable", "")))
        out[o] = inv.to_json()
    return out


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["ci95"][0] <= b["ci95"][1] and b["ci95"][0] <= a["ci95"][1]


def finalize(given: Finishing, study: optuna.Study, runner: Runner) -> None:
    """Re-measure the finalists, choose and check one answer per goal, and record them in the study."""
    Finisher(given, study, runner).run()
