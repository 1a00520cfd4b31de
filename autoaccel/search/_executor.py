"""The executor: runs one trial of the study and records what came of it. It asks Optuna for the trial (claimed
for this process first), builds the plan the policy's sampling and the trial's queued settings give, reuses an
earlier measurement of the same plan, or runs it in the worker and tells the study its outcome."""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import TrialState
from rich.markup import escape

from autoaccel.errors import AutoaccelError, TrialFailure, interrupt_reason
from autoaccel.finish import goal_score, judging, serves_exactly, summarize_study
from autoaccel.options import Options
from autoaccel.outputs import Progress, fmt_metric, fmt_params
from autoaccel.plugin._configuration import culprits, goal_of, suggest
from autoaccel.plugin._contexts import Guards
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.search import _study as studies
from autoaccel.search._budget import Budget
from autoaccel.search._outcomes import Outcomes
from autoaccel.search._plans import Plans
from autoaccel.search._policy import Policy
from autoaccel.search._screening import STOPPED
from autoaccel.search._setup import Setup
from autoaccel.search.team import Coordinator
from autoaccel.search.team._claims import me, who
from autoaccel.task import Shown, Task
from autoaccel.trial import Fidelity, InProcessRunner, IsolatedRunner, TrialResult, record, share
from autoaccel.vocab import FACTORS, SEARCH_ROLES, Role

Runner = IsolatedRunner | InProcessRunner
# However little of a budget is left, a trial may take this long before it is stopped.
MIN_TRIAL_S = 30.0
# How often a configuration enqueued here and taken by another worker is looked at until it is measured.
POLL_S = 1.0
# A search trial that trains (compressed or whole) is stopped past this many times the wall time of the baseline's
# trial.
SLOW_TRIAL = 3.0


@dataclass(frozen=True)
class Asked:
    """A trial asked of Optuna and built: what the measurement and its line on the terminal need."""

    trial: optuna.Trial
    n: int  # its place in the run's count of trials (0: not counted, a finish trial)
    quiet: bool  # a finish trial: one line of its own instead of a counted one
    config: dict[str, Any]
    plan: Pipeline
    goal: str
    role: str
    label: str


class Executor:
    def __init__(self, task: Task, options: Options, setup: Setup, plans: Plans, policy: Policy, outcomes: Outcomes,
                 team: Coordinator, progress: Progress, budget: Budget) -> None:
        self.task, self.options, self.setup, self.plans, self.policy = task, options, setup, plans, policy
        self.outcomes, self.team, self.progress, self.budget = outcomes, team, progress, budget
        self.objectives = outcomes.objectives
        self.fidelity = Fidelity()  # the share of the schedule search trials train (the search sets it at the start)
        # The share of the schedule serving trials serve the recipe's model from, once the ladder found where the
        # recipe has learned (None: the search's).
        self.serving_fraction: float | None = None
        self.threads = torch.get_num_threads()  # what a trial uses when this worker is alone on its host

    def one_trial(self, study: optuna.Study, runner: Runner, n: int, quiet: bool = False) -> int:
        """Run the next trial; return its number. A trial of a configuration measured before is reused, not run
        (its ``duplicate_of`` attribute says so)."""
        # Claim the trial for this process before sampling (which takes a while): a kill in between must still
        # leave a trial the next run recognises as interrupted.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage")  # ours beats from a thread (claims.py)
            trial = study.ask()
        self.team.heartbeat.hold(trial._trial_id)
        try:
            return self._asked(study, runner, trial, n, quiet)
        finally:
            self.team.heartbeat.drop(trial._trial_id)

    def run_fixed(self, study: optuna.Study, runner: Runner, config: dict[str, Any], role: str,
                  fraction: float | None = None, replica: int | None = None) -> optuna.trial.FrozenTrial | None:
        """Measure one given configuration as a trial of the study (an ablation variant, a combined answer, a
        promotion to another share of the schedule, a rung of the recipe's curve or a replica from another seed);
        a configuration already measured is reused. None when it failed."""
        ticket = uuid.uuid4().hex
        study.enqueue_trial({**self.setup.defaults, **config},
                            user_attrs=record.enqueued(role, fraction=fraction, replica=replica or None, ticket=ticket))
        # Optuna gives the oldest waiting trial: one that a killed process enqueued and never ran comes first (it
        # is run here: it is a trial somebody wanted), and another worker may take ours (then it is awaited).
        while (trial := self._ticketed(study, ticket)).state == TrialState.WAITING:
            self.one_trial(study, runner, 0, quiet=True)
        deadline = time.monotonic() + 2 * self.options.trial_timeout  # its worker may die: not awaited forever
        while not trial.state.is_finished() and time.monotonic() < deadline:
            time.sleep(POLL_S)
            trial = self._ticketed(study, ticket)
        if (twin := record.read(trial).duplicate_of) is not None:
            trial = study.get_trials(deepcopy=False)[twin]  # measured before: that one
        return trial if trial.state == TrialState.COMPLETE else None

    @staticmethod
    def _ticketed(study: optuna.Study, ticket: str) -> optuna.trial.FrozenTrial:
        return next(t for t in reversed(study.get_trials(deepcopy=False)) if t.user_attrs.get("ticket") == ticket)

    def _asked(self, study: optuna.Study, runner: Runner, trial: optuna.Trial, n: int, quiet: bool) -> int:
        record.write(trial, worker=me(), run=self.team.crew.run)
        queued = record.read(study.get_trials(deepcopy=False)[trial.number])  # what an enqueued trial fixed
        role = queued.role
        strategies, wanted = self.policy.sampling(role)
        params = suggest(trial, strategies, self.setup.space, self.options.mode, wanted)
        config, plan, missing = self.plans.build(params, study, queued.fraction, queued.replica or 0)
        goal = goal_of(config, self.setup.strategies, self.options.mode)
        if queued.fraction is None and self.serving_fraction is not None and goal == "serve":
            # Serving changes are judged on a model that has learned: the recipe's at the rung its curve flattened
            # (already trained by the ladder, so reused from the cache), not the search's near-chance one.
            config, plan, missing = self.plans.build(params, study, self.serving_fraction)
        fingerprint = plan.fingerprint()
        record.write(trial, config=config, goal=goal, fingerprint=fingerprint, fraction=plan.fraction,
                     math={"key": plan.math_key(), "tolerance": plan.speed_only_tolerance(),
                           "serves_exactly": plan.serves_exactly()})
        asked = Asked(trial, n, quiet, config, plan, goal, role, fmt_params(config, {}))
        if missing > 0 and role != Role.BASELINE:
            # Too early for this configuration (an ensemble before enough feasible models exist): nothing to
            # measure, and no trial of the user's budget is spent on it.
            self._not_run(study, asked, "infeasible", f"needs {missing} more feasible trained model(s) than the study has so far",
                          "not run yet: too few feasible trained models for it so far")
            return trial.number
        # Claim the configuration first, then look for an earlier measurement: a worker that measured it has
        # told its result before releasing its claim, so between them no configuration is measured twice.
        claim, holder = self.team.crew.holder("config", fingerprint, trial=trial.number)
        if holder.number != claim.number:
            # Another worker is measuring this configuration right now: its result will be reused, not repeated.
            self.team.crew.release(claim)
            busy = f"being measured by worker {who(holder.worker)} (trial {holder.attrs.get('trial')})"
            self._not_run(study, asked, "busy", busy, busy)
            return trial.number
        twin = studies.duplicate_of(study, fingerprint)
        if twin is not None and role != Role.BASELINE:
            self.team.crew.release(claim)
            self.outcomes.reuse(study, trial, twin)
            if not quiet:
                self.progress.reused(trial.number, twin.number)
            return trial.number
        try:
            return self._measure(study, runner, asked)
        finally:
            self.team.crew.release(claim)

    def _not_run(self, study: optuna.Study, asked: Asked, kind: str, reason: str, shown: str) -> None:
        """Record a trial that measures nothing and costs none of the run's trials."""
        record.write(asked.trial, not_run=True, failure_kind=kind, reason=f"{asked.label}: {reason}")
        study.tell(asked.trial, state=TrialState.FAIL)
        if not asked.quiet:
            self.progress.trial(asked.n, self.options.trials, asked.trial.number, asked.label, shown, "", counted=False)

    def _measure(self, study: optuna.Study, runner: Runner, asked: Asked) -> int:
        trial = asked.trial
        record.write(trial, plan=asked.plan.describe())
        runner.threads = self.team.crew.threads(self.threads)  # other workers on this host share the cores
        started = time.monotonic()
        cap = self._wall_cap(study, asked.goal, asked.role)
        timeout = runner.trial_timeout if isinstance(runner, IsolatedRunner) else None
        if isinstance(runner, IsolatedRunner):
            # No trial may outlast the whole budget (a compile that takes minutes on a CPU) nor its wall cap; it
            # fails as a timeout. This trial's only: the runner's own timeout is restored for what comes next (the
            # finish's re-measurement of several plans takes longer than one search trial).
            left = max(MIN_TRIAL_S, self.budget.end - started) if self.budget.end is not None else float("inf")
            runner.trial_timeout = min(self.options.trial_timeout, left, cap or float("inf"))
        try:
            result = runner.run(asked.plan, self.task.seed, self.options.timing_budget_s,
                                guards=self._guards(study, asked.goal, asked.role))
        except TrialFailure as failure:
            self._failed(study, asked, failure, started, cap)
            return trial.number
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP turned into Interrupted by the CLI
            self.outcomes.fail(study, trial, "interrupted", interrupt_reason(exc), started)
            raise
        finally:
            if isinstance(runner, IsolatedRunner):
                runner.trial_timeout = timeout
        if not self.outcomes.complete(study, trial, result, started):
            self.progress.info(f"  trial #{trial.number} was failed by another worker while this one was paused past its "
                               "heartbeat grace period: its result is dropped (the configuration was queued again)")
            return trial.number
        if not asked.quiet:
            self.progress.trial(asked.n, self.options.trials, trial.number, asked.label,
                                self._outcome(result, study, trial.number), self._best(study))
        return trial.number

    def _failed(self, study: optuna.Study, asked: Asked, failure: TrialFailure, started: float, cap: float | None) -> None:
        if failure.kind == "timeout" and cap is not None and time.monotonic() - started >= cap * 0.99:
            failure = TrialFailure(f"stopped after {cap:.0f} s of wall time, {SLOW_TRIAL:g}x your recipe's trial at the "
                                   "same share of the schedule: far slower steps, or one-off costs (compilation, "
                                   "start-up) a run this short cannot repay", kind=STOPPED, stage=failure.stage, where=failure.where,
                                   trace=failure.trace)
        # Name the technique and choice that failed, then the library's own words, on one line.
        culprit = culprits(self.setup.strategies, self.setup.base, asked.config, failure.stage)
        reason = f"{culprit}: {failure.reason}".splitlines()[0]
        self.outcomes.fail(study, asked.trial, failure.kind, reason, started, failure.where, failure.trace)
        # A run stopped because it could not win is the search economising, not a technique failing.
        outcome = ("[yellow]stopped early[/]" if failure.kind == STOPPED else f"[red]failed ({failure.kind})[/]") + f": {escape(reason)}"
        if asked.quiet:
            self.progress.info(f"  {escape(asked.role)} trial #{asked.trial.number} {escape(asked.label)} {outcome}")
        else:
            self.progress.trial(asked.n, self.options.trials, asked.trial.number, asked.label, outcome, "")
        if self.options.debug and failure.trace and failure.kind != STOPPED:
            self.progress.info(f"[dim]{escape(failure.trace.rstrip())}[/]")
        if asked.role == Role.BASELINE:
            # Where in the user's code; autoaccel's own checks (a metric that is not a number) say it in words.
            at = f" (at {failure.where})" if failure.where and not failure.where.startswith("autoaccel/") else ""
            raise AutoaccelError(f"the baseline (trial {asked.trial.number}, your own recipe) failed: {failure.reason}{at}") from None

    def _guards(self, study: optuna.Study, goal: str, role: str) -> Guards | None:
        """The early stops of a search trial that trains: the speed bar, and the baseline's loss curve (a run far
        above it at the same point of the schedule is diverging)."""
        if goal != "train" or role not in SEARCH_ROLES:
            return None
        base = studies.baseline_of(study)
        curve = tuple((float(step), float(loss)) for step, loss in ((base.details.get("fidelity") or {}).get("loss_curve") or [])) \
            if base else ()
        return Guards(self.speed_bar(study, goal, role), curve)

    def speed_bar(self, study: optuna.Study, goal: str, role: str) -> float | None:
        """The policy's speed bar for a trial of ``goal`` and ``role`` (see Policy.speed_bar)."""
        if not self.policy.has_speed_bar(goal, role):
            return None  # the study's records are not read for nothing
        return self.policy.speed_bar(studies.records(study), studies.baseline_of(study), goal, role)

    def _wall_cap(self, study: optuna.Study, goal: str, role: str) -> float | None:
        """Wall seconds a search trial that trains may take: SLOW_TRIAL times the baseline's trial. Its one-off costs
        (a torch.compile of a minute on a CPU) are not in its projected training time, yet they are the budget's,
        and a user whose whole training is a few minutes would pay them on every run; and a technique emulated
        step by step (fp16 on a CPU) must not hold the search until the trial timeout, compressed or whole."""
        if goal != "train" or role not in SEARCH_ROLES:
            return None
        base = studies.baseline_of(study)
        return max(MIN_TRIAL_S, SLOW_TRIAL * base.seconds) if base is not None and base.seconds else None

    def _outcome(self, result: TrialResult, study: optuna.Study, number: int) -> str:
        """The trial's line: every objective under the metric's own name, and how its quality was judged."""
        shown = Shown.of(result.details.get("metric"))
        text = "  ".join(f"{shown.name if o == 'accuracy' else o} {fmt_metric(o, result.metrics[o], shown)}" for o in self.objectives)
        done = record.read(study.get_trials(deepcopy=False)[number])
        quality = done.details.get("quality") or {}
        if quality.get("sanity") == "passed":
            text += f"  (speed only: {shown.name} of trial {quality['from']}, its loss within {quality['loss_gap']:.0%})"
        elif quality.get("sanity") == "failed":
            text += f"  [yellow](speed only, but its loss drifted {quality['loss_gap']:.0%} from trial {quality['against']}'s)[/]"
        rung = done.details.get("rung") or {}  # how the outcomes judged it (outcomes.py)
        # An exact serving change is judged at any rung (finish/_summary.judge): no "not judged" for it.
        if not serves_exactly(done) and quality.get("sanity") != "passed" and rung.get("informative") is False and rung.get("recipe_value") is not None:
            # No verdict where the recipe has not learned yet: ranked, never ruled out on quality (trial/_curve.py).
            return text + (f"  (quality not judged at {share(rung['fraction'])}: your recipe reaches "
                           f"{shown.fmt(rung['recipe_value'])} there)")
        return text + ("" if done.feasible else f"  [yellow]({shown.drop_word} over budget)[/]")

    def _best(self, study: optuna.Study) -> str:
        """The best feasible candidate so far per goal, on that goal's own metrics (single measurements)."""
        try:
            summary = summarize_study(study, self.objectives, studies.max_drop(study, self.options))
        except ValueError:
            return ""
        parts = []
        for goal in FACTORS:
            metrics = judging(goal, self.objectives)
            mine = [p for p in summary.points if p.goal == goal and p.feasible and metrics]
            best = max(mine, key=lambda p: goal_score(p, metrics), default=None)
            if best is not None and goal_score(best, metrics) > 1.0:
                parts.append(f"{goal} {goal_score(best, metrics):.2f}x (trial {best.trial})")
        return f"  | best so far: {', '.join(parts) if parts else 'your recipe'}"
