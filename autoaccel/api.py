"""The Python API: ``autoaccel.optimize(task, **options) -> Result``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import optuna
import pluggy

from autoaccel.errors import AutoaccelError, did_you_mean
from autoaccel.loading import load_task
from autoaccel.options import Options
from autoaccel.registry import plugin_manager
from autoaccel.results import Point, Summary
from autoaccel.search import Search
from autoaccel.task import Task, validate_task


@dataclass
class Result:
    """The answer of a search: the baseline, the feasible Pareto front and the recommended point."""

    baseline: Point
    pareto: list[Point]
    recommended: Point
    summary: Summary
    study: optuna.Study
    out_dir: Path
    # Another worker of the same study that re-measures the finalists and writes the answer (None: this one did).
    finished_by: str | None = None

    @property
    def verdict(self) -> str:
        return self.summary.verdict


def make_options(**options: Any) -> Options:
    known = {f.name for f in fields(Options)}
    for key in options:
        if key not in known:
            raise AutoaccelError(f"optimize(): unknown option '{key}'{did_you_mean(key, known)}")
    for key in ("objectives", "strategies", "exclude"):
        if isinstance(options.get(key), str):
            options[key] = tuple(o.strip() for o in options[key].split(",") if o.strip())
        if options.get(key) is not None:
            options[key] = tuple(options[key])
    return Options(**options)


def optimize(task: Task | str | Path, pm: pluggy.PluginManager | None = None, **options: Any) -> Result:
    """Search acceleration techniques for ``task`` on the target; options are the CLI's flags in snake_case.

    ``task`` may be a Task or the path of a model.py defining one. Re-running with the same options continues
    the same study (trials already completed are kept).
    """
    opts = make_options(**options)
    opts.validate()
    if isinstance(task, (str, Path)):
        path: str | Path | None = task
        task_obj = load_task(task)
    else:
        path, task_obj = None, validate_task(task)
    search = Search(task_obj, path, opts, pm or plugin_manager())
    study, summary = search.run()
    return Result(summary.baseline, summary.pareto, summary.recommended, summary, study, search.out_dir, search.finished_by)
