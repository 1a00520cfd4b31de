"""The search: one Optuna study per (task, target, mode), trial 0 the user's recipe, every trial isolated."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pluggy
import torch
from optuna.trial import TrialState
from rich.markup import escape

from autoaccel.errors import AutoaccelError, TrialFailure, interrupt_reason
from autoaccel.finish import Summary, environment, export_recommended, finalize, goal_score, goals_for, judging, summarize_study
from autoaccel.options import FINISH_SHARE, Options, mask_url, parse_fidelity, parse_val_fraction
from autoaccel.outputs import Generation, Progress, fmt_metric, fmt_params, publish, sweep
from autoaccel.plugin._configuration import FACTORS, configuration, culprits, factor_of, goal_of, suggest
from autoaccel.plugin._contexts import Guards
from autoaccel.plugin._pipeline import Member, Pipeline
from autoaccel.plugin._strategy import Strategy, apply_all, split_params
from autoaccel.scratch import run_scratch
from autoaccel.search import _study as studies
from autoaccel.search._members import choose_members, plan_of
from autoaccel.search._neighbours import Neighbours
from autoaccel.search._outcomes import Outcomes
from autoaccel.search._screening import STOPPED, incumbent
from autoaccel.search._setup import default_study_name, plan_search
from autoaccel.search._stages import Proposal, Stages
from autoaccel.search.team._claims import RetryStale, me, who
from autoaccel.search.team._coordinator import Teamwork
from autoaccel.task import Shown, Task, val_share
from autoaccel.trial import InProcessRunner, IsolatedRunner, TaskSource, TrialRecord, TrialResult, fidelity, record, training_key
from autoaccel.vocab import TRAINING_OBJECTIVES

MAX_REPEATS = 20
# A training trial on course to take this many times the fastest feasible training time so far (the user's recipe
# or a faster configuration) is stopped early: it cannot be the training answer (the margin is for the projection,
# made from a tenth of the run).
STOP_SLOWER = 1.1
# Trials the search itself proposes (the finish's ablation and combined trials always run to the end).
SEARCH_ROLES = frozenset({"candidate", "screen", "stack", "local", "neighbour"})
# However little of a budget is left, a trial may take this long before it is stopped.
MIN_TRIAL_S = 30.0
# A compressed search trial that trains is stopped past this many times the wall time of the baseline's trial.
SLOW_TRIAL = 3.0


class Search(Teamwork, Outcomes):
    def __init__(self, task: Task, task_path: str | Path | None, options: Options, pm: pluggy.PluginManager) -> None:
        self.options, self.pm = options.validate(), pm
        self.val_share = parse_val_fraction(options.val_fraction)
        self.task, self.task_path = val_share.bound(task, self.val_share), task_path
        self.objectives = options.resolved_objectives()
        self.plan = plan_search(task, self.options, pm)
        self.progress = Progress(options.quiet)
        self.out_dir = options.out_dir(task.name)
        self.study_name = options.study or default_study_name(task, self.plan.target, options.mode)
        self.turn = 0  # sampled trials asked so far: which factor the next one varies
        self.stages = Stages(self.plan.strategies, self.plan.space, options.mode,
                             {f: judging(f, self.objectives) for f in FACTORS}, self.factors())
        self.neighbours = Neighbours(self.plan.space, self.plan.defaults, options.mode, self.build)
        self.total = self.options.resolved_trials()
        # A fixed count of trials (no time budget) makes every trial equally dear: when it cannot screen every
        # technique alone, the run is short (see Stages.short).
        self.stages.short = options.trials is not None and options.trials - 1 < self.stages.screening.size
        self.budget_end: float | None = None  # monotonic time by which the whole run should be done
        self.finished_by: str | None = None  # another worker that writes the answer (None: this one, or nobody)
        self.threads = torch.get_num_threads()  # what a trial uses when this worker is alone on its host
        self.fidelity = fidelity.Fidelity()  # the share of the schedule search trials train (set at the start)

    @property
    def base(self) -> Pipeline:
        """The user's recipe as a plan."""
        return self.plan.base

    def factors(self, strategies: list[Strategy] | None = None) -> tuple[str, ...]:
        """The factors that have strategies to search, in the order trials alternate between them."""
        present = {factor_of(s, self.options.mode) for s in (self.plan.strategies if strategies is None else strategies)}
        # Serving first: its trials reuse the baseline's trained model and cost evaluation only.
        return tuple(f for f in reversed(FACTORS) if f in present)

    def base_at(self, fraction: float | None) -> Pipeline:
        """The user's recipe as a plan training ``fraction`` of its schedule (None: the search's fidelity)."""
        if fraction is None or fraction == self.plan.base.fraction:
            return self.plan.base
        base = self.plan.base.replace(fraction=fraction)
        return base.replace(baseline_key=training_key(self.task, base))

    def build(self, params: dict[str, Any], study: optuna.Study | None = None,
              fraction: float | None = None) -> tuple[dict[str, Any], Pipeline, int]:
        """The configuration (settings that change the plan), its plan with the trained members its strategies
        ask for chosen from ``study``, and how many of those the study cannot supply yet. ``fraction``: a share of
        the schedule other than the search's (the finish's promotion, `autoaccel confirm`)."""
        config = configuration(self.plan.strategies, self.plan.base, params, self.plan.defaults)
        plan = apply_all(self.plan.strategies, self.base_at(fraction), config)
        grouped = split_params(config)
        wanted = sum(s.members_needed(grouped[s.name]) for s in self.plan.strategies if s.name in grouped)
        if wanted and study is not None:
            plan = plan.replace(members=self.members(study, plan, wanted))
        return config, plan, wanted - len(plan.members)

    def members(self, study: optuna.Study, plan: Pipeline, k: int) -> tuple[Member, ...]:
        return choose_members(study, self.task, self.plan.strategies, self.plan.base, self.options.mode, plan, k)

    def plan_of(self, study: optuna.Study, trial: int) -> Pipeline:
        """The plan a completed trial ran, members included (rebuilt from the trials they came from)."""
        return plan_of(study, trial, self.task, self.plan.strategies, self.plan.base, self.options.mode)

    def _runner(self) -> IsolatedRunner | InProcessRunner:
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

    def _run(self) -> tuple[optuna.Study, Summary]:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AutoaccelError(f"--out: cannot create the folder {self.out_dir} ({exc.strerror or exc}); "
                                 "expected a folder path you can write to") from exc
        if removed := sweep(self.out_dir):
            self.progress.info(f"removed {len(removed)} leftover(s) of an earlier run that was killed while writing its outputs")
        url = self.options.storage_url(self.task.name)
        self.retry = RetryStale(self.plan.defaults)
        storage = studies.open_storage(url, self.options.heartbeat)
        sampler = studies.make_sampler(self.options.sampler, self.options.seed, self.plan.space)
        study = studies.open_study(storage, self.study_name, self.objectives, sampler)
        # Before anything is added beside the study: its figures were measured on one share of the validation set
        # (a study with trials but no share recorded was measured, by an older version, on the whole set).
        measured = bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        val_share.check_study(study.user_attrs.get("val_fraction", 1.0 if measured else None), self.val_share)
        # The workers' claims: in the shared storage when the user gave one (workers on other hosts see them),
        # else in a file beside this run's own study, which then holds exactly one study (optuna-dashboard,
        # optuna.load_study without a name).
        claims = storage if self.options.storage is not None else \
            studies.open_storage(f"sqlite:///{(self.out_dir / 'workers.db').resolve()}", self.options.heartbeat)
        try:
            self.attach(study, claims)
            return self._work(study, storage)
        finally:
            self.heartbeat.close()

    def _work(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, Summary]:
        recovered = studies.fail_interrupted(study, storage)
        for number in recovered:
            self.retry.requeue(study, study.get_trials(deepcopy=False)[number])
        self._fail_stale(study)
        # This run adds trials: the answers of an earlier run no longer hold. Cleared now, so a run killed before
        # its own finish leaves the study (and `autoaccel report`) on single measurements, said as such.
        study.set_user_attr("answers", None)
        study.set_user_attr("remeasure", None)
        if recovered:
            self.progress.info(f"marked interrupted trial(s) {recovered} as failed; continuing the study")
        study.set_user_attr("target", self.plan.target.describe())
        study.set_user_attr("environment", environment())
        study.set_user_attr("max_accuracy_drop", self.max_drop(study))
        study.set_user_attr("mode", self.options.mode)
        study.set_user_attr("goals", list(goals_for(self.options.mode, self.factors())))
        study.set_user_attr("task", self.task.name)
        study.set_user_attr("val_fraction", self.val_share)
        if self.options.baseline_metric is not None:  # what `autoaccel confirm OUT` compares with (confirm.py)
            study.set_user_attr("baseline_metric", float(self.options.baseline_metric))
        # The space's narrowed parameters: a confirmation asks its trials in the same distributions.
        study.set_user_attr("choices", {k: list(v) for k, v in (self.options.choices or {}).items()})
        if self.task_path is not None:
            study.set_user_attr("task_path", str(Path(self.task_path).resolve()))  # for `autoaccel confirm OUT`
        study.set_user_attr("hints", {f"{s.name}.{k}": why for s in self.plan.strategies for k, why in s.hints.items()})
        deadline, why = self._join(study)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        self.progress.info(
            escape(f"study '{self.study_name}' ({done} completed trial(s) kept) on {self.plan.target.name} [{self.plan.target.device}], "
                   f"objectives {', '.join(self.objectives)}, strategies {', '.join(s.name for s in self.plan.strategies) or 'none'}")
        )
        if self.val_share < 1.0:
            self.progress.info(f"quality is measured on {len(self.task.val_data)} rows of your validation set "
                               f"({self.val_share:g} of it, --val-fraction), the same rows for every trial")
        for name, why_skipped in self.plan.skipped.items():
            self.progress.info(escape(f"  skipped {name}: {why_skipped}"))
        runner = self._runner()
        self._plan_fidelity(study, runner, deadline)
        self.progress.start(self.options.trials)
        try:
            repeats = 0
            while (used := self.used(study)) < self.total:
                if deadline is not None and time.monotonic() >= deadline:
                    self.progress.info(f"{why} after {used} trial(s); finishing")
                    break
                self._fail_stale(study)
                if not self._baseline_ready(study):
                    continue
                if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    # A retry of a dead worker's trial, or a proposal another worker queued: run it before
                    # proposing more (Optuna hands out the oldest queued trial first anyway).
                    number = self._one_trial(study, runner, used + 1)
                else:
                    number = self.next_trial(study, runner, used + 1)
                done = record.read(study.get_trials(deepcopy=False)[number])
                if done.duplicate_of is None and not done.not_run:
                    repeats = 0
                else:
                    # A proposal already measured costs nothing and does not count; a sampler that keeps
                    # proposing them has run out of new configurations.
                    repeats += 1
                    if self.exhausted(repeats):
                        self.progress.info(f"the sampler proposed only measured configurations {MAX_REPEATS} times in a row: "
                                           "the search space is exhausted")
                        break
            self.progress.stop()
            self.record_screening(study)
            if not self._finishing(study):
                # Another worker finishes: this one's view of the study so far (single measurements).
                return study, summarize_study(study, self.objectives, self.max_drop(study))
            try:
                self._settle(study, runner)
                finalize(self, study, runner)
                summary = summarize_study(study, self.objectives, self.max_drop(study))
                generation = Generation(self.out_dir)
                try:
                    export = generation.public(export_recommended(self, study, summary, runner, generation.path("model")))
                    study.set_user_attr("export", export)  # so `autoaccel report` rebuilds the same pareto.json
                    publish(generation, summary, study, {**self.meta(), "export": export})
                except BaseException:
                    generation.discard()  # the last complete outputs stay current
                    raise
            finally:
                self.crew.release_all()
        finally:
            self.progress.stop()
            runner.close()
        return study, summary

    def confirm_trials(self, study: optuna.Study, configs: list[dict[str, Any]]) -> list[TrialRecord | None]:
        """Train each configuration at full length as a trial of ``study`` (role ``confirm``), in order, in one
        worker; a configuration trained whole before (a confirmation killed midway) is reused. None: it failed."""
        with run_scratch(), studies.readable(self.options.storage_url(self.task.name)):
            claims = None if self.options.storage is not None else \
                studies.open_storage(f"sqlite:///{(self.out_dir / 'workers.db').resolve()}", self.options.heartbeat)
            self.attach(study, claims)
            # A confirmation killed midway left its trial running and its claim held: both released first.
            studies.fail_interrupted(study, study._storage)
            self.crew.clean()
            self.fidelity = fidelity.Fidelity.from_json(study.user_attrs.get("fidelity"))
            runner = self._runner()
            try:
                done = [self.run_fixed(study, runner, config, "confirm", 1.0) for config in configs]
            finally:
                runner.close()
                self.crew.release_all()
                self.heartbeat.close()
        return [record.read(t) if t is not None else None for t in done]

    def evaluate_weights(self, configs: list[dict[str, Any]]) -> list[TrialResult | TrialFailure]:
        """Each configuration served from Task.weights (the recipe as the user trained it whole): evaluation only,
        nothing trains, not trials of the study (cheap to repeat). Serving changes only; a failure is returned."""
        out: list[TrialResult | TrialFailure] = []
        with run_scratch():
            runner = self._runner()
            try:
                for config in configs:
                    _, plan, _ = self.build({**self.plan.defaults, **config}, fraction=1.0)
                    try:
                        out.append(runner.run(plan.replace(train=False), self.task.seed, self.options.timing_budget_s))
                    except TrialFailure as failure:
                        out.append(failure)
            finally:
                runner.close()
        return out

    def max_drop(self, study: optuna.Study, baseline_value: float | None = None) -> float:
        """The quality budget in the metric's own units: as given, or the given fraction of the baseline's value
        (0 until the baseline is measured)."""
        value, relative = self.options.drop_spec()
        if not relative:
            return value
        if baseline_value is None:
            base = studies.baseline_of(study)
            baseline_value = base.metrics["accuracy"] if base is not None else 0.0
        return value * abs(baseline_value)

    def _deadline(self) -> tuple[float | None, str]:
        """When the search stops starting trials, and how to say so: at --timeout, or when the budget's share for
        searching is spent (the rest is kept for the finish)."""
        now = time.monotonic()
        ends: list[tuple[float, str]] = []
        if self.options.timeout:
            ends.append((now + self.options.timeout, "--timeout reached"))
        if (budget := self.options.resolved_budget()) is not None:
            self.budget_end = now + budget * 60.0
            ends.append((now + budget * 60.0 * (1 - FINISH_SHARE), f"search share of the {budget:g}-minute budget spent"))
            self.progress.info(f"budget: {budget:g} minutes, about {budget * (1 - FINISH_SHARE):.1f} of them searching "
                               "(--budget MINUTES, or --trials N, to change)")
        return min(ends) if ends else (None, "")

    def _plan_fidelity(self, study: optuna.Study, runner: IsolatedRunner | InProcessRunner, deadline: float | None) -> None:
        """Choose the share of the schedule every search trial trains (fidelity.py), once per study: a resumed run
        or a joining worker keeps the study's, so that its trials stay comparable with the baseline."""
        stored = study.user_attrs.get("fidelity")
        if stored is not None:
            self.fidelity = fidelity.Fidelity.from_json(stored)
        else:
            self.fidelity = self._new_fidelity(runner, deadline)
            study.set_user_attr("fidelity", self.fidelity.to_json())
        if self.fidelity.search < 1.0:
            base = self.plan.base.replace(fraction=self.fidelity.search)
            self.plan.base = base.replace(baseline_key=training_key(self.task, base))
        self.progress.info(escape(self.fidelity.header()))

    def _new_fidelity(self, runner: IsolatedRunner | InProcessRunner, deadline: float | None) -> fidelity.Fidelity:
        """Probe the user's recipe for a few dozen steps and plan from its projected training time and the budget;
        or take --fidelity as given."""
        chosen = parse_fidelity(self.options.fidelity)
        if not self.base.train or chosen == 1.0 or (chosen is None and deadline is None):
            return fidelity.Fidelity(how="every training trial trains your whole recipe" if self.base.train else "nothing trains")
        try:
            found = runner.probe(self.base, self.task.seed)
        except TrialFailure as failure:
            # The baseline trial will fail with the same reason, said there; here only the plan is lost.
            self.progress.info(escape(f"could not time your recipe ahead of the search ({failure.reason}); training it whole"))
            return fidelity.Fidelity(how="whole recipe (the probe failed)")
        full_s, steps, step_s = found["full_s"], int(found["full_steps"]), found["step_s"]
        if chosen is not None:
            return fidelity.fixed(chosen, full_s, steps, step_s)
        now = time.monotonic()
        search_s = max(0.0, deadline - now) if deadline is not None else None
        finish_s = max(0.0, self.budget_end - (deadline or now)) if self.budget_end is not None else None
        return fidelity.plan(full_s, steps, step_s, search_s, finish_s, len(self.stages.techniques("train")))

    def meta(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "study": self.study_name,
            "mode": self.options.mode,
            "target": self.plan.target.describe(),
            "storage": mask_url(self.options.storage_url(self.task.name)),
            "fidelity": self.fidelity.to_json(),
        }

    def run_fixed(self, study: optuna.Study, runner: IsolatedRunner | InProcessRunner, config: dict[str, Any],
                  role: str, fraction: float | None = None) -> optuna.trial.FrozenTrial | None:
        """Measure one given configuration as a trial of the study (an ablation variant, a combined answer, a
        promotion to another share of the schedule); a configuration already measured is reused. None when it
        failed."""
        study.enqueue_trial({**self.plan.defaults, **config}, user_attrs=record.enqueued(role, fraction=fraction))
        number = self._one_trial(study, runner, 0, quiet=True)
        trial = study.get_trials(deepcopy=False)[number]
        if (twin := record.read(trial).duplicate_of) is not None:
            trial = study.get_trials(deepcopy=False)[twin]  # measured before: that one
        return trial if trial.state == TrialState.COMPLETE else None

    def next_trial(self, study: optuna.Study, runner: IsolatedRunner | InProcessRunner, n: int) -> int:
        """Run the next trial of the search; return its number. First the user's recipe, then what the stages
        propose (see stages.py): techniques alone, stacked on the best, then sampled combinations."""
        base = studies.baseline_of(study)
        if base is None:
            return self._one_trial(study, runner, n)
        records = self.records(study)
        proposal = self.stages.next(records, base)
        for message in proposal.messages:
            self.progress.info(escape(message))
        if proposal.role == "local":
            # Half the combining trials explore one setting away from the best configurations so far.
            near = self._local(study, records, base)
            proposal = Proposal("local", near) if near is not None else Proposal("candidate")
        if proposal.config is not None:
            study.enqueue_trial({**self.plan.defaults, **proposal.config},
                                user_attrs=record.enqueued(proposal.role, over=proposal.over))
        number = self._observe(study, proposal, self._one_trial(study, runner, n))
        trial = record.read(study.get_trials(deepcopy=False)[number])
        if proposal.role == "candidate" and trial.duplicate_of is not None:
            # The sampler asked again for something measured (TPE does, on a small space): move to its nearest
            # configuration not measured yet, so a proposal explores where the model points instead of stalling.
            factor = trial.goal if trial.goal in FACTORS else None
            if (near := self.neighbours.near(study, self.stages.searched, trial.settings, factor, trial.number)) is not None:
                study.enqueue_trial({**self.plan.defaults, **near}, user_attrs=record.enqueued("neighbour"))
                number = self._observe(study, proposal, self._one_trial(study, runner, n))
        return number

    def exhausted(self, repeats: int) -> bool:
        """Whether ``repeats`` proposals in a row of measured configurations, every technique searched, mean the
        search has run out of new configurations (the run then finishes early)."""
        return repeats >= MAX_REPEATS and self.stages.stage == "widened"

    def _local(self, study: optuna.Study, records: list[TrialRecord], base: TrialRecord) -> dict[str, Any] | None:
        """A local move around the best configurations of the next factor (see neighbours.py)."""
        factors = self.factors(self.stages.searched)
        if not factors:
            return None
        factor = factors[self.turn % len(factors)]
        self.turn += 1
        return self.neighbours.around_best(study, records, base, self.stages.searched, factor,
                                           judging(factor, self.objectives), self.turn)

    def records(self, study: optuna.Study) -> list[TrialRecord]:
        done = {r.number: r for r in studies.finished(study)}  # finished trials are read once (study.finished)
        return [done.get(t.number) or record.read(t) for t in study.get_trials(deepcopy=False)]

    def _observe(self, study: optuna.Study, proposal: Proposal, number: int) -> int:
        trials = study.get_trials(deepcopy=False)
        trial = record.read(trials[number])
        done = record.read(trials[trial.duplicate_of]) if trial.duplicate_of is not None else trial
        over = record.read(trials[proposal.over]) if proposal.over is not None else None
        for message in self.stages.observed(proposal, trial, done, over):
            self.progress.info(escape(message))
        return number

    def record_screening(self, study: optuna.Study) -> None:
        """Store the verdicts, so the report can say why each technique was kept or dropped."""
        base = studies.baseline_of(study)
        if base is None:
            return
        verdicts = self.stages.verdicts(self.records(study), base)
        study.set_user_attr("screening", {k: v.to_json() for k, v in verdicts.items()})

    def _one_trial(self, study: optuna.Study, runner: IsolatedRunner | InProcessRunner, n: int,
                   quiet: bool = False) -> int:
        """Run the next trial; return its number. A trial of a configuration measured before is reused, not run
        (its ``duplicate_of`` attribute says so)."""
        # Claim the trial for this process before sampling (which takes a while): a kill in between must still
        # leave a trial the next run recognises as interrupted.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage")  # ours beats from a thread (workers.py)
            trial = study.ask()
        self.heartbeat.hold(trial._trial_id)
        try:
            return self._asked(study, runner, trial, n, quiet)
        finally:
            self.heartbeat.drop(trial._trial_id)

    def _asked(self, study: optuna.Study, runner: IsolatedRunner | InProcessRunner, trial: optuna.Trial, n: int,
               quiet: bool) -> int:
        record.write(trial, worker=me(), run=self.crew.run)
        asked = record.read(study.get_trials(deepcopy=False)[trial.number])
        role = asked.role
        factors = self.factors(self.stages.searched)
        # Enqueued trials (the baseline, combined answers, ablation variants) fix every factor; a sampled trial
        # varies one factor at a time, so each answer has trials that changed only what it judges.
        wanted: tuple[str, ...] = FACTORS
        if role == "candidate":
            # Alternate on every proposal, reused or not: a factor whose proposals keep repeating measured
            # configurations must not starve the other one.
            wanted = (factors[self.turn % len(factors)],) if factors else ()
            self.turn += 1
        suggested = self.stages.searched if role == "candidate" else self.plan.strategies
        params = suggest(trial, suggested, self.plan.space, self.options.mode, wanted)
        config, pipeline, missing = self.build(params, study, asked.fraction)
        fingerprint = pipeline.fingerprint()
        goal = goal_of(config, self.plan.strategies, self.options.mode)
        record.write(trial, config=config, goal=goal, fingerprint=fingerprint, fraction=pipeline.fraction,
                     math={"key": pipeline.math_key(), "tolerance": pipeline.speed_only_tolerance()})
        label = fmt_params(config, {})
        if missing > 0 and role != "baseline":
            # Too early for this configuration (an ensemble before enough feasible models exist): nothing to
            # measure, and no trial of the user's budget is spent on it.
            record.write(trial, not_run=True, failure_kind="infeasible",
                         reason=f"{label}: needs {missing} more feasible trained model(s) than the study has so far")
            study.tell(trial, state=TrialState.FAIL)
            if not quiet:
                self.progress.trial(n, self.options.trials, trial.number, label, "not run yet: too few feasible trained models "
                                    "for it so far", "", counted=False)
            return trial.number
        # Claim the configuration first, then look for an earlier measurement: a worker that measured it has
        # told its result before releasing its claim, so between them no configuration is measured twice.
        claim, holder = self.crew.holder("config", fingerprint, trial=trial.number)
        if holder.number != claim.number:
            # Another worker is measuring this configuration right now: its result will be reused, not repeated.
            self.crew.release(claim)
            busy = f"being measured by worker {who(holder.worker)} (trial {holder.attrs.get('trial')})"
            record.write(trial, not_run=True, failure_kind="busy", reason=f"{label}: {busy}")
            study.tell(trial, state=TrialState.FAIL)
            if not quiet:
                self.progress.trial(n, self.options.trials, trial.number, label, busy, "", counted=False)
            return trial.number
        twin = studies.duplicate_of(study, fingerprint)
        if twin is not None and role != "baseline":
            self.crew.release(claim)
            self._reuse(study, trial, twin)
            if not quiet:
                self.progress.trial(n, self.options.trials, trial.number, label, f"same as trial {twin.number}, reused", "",
                                    counted=False)
            return trial.number
        try:
            return self._measure(study, runner, trial, n, quiet, config, pipeline, goal, role, label)
        finally:
            self.crew.release(claim)

    def _measure(self, study: optuna.Study, runner: IsolatedRunner | InProcessRunner, trial: optuna.Trial, n: int,
                 quiet: bool, config: dict[str, Any], pipeline: Pipeline, goal: str, role: str, label: str) -> int:
        record.write(trial, plan=pipeline.describe())
        runner.threads = self.crew.threads(self.threads)  # other workers on this host share the cores
        started = time.monotonic()
        cap = self._wall_cap(study, goal, role)
        if self.budget_end is not None and isinstance(runner, IsolatedRunner):
            # No trial may outlast the whole budget (a compile that takes minutes on a CPU); it fails as a timeout.
            runner.trial_timeout = min(self.options.trial_timeout, max(MIN_TRIAL_S, self.budget_end - started),
                                       cap or float("inf"))
        try:
            result = runner.run(pipeline, self.task.seed, self.options.timing_budget_s,
                                guards=self._guards(study, goal, role))
        except TrialFailure as failure:
            if failure.kind == "timeout" and cap is not None and time.monotonic() - started >= cap * 0.99:
                failure = TrialFailure(f"stopped after {cap:.0f} s of wall time, {SLOW_TRIAL:g}x your recipe's trial at the "
                                       "same share of the schedule: one-off costs (compilation, start-up) a run this "
                                       "short cannot repay", kind=STOPPED, stage=failure.stage)
            # Name the technique and choice that failed, then the library's own words, on one line.
            who = culprits(self.plan.strategies, self.plan.base, config, failure.stage)
            reason = f"{who}: {failure.reason}".splitlines()[0]
            self._fail(study, trial, failure.kind, reason, started)
            # A run stopped because it could not win is the search economising, not a technique failing.
            outcome = ("[yellow]stopped early[/]" if failure.kind == STOPPED else f"[red]failed ({failure.kind})[/]") + f": {escape(reason)}"
            if quiet:
                self.progress.info(f"  {escape(role)} trial #{trial.number} {escape(label)} {outcome}")
            else:
                self.progress.trial(n, self.options.trials, trial.number, label, outcome, "")
            if role == "baseline":
                raise AutoaccelError(f"the baseline (trial {trial.number}, your own recipe) failed: {failure.reason}") from None
            return trial.number
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP turned into Interrupted by the CLI
            self._fail(study, trial, "interrupted", interrupt_reason(exc), started)
            raise
        if not self._complete(study, trial, result, started):
            self.progress.info(f"  trial #{trial.number} was failed by another worker while this one was paused past its "
                               "heartbeat grace period: its result is dropped (the configuration was queued again)")
            return trial.number
        if not quiet:
            self.progress.trial(n, self.options.trials, trial.number, label, self._outcome(result, study, trial.number), self._best(study))
        return trial.number

    def _guards(self, study: optuna.Study, goal: str, role: str) -> Guards | None:
        """The early stops of a search trial that trains: the speed bar, and the baseline's loss curve (a run far
        above it at the same point of the schedule is diverging)."""
        if goal != "train" or role not in SEARCH_ROLES:
            return None
        base = studies.baseline_of(study)
        curve = tuple(tuple(p) for p in ((base.details.get("fidelity") or {}).get("loss_curve") or [])) if base else ()
        return Guards(self._speed_bar(study, goal, role), curve)  # type: ignore[arg-type]

    def _wall_cap(self, study: optuna.Study, goal: str, role: str) -> float | None:
        """Wall seconds a compressed search trial that trains may take: SLOW_TRIAL times the baseline's trial. Its
        one-off costs (a torch.compile of a minute on a CPU) are not in its projected training time, yet they are
        the budget's, and a user whose whole training is a few minutes would pay them on every run."""
        if not self.fidelity.compressed or goal != "train" or role not in SEARCH_ROLES:
            return None
        base = studies.baseline_of(study)
        return max(MIN_TRIAL_S, SLOW_TRIAL * base.seconds) if base is not None and base.seconds else None

    def _speed_bar(self, study: optuna.Study, goal: str, role: str) -> float | None:
        """Seconds of training beyond which a search trial of the training factor is stopped early: it can no
        longer win, being slower than the fastest configuration within the accuracy budget so far (STOP_SLOWER
        times its training time, a margin for the projection's noise), so its accuracy is not worth the rest of
        its run. A screen on top of that configuration is judged against it, and would not help either."""
        if goal != "train" or role not in SEARCH_ROLES or not any(o in TRAINING_OBJECTIVES for o in self.objectives):
            return None
        base = studies.baseline_of(study)
        if base is None:
            return None
        best = incumbent(self.records(study), base, self.stages.techniques("train"), judging("train", self.objectives))
        fastest = min(base.metrics["train_time"], best.metrics["train_time"] if best is not None else float("inf"))
        return fastest * STOP_SLOWER

    def _outcome(self, result: TrialResult, study: optuna.Study, number: int) -> str:
        shown = Shown.of(result.details.get("metric"))
        text = "  ".join(f"{shown.name if o == 'accuracy' else o} {fmt_metric(o, result.metrics[o], shown)}" for o in self.objectives)
        done = record.read(study.get_trials(deepcopy=False)[number])
        quality = done.details.get("quality") or {}
        if quality.get("sanity") == "passed":
            text += f"  (speed only: {shown.name} of trial {quality['from']}, its loss within {quality['loss_gap']:.0%})"
        elif quality.get("sanity") == "failed":
            text += f"  [yellow](speed only, but its loss drifted {quality['loss_gap']:.0%} from trial {quality['against']}'s)[/]"
        return text + ("" if done.feasible else f"  [yellow]({shown.drop_word} over budget)[/]")

    def _best(self, study: optuna.Study) -> str:
        """The best feasible candidate so far per goal, on that goal's own metrics (single measurements)."""
        try:
            summary = summarize_study(study, self.objectives, self.max_drop(study))
        except ValueError:
            return ""
        parts = []
        for goal in ("train", "serve"):
            metrics = judging(goal, self.objectives)
            mine = [p for p in summary.points if p.goal == goal and p.feasible and metrics]
            best = max(mine, key=lambda p: goal_score(p, metrics), default=None)
            if best is not None and goal_score(best, metrics) > 1.0:
                parts.append(f"{goal} {goal_score(best, metrics):.2f}x (trial {best.trial})")
        return f"  | best so far: {', '.join(parts) if parts else 'your recipe'}"

