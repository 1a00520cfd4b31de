"""Several workers on one study: `autoaccel optimize ... --storage URL --study NAME` started on N hosts (or N
times on one) shares the work.

- Liveness is Optuna's heartbeat (RDB storages): each worker beats, from a thread, for every trial it holds
  (Optuna beats only inside ``study.optimize``; the search asks and tells). Before each trial a worker runs
  ``optuna.storages.fail_stale_trials``: a trial whose worker stopped beating (killed, host gone) is failed by
  whoever notices first, and :class:`RetryStale` queues its configuration once more, for any worker to take.
- Coordination uses a companion study, ``<study>:workers``, whose trials are *claims*: a worker's registration
  (kind ``worker``), a configuration being measured right now (kind ``config``, keyed by the plan's
  fingerprint), the finish (kind ``finish``). A claim is a RUNNING trial held by its worker's heartbeat and
  completed when released. Optuna numbers a study's trials under a row lock (PostgreSQL, SQLite) or in the
  journal's order, so "the lowest-numbered live claim of a key wins" is atomic without anything but Optuna.
- A run: workers that overlap in time form one run (the first one's registration number); a ``--trials N``
  budget and the deadline are the run's, not each worker's.
"""

from __future__ import annotations

import datetime
import os
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from autoaccel.search._study import HOST, fail_interrupted, grace_period
from autoaccel.trial import record

COMPANION = "{study}:workers"


def companion_name(study_name: str) -> str:
    return COMPANION.format(study=study_name)


def is_companion(name: str) -> bool:
    return name.endswith(COMPANION.format(study=""))


def me() -> dict[str, Any]:
    return {"host": HOST, "pid": os.getpid()}


def who(worker: Mapping[str, Any] | None) -> str:
    return f"{worker.get('host')}:{worker.get('pid')}" if worker else "an unknown worker"


class Heartbeat:
    """Optuna heartbeats for the trials (search trials and claims) this process holds, every ``interval`` s."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.storage = storage
        self.enabled = is_heartbeat_enabled(storage)
        self.interval = float(storage.get_heartbeat_interval() or 0) if self.enabled else 0.0  # type: ignore[attr-defined]
        self.held: dict[tuple[int, int], tuple[optuna.storages.BaseStorage, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._beat, name="autoaccel-heartbeat", daemon=True)
            self._thread.start()

    def hold(self, trial_id: int, storage: optuna.storages.BaseStorage | None = None) -> None:
        """Beat for ``trial_id`` (of ``storage``, the study's by default) until dropped."""
        where = storage or self.storage
        with self._lock:
            self.held[(id(where), trial_id)] = (where, trial_id)
        self._record(where, trial_id)  # at once: a trial must never look stale between its creation and first beat

    def drop(self, trial_id: int, storage: optuna.storages.BaseStorage | None = None) -> None:
        with self._lock:
            self.held.pop((id(storage or self.storage), trial_id), None)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @staticmethod
    def _record(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        if not is_heartbeat_enabled(storage):
            return
        try:
            storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again, well within the grace period
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self.held.values())
            for storage, trial_id in held:
                self._record(storage, trial_id)


class RetryStale:
    """What happens to a trial whose worker died: it is failed with the reason, then its configuration is queued
    once more (a retry is not retried: a configuration that kills its worker twice is not worth a third). Like
    Optuna's fail_stale_trials with RetryHeartbeatStaleTrialCallback(max_retry=1), except that the reason is
    written before the trial is failed (Optuna refuses to change a finished trial) and the retry is queued with
    every setting fixed (the configuration, not the sampler's raw parameters), keeping the trial's role."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.retried: list[int] = []  # trials this process failed and queued again (for its progress line)

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail the trials of ``study`` whose last heartbeat is older than the grace period, and retry them."""
        storage = study._storage
        if not is_heartbeat_enabled(storage):
            return
        after = grace_period(int(storage.get_heartbeat_interval() or 0))  # type: ignore[attr-defined]
        for trial_id in storage._get_stale_trial_ids(study._study_id):  # type: ignore[attr-defined]
            trial = storage.get_trial(trial_id)
            try:
                if "claim" not in trial.user_attrs:
                    reason = f"interrupted: worker {who(trial.user_attrs.get('worker'))} sent no heartbeat for {after} s"
                    record.write_stored(storage, trial_id, reason=reason, failure_kind="interrupted")
                # Whoever fails it first retries it (the state change is one locked row update).
                if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # failed by another worker a moment ago
            if "claim" not in trial.user_attrs:
                self.requeue(study, storage.get_trial(trial_id))

    def requeue(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue the configuration of ``trial`` (failed because its worker died) once more."""
        stale = record.read(trial)
        if stale.retry_of is not None or stale.config is None or stale.duplicate_of is not None or stale.not_run:
            return
        if stale.role == "baseline":
            return  # the user's recipe is queued again by whichever worker finds none (study.ensure_baseline)
        study.enqueue_trial({**self.defaults, **stale.config}, user_attrs=record.enqueued(stale.role, retry_of=trial.number))
        self.retried.append(trial.number)


@dataclass(frozen=True)
class Claim:
    number: int
    trial_id: int
    kind: str
    key: str
    worker: dict[str, Any]
    attrs: dict[str, Any]

    @classmethod
    def of(cls, t: FrozenTrial) -> "Claim":
        a = t.user_attrs
        return cls(t.number, t._trial_id, a["claim"], a["key"], dict(a.get("worker") or {}), dict(a.get("attrs") or {}))

    @property
    def mine(self) -> bool:
        return self.worker == me()


class Workers:
    """This worker's view of the others on one study (see the module's docstring)."""

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, heartbeat: Heartbeat) -> None:
        """``storage``: where the claims live: the study's own storage when workers share it (--storage), or a
        file beside a run's own study (OUT/workers.db), so OUT/study.db holds exactly one study."""
        self.storage, self.heartbeat = storage, heartbeat
        name = companion_name(study_name)
        try:
            self.study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
        except optuna.exceptions.DuplicatedStudyError:  # created by another worker between the check and ours
            self.study = optuna.load_study(study_name=name, storage=storage)
        self.registration: Claim | None = None

    def clean(self) -> None:
        """Fail the claims of dead workers: no heartbeat within the grace period, or a dead process on this host."""
        RetryStale({}).fail_stale(self.study)
        fail_interrupted(self.study, self.storage)

    def claim(self, kind: str, key: str, **attrs: Any) -> Claim:
        template = optuna.trial.create_trial(state=TrialState.RUNNING,
                                             user_attrs={"claim": kind, "key": key, "worker": me(), "attrs": attrs})
        trial_id = self.storage.create_new_trial(self.study._study_id, template_trial=template)
        self.heartbeat.hold(trial_id, self.storage)
        return Claim.of(self.storage.get_trial(trial_id))

    def release(self, claim: Claim) -> None:
        self.heartbeat.drop(claim.trial_id, self.storage)
        try:
            self.storage.set_trial_state_values(claim.trial_id, TrialState.COMPLETE, [0.0])
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed as stale by another worker meanwhile (a long pause): it is released either way

    def live(self, kind: str, key: str | None = None) -> list[Claim]:
        """The live claims of ``kind`` (and ``key``), oldest first: the first one holds it."""
        trials = self.storage.get_all_trials(self.study._study_id, deepcopy=False, states=(TrialState.RUNNING,))
        claims = [Claim.of(t) for t in trials if "claim" in t.user_attrs]
        return sorted((c for c in claims if c.kind == kind and (key is None or c.key == key)), key=lambda c: c.number)

    def holder(self, kind: str, key: str, **attrs: Any) -> tuple[Claim, Claim]:
        """Claim ``key``; return (this worker's claim, the holder): the holder is the oldest live claim."""
        mine = self.claim(kind, key, **attrs)
        holders = self.live(kind, key)
        return mine, (holders[0] if holders else mine)

    def register(self, seed: int, deadline: float | None, budget_end: float | None) -> Claim:
        """Join (or found) the run of the workers live now. ``deadline`` (no trial starts after it) and
        ``budget_end`` (the whole run's end) are wall-clock times (time.time()); a joiner adopts the founder's."""
        self.clean()
        mine = self.claim("worker", "search", seed=seed, deadline=deadline, budget_end=budget_end,
                          started=datetime.datetime.now().isoformat(timespec="seconds"))
        # The run is the oldest live worker's (it may be this one): claims are numbered atomically, so workers
        # that start together agree on it.
        first = self.live("worker")[0]
        run = first.attrs.get("run") or first.number
        mine = Claim(mine.number, mine.trial_id, mine.kind, mine.key, mine.worker, {**mine.attrs, "run": run})
        self.storage.set_trial_user_attr(mine.trial_id, "attrs", mine.attrs)
        self.registration = mine
        return mine

    def clean_and_list(self) -> list[Claim]:
        """The workers searching this study now (dead ones' claims failed first)."""
        self.clean()
        return self.live("worker")


    def leave(self) -> None:
        """This worker has stopped searching (it may still finish the study)."""
        if self.registration is not None:
            self.release(self.registration)

    def release_all(self) -> None:
        """Release every claim this worker still holds (the finish, at its end)."""
        for claim in [c for kind in ("finish", "config", "worker") for c in self.live(kind) if c.mine]:
            self.release(claim)

    @property
    def run(self) -> int | None:
        return None if self.registration is None else int(self.registration.attrs["run"])

    def founder(self) -> Claim | None:
        """The oldest live worker of this run other than this one (its deadline is the run's)."""
        return next((c for c in self.live("worker") if c.attrs.get("run") == self.run and not c.mine), None)

    def threads(self, mine: int) -> int | None:
        """Torch threads for this worker's next trial: its share of the ``mine`` threads it would use alone, when
        other workers of the study search on this host (oversubscribed cores spin-wait: on 2 cores two workers
        of 2 threads each trained 10x slower); None when it is alone here."""
        here = [c for c in self.live("worker") if c.worker.get("host") == HOST]
        return max(1, mine // len(here)) if len(here) > 1 else None

    def others(self) -> list[Claim]:
        """Workers still searching, this one left out."""
        self.clean()
        return [c for c in self.live("worker") if not c.mine]


def worker_seed(seed: int, others: int) -> int:
    """The sampler's seed: the user's when this worker is alone (a single run stays reproducible); else offset by
    the worker's identity, so workers do not propose the same configurations in lockstep."""
    return seed if others == 0 else seed + zlib.crc32(f"{HOST}:{os.getpid()}".encode()) % 1_000_003
