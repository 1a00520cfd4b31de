"""The search: one Optuna study per (task, target, mode), trial 0 the user's recipe, every trial isolated.

``Search`` composes its collaborators and runs the loop within the budget: the policy proposes (policy.py), the
executor runs and records (executor.py), the coordinator keeps the workers sharing the study in step (team/).
Then the study goes to the finish (autoaccel.finish), given what it needs explicitly, and the outputs are
published as one generation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pluggy
from optuna.trial import TrialState
from rich.markup import escape

from autoaccel.errors import AutoaccelError, TrialFailure
from autoaccel.finish import Finishing, Summary, environment, finalize, goals_for, recipe_curve, summarize_study
from autoaccel.options import Options, mask_url, parse_val_fraction
from autoaccel.outputs import Generation, Progress, export_recommended, publish, sweep
from autoaccel.scratch import run_scratch
from autoaccel.search import _study as studies
from autoaccel.search._budget import Budget, plan_fidelity, study_fidelity
from autoaccel.search._executor import Executor, Runner
from autoaccel.search._ladder import Ladder
from autoaccel.search._outcomes import Outcomes
from autoaccel.search._plans import Plans
from autoaccel.search._policy import Policy
from autoaccel.search._setup import default_study_name, set_up_search
from autoaccel.search._stages import Proposal
from autoaccel.search.team import Coordinator
from autoaccel.task import Shown, Task, val_share
from autoaccel.trial import (
    Fidelity,
    InProcessRunner,
    IsolatedRunner,
    TaskSource,
    TrialRecord,
    TrialResult,
    record,
    share,
    training_key,
)
from autoaccel.vocab import Role


class Search:
    def __init__(self, task: Task, task_path: str | Path | None, options: Options, pm: pluggy.PluginManager) -> None:
        self.options, self.pm = options.validate(), pm
        self.val_share = parse_val_fraction(options.val_fraction)
        self.task, self.task_path = val_share.bound(task, self.val_share), task_path
        self.objectives = options.resolved_objectives()
        self.setup = set_up_search(task, self.options, pm)
        self.progress = Progress(options.quiet)
        self.out_dir = options.out_dir(task.name)
        self.study_name = options.study or default_study_name(task, self.setup.target, options.mode)
        self.total = self.options.resolved_trials()
        self.climbed = False  # whether the recipe's ladder is done (ladder.py), its finding said on the terminal
        self.budget = Budget()
        self.plans = Plans(self.task, self.setup, options.mode)
        self.policy = Policy(self.setup, self.plans, self.options, self.objectives)
        self.team = Coordinator(self.task, self.options, self.setup, self.progress, self.study_name)
        self.executor = Executor(self.task, self.options, self.setup, self.plans, self.policy,
                                 Outcomes(pm, self.objectives, self.options), self.team, self.progress, self.budget)

    @property
    def fidelity(self) -> Fidelity:
        """The shares of the schedule the search's trials and its answer train (planned at the start)."""
        return self.executor.fidelity

    @property
    def finished_by(self) -> str | None:
        """Another worker that writes the answer (None: this one, or nobody)."""
        return self.team.finished_by

    def attach(self, study: optuna.Study, claims: optuna.storages.BaseStorage | None = None) -> None:
        """Take part in ``study`` as one of its workers; code that drives ``next_trial`` itself (the replay
        benchmark) calls this first."""
        self.team.attach(study, claims)

    def _runner(self) -> Runner:
        cache = self.options.checkpoints(self.task.name)
        if not self.options.isolate:
            return InProcessRunner(self.task, cache)
        return IsolatedRunner(TaskSource.of(self.task, self.task_path, self.val_share), self.options.trial_timeout, cache)

    def run(self) -> tuple[optuna.Study, Summary]:
        """Run the search; everything temporary (ONNX graphs, ...) lives in one folder removed at the end."""
        # A storage that fails mid-run (a full disk under SQLite, a database gone) is one line too; the trial in
        # flight stays RUNNING there and is marked interrupted at the next start.
        with run_scratch(), studies.readable(self.options.storage_url(self.task.name)):
            return self._run()

    def _claims(self) -> optuna.storages.BaseStorage | None:
        """The workers' claims: in the shared storage when the user gave one (None: workers on other hosts see
        them there), else in a file beside this run's own study, which then holds exactly one study
        (optuna-dashboard, optuna.load_study without a name)."""
        if self.options.storage is not None:
            return None
        return studies.open_storage(f"sqlite:///{(self.out_dir / 'workers.db').resolve()}", self.options.heartbeat)

    def _run(self) -> tuple[optuna.Study, Summary]:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AutoaccelError(f"--out: cannot create the folder {self.out_dir} ({exc.strerror or exc}); "
                                 "expected a folder path you can write to") from exc
        if removed := sweep(self.out_dir):
            self.progress.info(f"removed {len(removed)} leftover(s) of an earlier run that was killed while writing its outputs")
        storage = studies.open_storage(self.options.storage_url(self.task.name), self.options.heartbeat)
        sampler = studies.make_sampler(self.options.sampler, self.options.seed, self.setup.space)
        study = studies.open_study(storage, self.study_name, self.objectives, sampler)
        # Before anything is added beside the study: its figures were measured on one share of the validation set
        # (a study with trials but no share recorded was measured, by an older version, on the whole set).
        measured = bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        val_share.check_study(study.user_attrs.get("val_fraction", 1.0 if measured else None), self.val_share)
        claims = self._claims()
        try:
            self.attach(study, claims or storage)
            return self._work(study, storage)
        finally:
            self.team.heartbeat.close()

    def _work(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, Summary]:
        self._recover(study, storage)
        self._describe(study)
        self.budget.begin(self.options, self.progress.info)
        self.team.join(study, self.budget)
        self._announce(study)
        runner = self._runner()
        self._plan_fidelity(study, runner)
        self.progress.start(self.options.trials)
        try:
            self._loop(study, runner)
            self.progress.stop()
            if (verdicts := self._verdicts(study)) is not None:
                study.set_user_attr("screening", verdicts)
            if not self.team.finishing(study):
                # Another worker finishes: this one's view of the study so far (single measurements).
                return study, summarize_study(study, self.objectives, studies.max_drop(study, self.options))
            try:
                summary = self._finish(study, runner)
            finally:
                self.team.crew.release_all()
        finally:
            self.progress.stop()
            runner.close()
        return study, summary

    def _recover(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
        """Fail what an earlier run left running (queued again) and the trials of workers gone silent."""
        recovered = studies.fail_interrupted(study, storage)
        for number in recovered:
            self.team.retry.requeue(study, study.get_trials(deepcopy=False)[number])
        self.team.fail_stale(study)
        # This run adds trials: the answers of an earlier run no longer hold. Cleared now, so a run killed before
        # its own finish leaves the study (and `autoaccel report`) on single measurements, said as such.
        study.set_user_attr("answers", None)
        study.set_user_attr("remeasure", None)
        if recovered:
            self.progress.info(f"marked interrupted trial(s) {recovered} as failed; continuing the study")

    def _describe(self, study: optuna.Study) -> None:
        """What the study records about this run, for the report, `autoaccel report` and `autoaccel confirm`."""
        study.set_user_attr("target", self.setup.target.describe())
        study.set_user_attr("environment", environment())
        study.set_user_attr("max_accuracy_drop", studies.max_drop(study, self.options))
        study.set_user_attr("mode", self.options.mode)
        study.set_user_attr("goals", list(goals_for(self.options.mode, self.policy.factors())))
        study.set_user_attr("task", self.task.name)
        study.set_user_attr("val_fraction", self.val_share)
        if self.options.baseline_metric is not None:  # what `autoaccel confirm OUT` compares with (confirm.py)
            study.set_user_attr("baseline_metric", float(self.options.baseline_metric))
        # The space's narrowed parameters: a confirmation asks its trials in the same distributions.
        study.set_user_attr("choices", {k: list(v) for k, v in (self.options.choices or {}).items()})
        if self.task_path is not None:
            study.set_user_attr("task_path", str(Path(self.task_path).resolve()))  # for `autoaccel confirm OUT`
        study.set_user_attr("hints", {f"{s.name}.{k}": why for s in self.setup.strategies for k, why in s.hints.items()})

    def _announce(self, study: optuna.Study) -> None:
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        self.progress.info(
            escape(f"study '{self.study_name}' ({done} completed trial(s) kept) on {self.setup.target.name} [{self.setup.target.device}], "
                   f"objectives {', '.join(self.objectives)}, strategies {', '.join(s.name for s in self.setup.strategies) or 'none'}")
        )
        if self.val_share < 1.0:
            self.progress.info(f"quality is measured on {len(self.task.val_data)} rows of your validation set "
                               f"({self.val_share:g} of it, --val-fraction), the same rows for every trial")
        for name, why_skipped in self.setup.skipped.items():
            self.progress.info(escape(f"  skipped {name}: {why_skipped}"))

    def _plan_fidelity(self, study: optuna.Study, runner: Runner) -> None:
        """The share of the schedule every search trial trains (see budget.py); the recipe's plan follows it."""
        techniques = len(self.policy.stages.techniques("train"))
        fidelity = study_fidelity(study, lambda: plan_fidelity(self.options, self.setup.base, self.task.seed, runner,
                                                                 self.budget, techniques, self.progress.info))
        self.executor.fidelity = fidelity
        if fidelity.search < 1.0:
            base = self.setup.base.replace(fraction=fidelity.search)
            self.setup.base = base.replace(baseline_key=training_key(self.task, base))
        self.progress.info(escape(fidelity.header()))

    def _loop(self, study: optuna.Study, runner: Runner) -> None:
        """Trials until the run's trial budget or deadline is spent, or the space is."""
        repeats = 0
        while (used := self.team.used(study)) < self.total:
            if self.budget.spent():
                self.progress.info(f"{self.budget.why} after {used} trial(s); finishing")
                return
            self.team.fail_stale(study)
            if not self.team.baseline_ready(study):
                continue
            if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                # A retry of a dead worker's trial, or a proposal another worker queued: run it before
                # proposing more (Optuna hands out the oldest queued trial first anyway).
                number = self.executor.one_trial(study, runner, used + 1)
            else:
                number = self.next_trial(study, runner, used + 1)
            done = record.read(study.get_trials(deepcopy=False)[number])
            # A proposal already measured costs nothing and does not count; a sampler that keeps proposing them
            # has run out of new configurations.
            repeats = 0 if done.duplicate_of is None and not done.not_run else repeats + 1
            if self.policy.exhausted(repeats):
                self.progress.info(f"the sampler proposed only measured configurations {repeats} times in a row: "
                                   "the search space is exhausted")
                return

    def next_trial(self, study: optuna.Study, runner: Runner, n: int) -> int:
        """Run the next trial of the search; return its number. First the user's recipe, then what the policy
        proposes: techniques alone, stacked on the best, then sampled combinations and local moves."""
        base = studies.baseline_of(study)
        if base is None:
            return self.executor.one_trial(study, runner, n)
        if (number := self._climb(study, runner, base)) is not None:
            return number
        proposal = self.policy.propose(study, studies.records(study), base)
        for message in proposal.messages:
            self.progress.info(escape(message))
        if proposal.config is not None:
            study.enqueue_trial({**self.setup.defaults, **proposal.config},
                                user_attrs=record.enqueued(proposal.role, over=proposal.over))
        number = self._observe(study, proposal, self.executor.one_trial(study, runner, n))
        trial = record.read(study.get_trials(deepcopy=False)[number])
        if proposal.role == Role.CANDIDATE and trial.duplicate_of is not None:
            if (near := self.policy.instead_of_repeat(study, trial)) is not None:
                study.enqueue_trial({**self.setup.defaults, **near}, user_attrs=record.enqueued(Role.NEIGHBOUR.value))
                number = self._observe(study, proposal, self.executor.one_trial(study, runner, n))
        return number

    def _climb(self, study: optuna.Study, runner: Runner, base: TrialRecord) -> int | None:
        """The recipe's next rung (ladder.py), before any candidate: where its quality can be judged decides how
        every candidate's is. None once the ladder is done (serving trials then serve from where it learned)."""
        if self.climbed:
            return None  # done in this process: the study's records are not read again for it
        ladder, shown = Ladder(self.fidelity), Shown.of(base.details.get("metric"))
        records = studies.records(study)
        curve = recipe_curve.curve_of(records, studies.max_drop(study, self.options), recipe_curve.stored(study.user_attrs))
        step = ladder.next(records, curve, None if self.budget.deadline is None else self.budget.deadline - time.monotonic())
        if step is None:
            self.climbed = True
            if self.fidelity.compressed:
                self.executor.serving_fraction = Ladder.serving_fraction(curve, self.fidelity.search)
                self.progress.info(escape(Ladder.words(curve, self.fidelity.search, shown)))
            return None
        fraction, replica = step
        why = (f"your recipe again from another seed at {share(fraction)} of its schedule: how far two runs of the same "
               "math differ there" if replica else
               f"your recipe at {share(fraction)} of its schedule: has it learned by then? (where quality can be judged)")
        self.progress.info(escape(why))
        study.enqueue_trial(dict(self.setup.defaults), user_attrs=record.enqueued(Role.RUNG.value, fraction=fraction,
                                                                                  replica=replica or None))
        number = self.executor.one_trial(study, runner, 0, quiet=True)
        done = record.read(study.get_trials(deepcopy=False)[number])
        if done.measured:
            self.progress.info(escape(f"  {shown.name} {shown.fmt(done.metrics['accuracy'])} "
                                      f"(trial {number}; your recipe's at {share(self.fidelity.search)}: "
                                      f"{shown.fmt(base.metrics['accuracy'])})"))
        return number

    def _observe(self, study: optuna.Study, proposal: Proposal, number: int) -> int:
        trials = study.get_trials(deepcopy=False)
        trial = record.read(trials[number])
        done = record.read(trials[trial.duplicate_of]) if trial.duplicate_of is not None else trial
        over = record.read(trials[proposal.over]) if proposal.over is not None else None
        for message in self.policy.observed(proposal, trial, done, over):
            self.progress.info(escape(message))
        return number

    def _verdicts(self, study: optuna.Study) -> dict[str, Any] | None:
        """The screening's verdicts, so the report can say why each technique was kept or dropped."""
        base = studies.baseline_of(study)
        return self.policy.verdicts(studies.records(study), base) if base is not None else None

    def _finish(self, study: optuna.Study, runner: Runner) -> Summary:
        """With no other worker searching: the finish, then one published generation of outputs."""
        self.team.settle(study, runner)
        while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):  # retries of dead workers' trials
            self.executor.one_trial(study, runner, min(self.team.used(study) + 1, self.total))
        finalize(self.finish_inputs(study), study, runner)
        summary = summarize_study(study, self.objectives, studies.max_drop(study, self.options))
        generation = Generation(self.out_dir)
        try:
            plan = self.plans.plan_of(study, summary.recommended.trial)
            export = generation.public(export_recommended(plan, runner, self.task.seed, generation.path("model"), self.progress.info))
            study.set_user_attr("export", export)  # so `autoaccel report` rebuilds the same pareto.json
            publish(generation, summary, study, {**self.meta(), "export": export})
        except BaseException:
            generation.discard()  # the last complete outputs stay current
            raise
        return summary

    def finish_inputs(self, study: optuna.Study) -> Finishing:
        """What the finish is handed: this run's settings and the collaborators that measure and rebuild plans."""
        return Finishing(task=self.task, options=self.options, objectives=self.objectives,
                         goals=goals_for(self.options.mode, self.policy.factors()), trains=self.plans.base.train,
                         max_drop=studies.max_drop(study, self.options), fidelity=self.fidelity, budget_end=self.budget.end,
                         plan_of=self.plans.plan_of, run_fixed=self.executor.run_fixed, say=self.progress.info)

    def confirm_trials(self, study: optuna.Study, configs: list[dict[str, Any]]) -> list[TrialRecord | None]:
        """Train each configuration at full length as a trial of ``study`` (role ``confirm``), in order, in one
        worker; a configuration trained whole before (a confirmation killed midway) is reused. None: it failed."""
        with run_scratch(), studies.readable(self.options.storage_url(self.task.name)):
            self.attach(study, self._claims())
            # A confirmation killed midway left its trial running and its claim held: both released first.
            studies.fail_interrupted(study, study._storage)
            self.team.crew.clean()
            self.executor.fidelity = Fidelity.from_json(study.user_attrs.get("fidelity"))
            runner = self._runner()
            try:
                done = [self.executor.run_fixed(study, runner, config, Role.CONFIRM.value, 1.0) for config in configs]
            finally:
                runner.close()
                self.team.crew.release_all()
                self.team.heartbeat.close()
        return [record.read(t) if t is not None else None for t in done]

    def evaluate_weights(self, configs: list[dict[str, Any]]) -> list[TrialResult | TrialFailure]:
        """Each configuration served from Task.weights (the recipe as the user trained it whole): evaluation only,
        nothing trains, not trials of the study (cheap to repeat). Serving changes only; a failure is returned."""
        out: list[TrialResult | TrialFailure] = []
        with run_scratch():
            runner = self._runner()
            try:
                for config in configs:
                    _, plan, _ = self.plans.build({**self.setup.defaults, **config}, fraction=1.0)
                    try:
                        out.append(runner.run(plan.replace(train=False), self.task.seed, self.options.timing_budget_s))
                    except TrialFailure as failure:
                        out.append(failure)
            finally:
                runner.close()
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "study": self.study_name,
            "mode": self.options.mode,
            "target": self.setup.target.describe(),
            "storage": mask_url(self.options.storage_url(self.task.name)),
            "fidelity": self.fidelity.to_json(),
        }

