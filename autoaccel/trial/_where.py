"""Where a trial failed, said so a user can follow it: the last frame in their own code and the frame in the
library that raised (``model.py:42 in forward → torch/nn/functional.py:2854 in batch_norm``), and the whole
traceback for ``--debug``. A worker that hangs is asked for its stack (faulthandler) before it is killed, so a
timeout says where it hung."""

from __future__ import annotations

import re
import sysconfig
import traceback
from pathlib import Path

MAX_TRACE = 20_000  # characters of a traceback kept in the study (a deep recursion's is megabytes)
_PACKAGE = Path(__file__).resolve().parents[1]  # autoaccel/
_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
_DUMP_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<name>\S+)')


def _kind(path: Path) -> str:
    """"library" (an installed package or the standard library), "autoaccel", or "user" (the user's own code)."""
    if any(part in ("site-packages", "dist-packages") for part in path.parts) or path.is_relative_to(_STDLIB):
        return "library"
    return "autoaccel" if path.is_relative_to(_PACKAGE) else "user"


def _short(path: Path) -> str:
    """A library's file from its package (``torch/nn/functional.py``); ours and the user's from the working folder
    when inside it."""
    parts = path.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1:])
    if path.is_relative_to(_PACKAGE.parent):
        return str(path.relative_to(_PACKAGE.parent))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def where(frames: list[tuple[str, int, str]]) -> str:
    """``frames`` (file, line, function; outermost first) said as the user's last frame and the one that raised;
    with no frame of the user's, autoaccel's last frame stands for it."""
    if not frames:
        return ""
    located = [(Path(f).resolve() if not f.startswith("<") else Path(f), line, name) for f, line, name in frames]
    kinds = [_kind(p) if not str(p).startswith("<") else "library" for p, _, _ in located]
    own = next((i for i in reversed(range(len(located))) if kinds[i] == "user"), None)
    if own is None:
        own = next((i for i in reversed(range(len(located))) if kinds[i] == "autoaccel"), None)
    picked = [i for i in (own, len(located) - 1) if i is not None]
    said = [f"{_short(located[i][0])}:{located[i][1]} in {located[i][2]}" for i in dict.fromkeys(picked)]
    return " → ".join(said)


def _origin(exc: BaseException) -> BaseException:
    """The exception a chain started from (``raise TrialFailure(...) from exc``: exc's frames say where)."""
    while exc.__cause__ is not None and exc.__cause__.__traceback__ is not None:
        exc = exc.__cause__
    return exc


def located(exc: BaseException) -> tuple[str, str]:
    """(where, traceback) of an exception caught in a trial."""
    origin = _origin(exc)
    frames = [(f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(origin.__traceback__)]
    trace = "".join(traceback.format_exception(exc))
    return where(frames), trace[-MAX_TRACE:]


def from_dump(text: str, entry: str) -> tuple[str, str]:
    """(where, stack) from faulthandler's dump of every thread (most recent call first): the thread whose stack
    runs through ``entry`` (the worker's loop), which is the one running the trial."""
    for block in re.split(r"\n(?=(?:Current thread|Thread) 0x)", text):
        lines = block.splitlines()
        frames = [(m["file"], int(m["line"]), m["name"]) for m in map(_DUMP_FRAME.match, lines) if m]
        if any(name == entry for _, _, name in frames):
            frames.reverse()  # outermost first
            return where(frames), block[-MAX_TRACE:]
    return "", text[-MAX_TRACE:]

