"""Trial isolation: trials run in a worker process that is replaced when it dies.

A Python exception, a native crash (abort, segfault), an out-of-memory kill and a hang past the trial timeout
each become a TrialFailure with its reason; the search process itself never runs user code during a trial.
The worker is long-lived (torch and the task are imported once), so isolation costs little per trial, and it is
forked from a fork server that has imported torch already (fork_server.py), so replacing one costs little too.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cloudpickle
import torch

from autoaccel.errors import TrialFailure, describe
from autoaccel.fork_server import context
from autoaccel.plugin._contexts import Guards
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import Task
from autoaccel.trial._export import export_model
from autoaccel.trial._launch import by_value
from autoaccel.trial._remeasure import TRAIN_SAMPLES
from autoaccel.trial._run import Timings, TrialResult, probe, remeasure_plans, run_trial, warm_up
from autoaccel.trial._where import from_dump, located

# How long a hung worker is given to write its stack (faulthandler, on SIGUSR1) before it is killed.
DUMP_WAIT_S = 2.0


@dataclass(frozen=True)
class TaskSource:
    """How a worker gets the task: re-import the user's file, or unpickle an in-memory Task."""

    path: str | None = None
    blob: bytes | None = None
    val_share: float = 1.0  # of the file's validation set (--val-fraction); a pickled Task carries its own cut

    @classmethod
    def of(cls, task: Task, path: str | Path | None, val_share: float = 1.0) -> "TaskSource":
        if path is not None:
            return cls(path=str(path), val_share=val_share)
        by_value(task)  # the user's script or notebook: the worker cannot import it by name
        return cls(blob=cloudpickle.dumps(task))

    def load(self) -> Task:
        if self.path is not None:
            from autoaccel.task import bound, load_task

            return bound(load_task(self.path, validate=False), self.val_share)
        assert self.blob is not None
        return cloudpickle.loads(self.blob)


def _die_with_parent(alive: Connection) -> None:
    """Kill this worker's whole process group once the search process is gone (killed with -9, say): nothing a
    trial started (DataLoader workers, a model's own forks) may outlive the study.

    ``alive`` is the reading end of a pipe whose only writer is the search process: nothing is ever sent, so the
    read returns (EOF) when that process ends, however it ends. (Watching the parent's pid is not enough: a forked
    worker's parent is the fork server, which stays while any worker it forked lives.)"""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            alive.recv()
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="autoaccel-watchdog", daemon=True).start()


def _serve(conn: Connection, alive: Connection, source: TaskSource, env: dict[str, str], dump: str) -> None:
    """The worker's loop: load the task once, then run each plan it is sent and send back the outcome."""
    # A forked worker inherits the fork server's environment, set when the server started (an earlier run's, in a
    # notebook): take the search process's as it is now (its run's TMPDIR, the user's variables), as a spawned
    # worker would, and let tempfile find the temp dir again.
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None
    # A process group of its own: everything a trial starts can be killed with it, at a timeout or when the
    # search process dies. (Ctrl-C then reaches the search process only, which decides what it means.)
    os.setpgrp()
    _die_with_parent(alive)
    # Its stack goes to ``dump`` on a native crash, and on SIGUSR1 (sent when it hangs past the trial timeout):
    # the parent reads where it was from there. Appended to: the parent reads what a call added.
    stacks = open(dump, "a")  # noqa: SIM115 - open for the worker's life, closed by its exit
    faulthandler.enable(stacks, all_threads=True)
    faulthandler.register(signal.SIGUSR1, stacks, all_threads=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A spawned child inherits "spawn" as its start method, so the trial's DataLoader workers would be spawned
    # too (torch re-imported every epoch: 6 s became 28 s for num_workers=1 on digits). The user's own script
    # forks them on Linux; measure what they will get.
    if sys.platform.startswith("linux"):
        mp.set_start_method("fork", force=True)
    # Warnings of the model and libraries belong in each trial's record (run_trial collects them), never on
    # the user's terminal; outside a trial (loading, warm-up, export) they are dropped.
    warnings.simplefilter("ignore")
    task = source.load()
    warm_up(task)
    threads = torch.get_num_threads()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        kind, kwargs = cloudpickle.loads(message)
        # The share of the cores this trial may use (other workers of the study on this host use the rest).
        torch.set_num_threads(kwargs.pop("threads", None) or threads)
        try:
            outcome: tuple[Any, ...] = ("ok", JOBS[kind](task, **kwargs))
        except TrialFailure as exc:
            where, trace = (exc.where, exc.trace) if exc.where else located(exc)
            outcome = ("fail", exc.kind, exc.reason, exc.stage, where, trace)
        except BaseException as exc:  # noqa: BLE001 - report, never die silently
            outcome = ("fail", "error", describe(exc), "", *located(exc))
        conn.send(outcome)


# Each job is called as job(task, **kwargs) with the keyword arguments its message carries.
JOBS: dict[str, Callable[..., Any]] = {"trial": run_trial, "remeasure": remeasure_plans, "export": export_model, "probe": probe}


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start a spawned worker without re-running the caller's ``__main__``.

    multiprocessing's spawn re-executes the main script in the child so that pickles can refer to it. The worker
    needs nothing from it (the task arrives by path, or pickled by value), and a script that calls
    ``autoaccel.optimize`` at top level, without an ``if __name__ == "__main__":`` guard, would otherwise start
    a search inside the worker and fail. Hiding the script's path while the child is prepared skips that.
    """
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if main is not None and hasattr(main, name)}
    try:
        if "__spec__" in saved:
            main.__spec__ = None  # type: ignore[union-attr]
        if "__file__" in saved:
            del main.__file__  # type: ignore[union-attr]
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _describe_exit(code: int | None) -> tuple[str, str]:
    if code is None:
        return "crash", "worker process stopped answering"
    if code < 0:
        sig = signal.Signals(-code)
        if sig == signal.SIGKILL:
            return "oom", "worker process was killed (SIGKILL), most likely by the host running out of memory"
        return "crash", f"worker process died of signal {sig.name} (native crash in the model or a library)"
    return "crash", f"worker process exited with status {code}"


class IsolatedRunner:
    """Runs plans in a spawned worker; ``run`` raises TrialFailure for every way a trial can go wrong."""

    def __init__(self, source: TaskSource, trial_timeout: float | None, cache_dir: str | None = None,
                 startup_timeout: float = 300.0) -> None:
        self.source = source
        self.cache_dir = cache_dir
        self.trial_timeout = trial_timeout
        self.startup_timeout = startup_timeout
        self.ctx = context()
        self.proc: Any = None
        self.conn: Connection | None = None
        self.alive: Connection | None = None
        # Where the worker writes its stack when it crashes or hangs (one file for the runner's workers).
        fd, self.dump = tempfile.mkstemp(prefix="autoaccel-stacks-", suffix=".txt")
        os.close(fd)
        weakref.finalize(self, _remove, self.dump)
        self.threads: int | None = None  # torch threads per trial (None: the worker's own default)

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        # The worker's watchdog reads ``watched``; this process keeps the only writer, ``self.alive``, open until the
        # worker is reaped (see _die_with_parent).
        watched, self.alive = self.ctx.Pipe(duplex=False)
        # Not a daemon: the trial's DataLoader must be free to start worker processes of its own.
        self.proc = self.ctx.Process(target=_serve, args=(child, watched, self.source, dict(os.environ), self.dump), daemon=False,
                                     name="autoaccel-trial")
        with _main_not_rerun():
            self.proc.start()
        child.close()
        watched.close()
        self.conn = parent
        if not parent.poll(self.startup_timeout):
            self.close()
            raise TrialFailure(f"worker did not start within {self.startup_timeout:.0f}s", kind="crash")
        try:
            parent.recv()
        except EOFError:
            kind, reason = _describe_exit(self._reap())
            raise TrialFailure(f"worker failed while loading the task: {reason}", kind=kind) from None

    def _reap(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.join(timeout=5)
        code = self.proc.exitcode
        if self.alive is not None:
            self.alive.close()
        self.proc, self.conn, self.alive = None, None, None
        return code

    def run(self, plan: Pipeline, seed: int, timing_budget_s: float, guards: Guards | None = None) -> TrialResult:
        return self._call("trial", plan=plan, seed=seed, timing_budget_s=timing_budget_s, cache_dir=self.cache_dir,
                          guards=guards)

    def remeasure(self, plans: list[Pipeline], objectives: tuple[str, ...], rounds: int, seed: int,
                  train_samples: int = TRAIN_SAMPLES) -> Timings:
        return self._call("remeasure", plans=plans, objectives=objectives, rounds=rounds, seed=seed, cache_dir=self.cache_dir,
                          train_samples=train_samples)

    def export(self, plan: Pipeline, out: Path, seed: int) -> dict[str, Any]:
        return self._call("export", plan=plan, out=out, seed=seed, cache_dir=self.cache_dir)

    def probe(self, plan: Pipeline, seed: int) -> dict[str, float]:
        return self._call("probe", plan=plan, seed=seed)

    def _call(self, kind: str, **kwargs: Any) -> Any:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        assert self.conn is not None
        start = os.path.getsize(self.dump)  # what this call's stacks are appended after
        self.conn.send(cloudpickle.dumps((kind, {**kwargs, "threads": self.threads})))
        try:
            ready = self.conn.poll(self.trial_timeout)
        except KeyboardInterrupt:
            self.kill()
            raise
        if not ready:
            self._ask_for_stack(start)
            self.kill()
            where, trace = self._stack(start)
            raise TrialFailure(f"hang: no result within --trial-timeout {self.trial_timeout:g}s; the trial was stopped",
                               kind="timeout", where=where, trace=trace)
        try:
            outcome = self.conn.recv()
        except (EOFError, ConnectionResetError):
            kind, reason = _describe_exit(self._reap())
            where, trace = self._stack(start)  # a native crash's, written by faulthandler (none for SIGKILL)
            raise TrialFailure(reason, kind=kind, where=where, trace=trace) from None
        if outcome[0] == "ok":
            return outcome[1]
        raise TrialFailure(outcome[2], kind=outcome[1], stage=outcome[3], where=outcome[4], trace=outcome[5])

    def _ask_for_stack(self, start: int) -> None:
        """Signal a hung worker to write its stack, and give it a moment to."""
        if self.proc is None or self.proc.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.proc.pid, signal.SIGUSR1)
            deadline = time.monotonic() + DUMP_WAIT_S
            while time.monotonic() < deadline and os.path.getsize(self.dump) == start:
                time.sleep(0.05)
            time.sleep(0.1)  # the rest of the dump (it is written frame by frame)

    def _stack(self, start: int) -> tuple[str, str]:
        with open(self.dump) as f:
            f.seek(start)
            text = f.read()
        return from_dump(text, "_serve") if text.strip() else ("", "")

    def kill(self) -> None:
        """Kill the worker and everything it started (its process group), then reap it."""
        if self.proc is not None and self.proc.pid is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                if self.proc.is_alive():
                    self.proc.kill()
        self._reap()

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive() and self.conn is not None:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout=5)
        self.kill()


class InProcessRunner:
    """Runs plans in the search process itself (``--no-isolation``): no protection, no overhead."""

    def __init__(self, task: Task, cache_dir: str | None = None) -> None:
        self.task = task
        self.cache_dir = cache_dir
        self.threads: int | None = None  # torch threads per trial (None: this process's own setting)
        warm_up(task)

    def run(self, plan: Pipeline, seed: int, timing_budget_s: float, guards: Guards | None = None) -> TrialResult:
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads or before)
        try:
            return run_trial(self.task, plan, seed, timing_budget_s, cache_dir=self.cache_dir, guards=guards)
        finally:
            torch.set_num_threads(before)

    def remeasure(self, plans: list[Pipeline], objectives: tuple[str, ...], rounds: int, seed: int,
                  train_samples: int = TRAIN_SAMPLES) -> Timings:
        return remeasure_plans(self.task, plans, objectives, rounds, seed, cache_dir=self.cache_dir, train_samples=train_samples)

    def export(self, plan: Pipeline, out: Path, seed: int) -> dict[str, Any]:
        return export_model(self.task, plan, out, seed, cache_dir=self.cache_dir)

    def probe(self, plan: Pipeline, seed: int) -> dict[str, float]:
        return probe(self.task, plan, seed)

    def close(self) -> None:
        pass
