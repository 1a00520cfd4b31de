"""A worker's part in a run shared with other workers of the same study (see claims.py): joining the run,
the run's trial budget, waiting for the user's recipe another worker measures, failing and retrying the trials
of workers that died, and deciding which worker finishes. A single worker goes through the same steps alone."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState
from rich.markup import escape

from autoaccel.errors import AutoaccelError
from autoaccel.options import Options
from autoaccel.outputs import Progress
from autoaccel.search import _study as studies
from autoaccel.search._budget import Budget
from autoaccel.search._setup import Setup
from autoaccel.search.team._claims import Heartbeat, RetryStale, Workers, who, worker_seed
from autoaccel.task import Task
from autoaccel.trial import InProcessRunner, IsolatedRunner, record


class Coordinator:
    """This worker's part in the run: its claims and heartbeats, the run's shared trial budget and deadline, and
    whether it finishes the run. Knows the study and the team, not how a trial runs."""

    def __init__(self, task: Task, options: Options, setup: Setup, progress: Progress, study_name: str) -> None:
        self.task, self.options, self.setup, self.progress, self.study_name = task, options, setup, progress, study_name
        self.retry = RetryStale(setup.defaults)
        self.finished_by: str | None = None  # another worker that writes the answer (None: this one, or nobody)

    def attach(self, study: optuna.Study, claims: optuna.storages.BaseStorage | None = None) -> None:
        """Take part in ``study`` as one of its workers (heartbeats, claims in ``claims``, by default the study's
        storage; see claims.py). ``Search.run`` does this; code that drives ``Search.next_trial`` itself (the
        replay benchmark) calls ``Search.attach`` first."""
        self.heartbeat = Heartbeat(study._storage)
        self.crew = Workers(claims or study._storage, study.study_name, self.heartbeat)

    def join(self, study: optuna.Study, budget: Budget) -> None:
        """Register this worker; join the run of the workers live now (their deadline and budget replace
        ``budget``'s, a seed of its own, a sampler that sees their running trials), and queue the user's recipe
        unless it is done or under way."""
        others = self.crew.clean_and_list()
        seed = worker_seed(self.options.seed, len(others))
        if others or self.options.storage is not None:
            study.sampler = studies.make_sampler(self.options.sampler, seed, self.setup.space, shared=True)

        def wall(t: float | None) -> float | None:  # a monotonic deadline as wall-clock time other hosts can read
            return None if t is None else time.time() + (t - time.monotonic())

        me = self.crew.register(seed, wall(budget.deadline), wall(budget.end))
        founder = self.crew.founder()
        if founder is not None:
            # The run's deadline is its first worker's: a worker started later helps finish the same run.
            if (theirs := founder.attrs.get("deadline")) is not None:
                budget.deadline = time.monotonic() + (theirs - time.time())
                budget.why = f"the run's deadline (set by worker {who(founder.worker)}) reached"
            if (end := founder.attrs.get("budget_end")) is not None:
                budget.end = time.monotonic() + (end - time.time())
            self.progress.info(escape(f"worker {who(me.worker)} joins {len(others)} other worker(s) on study '{self.study_name}' "
                                      f"(sampler seed {seed}); the run's trial budget and deadline are shared"))
        if self.options.storage is not None and self.options.cache_dir is None:
            self.progress.info(escape(f"trained checkpoints are kept in {self.options.checkpoints(self.task.name)} on this host only; "
                                      "--cache-dir PATH on a folder every host shares lets workers reuse each other's training"))
        self._queue_baseline(study)

    def _queue_baseline(self, study: optuna.Study) -> None:
        """Queue the user's recipe unless it is measured or under way; one worker at a time checks and queues it,
        so it is never queued twice."""
        mine, holder = self.crew.holder("baseline", "queue")
        if holder.number == mine.number:
            studies.ensure_baseline(study, self.setup.defaults)
        self.crew.release(mine)

    def used(self, study: optuna.Study) -> int:
        """Trials of this run's trial budget so far (every worker's; running ones included): a configuration
        reused from an earlier measurement, or not run, costs nothing; nor does the recipe's ladder (search/_ladder.py),
        which is the budget's time, not a candidate."""
        run = self.crew.run
        return sum(1 for r in studies.records(study) if r.run == run and r.duplicate_of is None and not r.not_run
                   and r.role != "rung"
                   and r.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING))

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail the trials of workers that stopped sending heartbeats (their configurations are queued again)."""
        self.retry.retried.clear()
        self.retry.fail_stale(study)
        self.crew.clean()
        if self.retry.retried:
            self.progress.info(f"trial(s) {self.retry.retried} failed: their worker stopped sending heartbeats; queued again")

    def baseline_ready(self, study: optuna.Study) -> bool:
        """Whether the next trial can start: the user's recipe is measured, or waiting for this worker to take it.
        While another worker measures it, wait: every other trial is judged against it."""
        if studies.baseline_of(study) is not None:
            return True
        trials = [(t, record.read(t)) for t in study.get_trials(deepcopy=False)]
        base = [(t, r) for t, r in trials if r.role == "baseline"]
        if any(t.state == TrialState.WAITING for t, _ in base):
            return True
        if any(t.state == TrialState.RUNNING for t, _ in base):
            time.sleep(min(2.0, self.options.heartbeat))
            return False
        failed = [r for _, r in base if r.failure_kind not in (None, "interrupted", "busy")]
        if failed:
            raise AutoaccelError(f"the baseline (trial {failed[-1].number}, your own recipe) failed on worker "
                                 f"{who(failed[-1].worker)}: {failed[-1].reason}")
        self._queue_baseline(study)
        return True

    def settle(self, study: optuna.Study, runner: IsolatedRunner | InProcessRunner) -> None:
        """Before the finish, with no other worker searching: trials left running by workers that died are failed
        once their heartbeats are overdue and their retries run; proposals no worker took are dropped, so the
        finish's own queued trials are the ones it asks for. The retries still queued are the caller's to run."""
        runner.threads = None  # alone now: the finish measures with every core this worker would use
        interval = self.heartbeat.interval
        until = time.monotonic() + (studies.grace_period(int(interval)) + 2 * interval if interval else 0.0)
        while time.monotonic() < until:
            self.fail_stale(study)
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                break
            time.sleep(min(1.0, interval))
        if left := study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.progress.info(f"trial(s) {[t.number for t in left]} are still marked running with no live worker "
                               "(this storage keeps no heartbeat): left as they are")
        # A dead worker's trial is measured again even when the budget is spent (its slot was paid for); proposals
        # still queued are dropped, so the finish's own queued trials are the ones it gets.
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if record.read(t).retry_of is None:
                record.write_stored(study._storage, t._trial_id, not_run=True, failure_kind="busy",
                                    reason="queued, not run: the run's trial budget was spent")
                study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def finishing(self, study: optuna.Study) -> bool:
        """Whether this worker re-measures the finalists and writes the answer: the last one searching does, and
        one only (the oldest claim on the finish wins). The others say who does, and exit."""
        self.crew.leave()
        if others := self.crew.others():
            self.finished_by = who(others[-1].worker)
            self.progress.info(escape(f"this worker's trials are in study '{self.study_name}'; {len(others)} other worker(s) are still "
                                      f"searching (latest {self.finished_by}): the last to finish re-measures the finalists and "
                                      "writes the answer"))
            return False
        mine, holder = self.crew.holder("finish", "answer")
        if holder.number != mine.number:
            self.crew.release(mine)
            self.finished_by = who(holder.worker)
            self.progress.info(escape(f"worker {self.finished_by} is re-measuring the finalists and writing the answer of study "
                                      f"'{self.study_name}'"))
            return False
        return True
