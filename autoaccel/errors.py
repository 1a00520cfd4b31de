"""Errors a user can act on.

Every error a user can cause (bad file, bad field, bad flag) is an :class:`AutoaccelError` whose message is one
line naming the culprit and what was expected. The CLI prints it without a traceback unless ``--debug``.
"""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable


class AutoaccelError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class TrialFailure(Exception):
    """A trial could not produce metrics; ``reason`` is what the table and the study record."""

    def __init__(self, reason: str, kind: str = "error", stage: str = "", where: str = "", trace: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        # Where in the trial it failed ("training", "transform:<i>", "serving"), so the search can name the
        # technique and choice responsible.
        self.stage = stage
        # Where in the code: the user's last frame and the library's that raised (trial/_where.py), and the
        # whole traceback (--debug prints it; the study keeps it).
        self.where = where
        self.trace = trace


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (what a scheduler, `timeout` or a closed terminal sends), handled like Ctrl-C: the
    running trial is marked failed with the reason, and the process exits 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def reason(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"


def interrupt_reason(exc: KeyboardInterrupt) -> str:
    return exc.reason if isinstance(exc, Interrupted) else "interrupted by the user (Ctrl-C)"


def exit_status(exc: KeyboardInterrupt) -> int:
    return 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``: user code's exceptions may span many lines; ours print one."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest candidate, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class TaskWarning(UserWarning):
    """Something in the Task that runs but is probably not what its author meant (validate_task warns)."""
