"""--val-fraction: quality judged on a fixed share of a large validation set.

Every served model's quality is measured once, on the whole validation set (its latency on example batches). A
validation set of millions of rows makes that evaluation the cost of every serving trial; a user bounds it by
giving a share: the same seeded sample of rows, in their original order, for every trial of the study, its
baseline included, so quality drops stay paired per sample. The share is recorded with the study: a study is
never continued on another share, whose figures would not compare.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import TYPE_CHECKING

from autoaccel.errors import AutoaccelError

if TYPE_CHECKING:
    from autoaccel.task._task import Task


def bound(task: Task, share: float) -> Task:
    """``task`` with its validation set cut to ``share`` of its rows (at least one), the same rows every time."""
    if share >= 1.0:
        return task
    n = len(task.val_data)
    k = max(1, math.ceil(share * n))
    rows = sorted(random.Random(task.seed).sample(range(n), k))
    from torch.utils.data import Subset  # here, not at import: the options import this module (a quick --help)

    return dataclasses.replace(task, val_data=Subset(task.val_data, rows))


def check_study(stored: float | None, share: float) -> None:
    """Refuse to continue a study on another share of the validation set than the one it was measured on."""
    if stored is not None and abs(float(stored) - share) > 1e-12:
        raise AutoaccelError(f"--val-fraction: this study measured quality on {float(stored):g} of the validation set, "
                             f"not {share:g}; give --val-fraction {float(stored):g} to continue it, or another --out "
                             "or --study for a new one")
