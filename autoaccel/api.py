"""The Python API: ``autoaccel.optimize(task, **options) -> Result``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import optuna
import pluggy

from autoaccel.errors import AutoaccelError, did_you_mean
from autoaccel.finish import Point, Summary
from autoaccel.options import Options
from autoaccel.plugin._registry import plugin_manager
from autoaccel.scratch import run_scratch
from autoaccel.search import Search
from autoaccel.task import Task, load_task, validate_task


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
    # The run's temp folder first: the user's model.py and the libraries it loads may write there on import.
    with run_scratch():
        if isinstance(task, (str, Path)):
            path: str | Path | None = task
            task_obj = load_task(task)
        else:
            path, task_obj = None, validate_task(task)
        pm = pm or plugin_manager()
        search = Search(task_obj, path, opts, pm)
        study, summary = search.run()
        if opts.confirm and search.finished_by is None:
            summary = confirm_within(search, study, summary, task_obj, pm)
    return Result(summary.baseline, summary.pareto, summary.recommended, summary, study, search.out_dir, search.finished_by)


# A whole training is estimated from the probe's projection; the confirmation starts only if this many times its
# estimate fits in what is left of the budget (a training's own start-up, the serve answer's evaluation).
CONFIRM_MARGIN = 1.2


def confirm_within(search: Search, study: optuna.Study, summary: Summary, task: Task,
                   pm: pluggy.PluginManager) -> Summary:
    """--confirm: `autoaccel confirm` at the end of the run, when the rest of the budget affords the whole
    trainings it takes (your recipe's and each train or combined answer's); otherwise say what it would take."""
    from autoaccel.confirm import confirm, to_confirm
    from autoaccel.trial import duration

    fid, say = search.fidelity, search.progress.info
    goals = to_confirm(study)
    if not fid.compressed:
        say("--confirm: every training trial trained your whole recipe; the answers already stand on full-length runs")
        return summary
    if not goals:
        say("--confirm: no answer to confirm (each goal says keep your recipe)")
        return summary
    # Your recipe is not trained again when its trained weights, or its metric, are known (known_recipe.py).
    known = bool(task.weights) or (search.options.baseline_metric is not None and "serve" not in goals)
    trainings = (0 if known else 1) + sum(1 for g in goals if g != "serve")
    needed = CONFIRM_MARGIN * trainings * fid.full_s
    left = search.budget.left()
    if left is not None and needed > left:
        say(f"--confirm: {trainings} whole trainings take about {duration(needed)} here and {duration(max(0.0, left))} "
            f"of the budget is left; run `autoaccel confirm {search.out_dir}` when you can")
        return summary
    return confirm(search.out_dir, pm, None, search.options.storage, study.study_name, search.options.quiet, task=task)
