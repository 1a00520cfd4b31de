"""Optuna study plumbing: storage, samplers, the baseline trial, and recovery of interrupted trials."""

from __future__ import annotations

import contextlib
import datetime
import random
import socket
import sqlite3
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from autoaccel.errors import AutoaccelError
from autoaccel.options import Options, mask_url
from autoaccel.pids import alive
from autoaccel.plugin._space import Param
from autoaccel.trial import record
from autoaccel.vocab import METRICS

optuna.logging.set_verbosity(optuna.logging.WARNING)

HOST = socket.gethostname()
UNCLAIMED_S = 60.0


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid, minus its ``study.stop()`` on exhaustion: that only works inside ``study.optimize``, and
    our ask/tell loop already ends a search whose sampler keeps proposing measured configurations."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        return None


def make_sampler(name: str, seed: int, space: Mapping[str, Param], shared: bool = False) -> optuna.samplers.BaseSampler:
    """The sampler; ``shared``: other workers search the same study (TPE then treats their running trials as
    already measured, badly: Optuna's constant liar, so workers do not all propose the same configuration)."""
    if name == "tpe":
        # Few trials: start modelling early; multivariate TPE captures interactions (batch size x LR).
        # Feasibility reaches TPE and NSGA-II through trial.set_constraint (see Search._complete).
        # group=True: the space is conditional (define-by-run), and each trial varies one factor; TPE then models
        # each group of parameters that appear together instead of falling back to independent sampling.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True, group=True,
                                              constant_liar=shared)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return GridSampler({k: p.grid_values() for k, p in space.items()}, seed=seed)


# Optuna's heartbeat, for storages that keep one (RDB): a worker records one every HEARTBEAT_S seconds for each
# trial it holds (workers.Heartbeat), and another fails a trial whose last one is older than grace_period(...).
HEARTBEAT_S = 10
# Errors of two processes creating the same schema at the same moment (SQLite, PostgreSQL): the loser retries
# once the winner's tables exist.
_CREATE_RACE = ("already exists", "unique constraint", "duplicate key", "database is locked", "integrityerror")
CREATE_TRIES = 8


def grace_period(heartbeat_s: int) -> int:
    """Seconds without a heartbeat after which a worker's trial counts as abandoned: three missed beats, so a
    busy database or a paused machine does not fail a live worker's trial."""
    return 3 * heartbeat_s


def journal_path(url: str) -> str | None:
    """The file of a ``journal:///path/to/study.log`` URL (Optuna's JournalStorage over a shared file)."""
    return url[len("journal://"):] if url.startswith("journal://") else None


def open_storage(url: str, heartbeat_s: int | None = None) -> optuna.storages.BaseStorage:
    """Open an Optuna storage: an RDB URL (SQLite, PostgreSQL, MySQL) or ``journal:///path`` (a file shared by the
    workers, no database server). A password may be in the URL, or (PostgreSQL) in PGPASSWORD or ~/.pgpass, which
    libpq reads itself when the URL has none; it never appears in a message or an output.

    Any number of workers may open a fresh database at the same moment: the one whose schema creation collides
    with another's retries. With ``heartbeat_s``, trials held by a worker that stops beating are failed by the
    others and retried (see workers.py)."""
    if (path := journal_path(url)) is not None:
        return _open_journal(path)
    kwargs: dict[str, Any] = {}
    if heartbeat_s is not None:
        kwargs = {"heartbeat_interval": heartbeat_s, "grace_period": grace_period(heartbeat_s)}
    # SQLite: wait for another worker's write instead of failing at once (its default is 5 s).
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    for attempt in range(CREATE_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many kinds; the user needs one line
            if attempt + 1 < CREATE_TRIES and any(m in f"{type(exc).__name__} {exc}".lower() for m in _CREATE_RACE):
                time.sleep(0.05 + random.random() * 0.2 * (attempt + 1))
                continue
            detail = str(exc).splitlines()[0] if str(exc) else ""
            password = _password(url)
            if password:
                detail = detail.replace(password, "***")
            raise AutoaccelError(f"--storage: cannot open '{mask_url(url)}': {type(exc).__name__}: {detail}") from exc
    raise AssertionError("unreachable")


def _open_journal(path: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    except OSError as exc:
        raise AutoaccelError(f"--storage: cannot open the journal file '{path}' ({exc.strerror or exc}); "
                             "expected journal:///path/to/study.log on a folder every worker can write") from exc


@contextlib.contextmanager
def readable(url: str) -> Iterator[None]:
    """Turn a storage that opens but cannot be read or written as an Optuna study (a damaged database, another
    program's tables, a full disk) into one line naming it."""
    try:
        yield
    except (SQLAlchemyError, sqlite3.Error, optuna.exceptions.StorageInternalError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise AutoaccelError(f"--storage: cannot read or write the Optuna study in '{mask_url(url)}' "
                             f"({type(exc).__name__}: {detail}); completed trials are kept where the storage still "
                             "holds them: free space or move a damaged file aside, or pass another --storage / --out") from exc


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # noqa: BLE001
        return None


def open_study(storage: optuna.storages.BaseStorage, name: str, objectives: Sequence[str],
               sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create the study or continue it; an existing study with other objectives is refused, not altered."""
    directions: list[Literal["minimize", "maximize"]] = ["maximize" if METRICS[o] else "minimize" for o in objectives]
    try:
        existing = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        try:
            study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler)
        except optuna.exceptions.DuplicatedStudyError:
            # Another worker created it a moment ago: join it.
            return open_study(storage, name, objectives, sampler)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(objectives))  # shown by optuna-dashboard
        study.set_user_attr("objectives", list(objectives))
        return study
    stored = existing.user_attrs.get("objectives")
    if stored is None and [d.name.lower() for d in existing.directions] == directions:
        # Created by a worker that has not stored its objectives yet (they started together): the same ones.
        existing.set_user_attr("objectives", list(objectives))
        stored = list(objectives)
    if stored != list(objectives):
        raise AutoaccelError(
            f"--objectives: study '{name}' was created with objectives {','.join(stored or ['?'])}, but got "
            f"{','.join(objectives)}; use the same --objectives to continue it, or --study NEW for a new one"
        )
    return existing



def fail_interrupted(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Mark RUNNING trials of dead processes on this host as failed, so a re-run resumes cleanly.

    Trials of live processes, or of other hosts sharing the storage, are left alone: they may still be working.
    A trial that never got its owner recorded (killed within milliseconds of its creation) is stale once it is
    older than UNCLAIMED_S: a live process claims its trial right after creating it.
    """
    failed = []
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = record.read(t).worker or {}
        unclaimed = not worker and t.datetime_start is not None and (now - t.datetime_start).total_seconds() > UNCLAIMED_S
        if unclaimed or (worker.get("host") == HOST and not alive(int(worker.get("pid", -1)))):
            owner = f"process {worker['pid']}" if worker else "its process"
            record.write_stored(storage, t._trial_id, reason=f"interrupted: {owner} ended mid-trial")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            failed.append(t.number)
    return failed


def baseline_of(study: optuna.Study) -> record.TrialRecord | None:
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if (r := record.read(t)).role == "baseline":
            return r
    return None


def ensure_baseline(study: optuna.Study, defaults: Mapping[str, Any]) -> None:
    """Queue trial 0, the user's own recipe, unless it is done or already waiting."""
    # Not enqueue_trial(skip_if_exists=True): it matches params in any state, so an interrupted (failed) baseline,
    # or a candidate that happens to use the defaults, would keep the baseline from ever being queued again.
    if baseline_of(study) is not None:
        return
    # Waiting, or being measured by another worker right now.
    pending = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    if any(record.read(t).role == "baseline" for t in pending):
        return
    study.enqueue_trial(dict(defaults), user_attrs=record.enqueued("baseline"))


# Failures that would happen again with the same configuration; a timeout may be the machine's fault once.
REPEATABLE = ("error", "oom", "unsupported", "diverged", "infeasible", "crash", "too_slow")


# Records of finished trials, per study: a finished trial never changes (Optuna refuses updates to it), so each
# is read once, not once per question about the study (the search asks many per trial; a long study has hundreds).
_FINISHED: weakref.WeakKeyDictionary[optuna.Study, dict[int, record.TrialRecord]] = weakref.WeakKeyDictionary()


def finished(study: optuna.Study) -> list[record.TrialRecord]:
    """The records of the study's completed and failed trials, in trial order."""
    known = _FINISHED.setdefault(study, {})
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if t.number not in known:
            known[t.number] = record.read(t)
    return [known[n] for n in sorted(known)]


def duplicate_of(study: optuna.Study, fingerprint: str) -> record.TrialRecord | None:
    """A completed trial of the same plan (however its parameters were spelled): its measurements are reused.
    Or a failed one whose failure would repeat: it is not run again; a timeout (maybe the machine's fault) is
    retried once."""
    done = [r for r in finished(study) if r.fingerprint == fingerprint and r.duplicate_of is None]
    timeouts = [t for t in done if t.failure_kind == "timeout"]
    for t in done:
        if t.state == TrialState.COMPLETE or t.failure_kind in REPEATABLE:
            return t
    return timeouts[-1] if len(timeouts) >= 2 else None


def records(study: optuna.Study) -> list[record.TrialRecord]:
    """Every trial's record, in trial order (finished trials are read once: see ``finished``)."""
    done = {r.number: r for r in finished(study)}
    return [done.get(t.number) or record.read(t) for t in study.get_trials(deepcopy=False)]


def max_drop(study: optuna.Study, options: Options, baseline_value: float | None = None) -> float:
    """The quality budget in the metric's own units: as given, or the given fraction of the baseline's value
    (0 until the baseline is measured)."""
    value, relative = options.drop_spec()
    if not relative:
        return value
    if baseline_value is None:
        base = baseline_of(study)
        baseline_value = base.metrics["accuracy"] if base is not None else 0.0
    return value * abs(baseline_value)
