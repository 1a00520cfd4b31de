"""How the search tells the study a trial's outcome: measured (its objectives and accuracy constraint), failed,
or reused from an earlier trial of the same plan; observers (reporters, loggers) hear of each finished trial."""

from __future__ import annotations

import dataclasses
import time

import optuna
import pluggy
from optuna.trial import TrialState

from autoaccel.finish import judge, recipe_curve
from autoaccel.options import Options
from autoaccel.search import _sanity as sanity
from autoaccel.search import _study as studies
from autoaccel.trial import TrialRecord, TrialResult, record


class Outcomes:
    """Tells the study each trial's outcome, in the objectives' order, and the plugins' observers after it."""

    def __init__(self, pm: pluggy.PluginManager, objectives: tuple[str, ...], options: Options) -> None:
        self.pm, self.objectives, self.options = pm, objectives, options

    def reuse(self, study: optuna.Study, trial: optuna.Trial, twin: TrialRecord) -> None:
        """Record ``trial`` as the measured ``twin`` (its configuration's plan is the same): results, or failure."""
        record.write(trial, duplicate_of=twin.number)
        if twin.state == TrialState.FAIL:
            record.write(trial, failure_kind=twin.failure_kind or "error", where=twin.where,
                         reason=f"same configuration as trial {twin.number}, which failed: {twin.reason or ''}")
            study.tell(trial, state=TrialState.FAIL)
            return
        record.copy_results(trial, twin)
        trial.set_constraint("accuracy_drop", float(twin.constraint or 0.0))
        study.tell(trial, twin.values)

    def fail(self, study: optuna.Study, trial: optuna.Trial, kind: str, reason: str, started: float,
             where: str = "", trace: str = "") -> None:
        record.write(trial, failure_kind=kind, reason=reason, seconds=time.monotonic() - started, where=where or None,
                     traceback=trace or None)
        study.tell(trial, state=TrialState.FAIL)
        self._finished(study, trial.number)

    def complete(self, study: optuna.Study, trial: optuna.Trial, result: TrialResult, started: float) -> bool:
        """Record the measured trial; False when it is no longer this worker's to record: another worker failed it
        as stale while this one was paused (a stopped process, a frozen VM) longer than the grace period."""
        try:
            self._record(study, trial, result, started)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        if study.get_trials(deepcopy=False)[trial.number].state != TrialState.COMPLETE:
            return False  # failed by another worker between the record and the tell
        self._finished(study, trial.number)
        return True

    def _record(self, study: optuna.Study, trial: optuna.Trial, result: TrialResult, started: float) -> None:
        me = record.read(study.get_trials(deepcopy=False)[trial.number])
        if (source := sanity.twin(studies.records(study), me)) is not None:
            # A speed-only training change: the same math's quality, once its loss agrees (sanity.py).
            sanity.inherit(result.metrics, result.ci95, result.details, source, float((me.math or {})["tolerance"]))
        base = studies.baseline_of(study)
        base_acc = result.metrics["accuracy"] if base is None else base.metrics["accuracy"]
        drop = studies.max_drop(study, self.options, base_acc)
        if base is None:
            study.set_user_attr("max_accuracy_drop", drop)  # a relative budget is absolute once the baseline is known
        # Compared with the recipe at the trial's own share of the schedule (the recipe's rungs are measured first).
        records = studies.records(study)
        reference = recipe_curve.recipes(records).get(recipe_curve.fraction_of(me))
        if base is None or reference is None:
            constraint = -drop  # the recipe itself (at the search's rung, a rung of its curve, a replica)
        else:
            # The record as it will read back: its intervals stored as lists (record.write), not the result's tuples.
            ci95 = {m: list(v) for m, v in result.ci95.items()}
            mine = dataclasses.replace(me, metrics=result.metrics, ci95=ci95, details=result.details)
            # Judged as the recipe's curve allows at this rung: no verdict where the recipe has not learned yet, and
            # run-to-run training noise in the drop's interval (trial/_curve.py). The trial's line says which.
            curve = recipe_curve.curve_of(records, drop, recipe_curve.stored(study.user_attrs))
            _, constraint = judge(reference, mine, drop, curve)
            fraction = recipe_curve.fraction_of(me)
            result.details["rung"] = {"fraction": fraction, "informative": curve.informative(fraction),
                                      "recipe_value": curve.value(fraction)}
        record.write(trial, metrics=result.metrics, ci95=result.ci95, details=result.details, constraint=constraint,
                     seconds=time.monotonic() - started)
        trial.set_constraint("accuracy_drop", constraint)
        study.tell(trial, [result.metrics[o] for o in self.objectives], skip_if_finished=True)

    def _finished(self, study: optuna.Study, number: int) -> None:
        """Tell observers (reporters, loggers) about the finished trial: its record, as stored."""
        done = record.read(study.get_trials(deepcopy=False)[number])
        self.pm.hook.autoaccel_trial_finished(record={**done.describe(), "state": "complete" if done.measured else "failed"})
