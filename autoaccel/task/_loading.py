"""Import a user's model.py and take its ``task``, turning every way that can fail into one clear line."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path

from autoaccel.errors import AutoaccelError, describe
from autoaccel.task._task import Task, validate_task


def _user_frame_line(exc: BaseException, path: Path) -> str:
    """The line number of the innermost frame inside the user's file, for 'file:line' messages."""
    line = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = f":{frame.lineno}"
    return line


def import_task_module(path: str | Path) -> object:
    """Import ``path`` as a fresh module (never cached in sys.modules under a shared name)."""
    p = Path(path)
    if not p.exists():
        raise AutoaccelError(f"{path}: no such file; expected a Python file that defines `task`")
    if not p.is_file() or p.suffix != ".py":
        raise AutoaccelError(f"{path}: expected a Python file (.py) that defines `task`")
    p = p.resolve()
    # A stable name (hash() is salted per process): pickles and messages then read the same in every run.
    module_name = f"autoaccel_user_{hashlib.sha256(str(p).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, p)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered so pickling and dataclasses defined in the file can find their module.
    sys.modules[module_name] = module
    # The file's own folder comes first, so `import helpers` beside model.py works as it would for the user.
    sys.path.insert(0, str(p.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise AutoaccelError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:  # noqa: BLE001 - any failure of user code is one line
        sys.modules.pop(module_name, None)
        raise AutoaccelError(
            f"{path}{_user_frame_line(exc, p)}: importing the file failed: {describe(exc)}"
        ) from exc
    finally:
        if sys.path and sys.path[0] == str(p.parent):
            sys.path.pop(0)
    return module


def load_task(path: str | Path, validate: bool = True) -> Task:
    """Return the validated Task defined by ``path`` (a Task object, or a function returning one)."""
    module = import_task_module(path)
    if not hasattr(module, "task"):
        raise AutoaccelError(f"{path}: defines no `task`; expected `task = Task(...)` or `def task() -> Task`")
    task = module.task
    if callable(task) and not isinstance(task, Task):
        try:
            task = task()
        except Exception as exc:  # noqa: BLE001
            raise AutoaccelError(
                f"{path}{_user_frame_line(exc, Path(path).resolve())}: calling `task()` failed: {describe(exc)}"
            ) from exc
    return validate_task(task, source=str(path)) if validate else task
