"""Training batch size (powers of two) with an LR scaling rule (none, linear, sqrt)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from autoaccel.plugin import Categorical, IntRange, Param, Phase, Pipeline, Section, Space, Strategy, Task, hookimpl


class BatchSizeStrategy(Strategy[Section]):
    name = "batch_size"
    phase = Phase.DATA
    # Fewer, larger steps amortise every per-step cost (fetches, copies, kernel launches, optimizer steps): on a
    # model that is tiny per step, that is most of its time, so batch size is screened first among training.
    relieves = ("data", "copy", "forward", "backward", "optimizer")
    changes_training = True  # through the recipe's own batch_size and lr fields
    description = "Training batch size (powers of two) with linear or sqrt LR scaling."

    def __init__(self) -> None:
        self._base = 32

    def space(self, task: Task | None = None) -> Space:
        raw = super().space(task)
        bounds = raw["size"]
        assert isinstance(bounds, IntRange)
        base = task.batch_size if task is not None else bounds.default
        # A batch larger than the training set is one batch per epoch anyway: cap at the dataset size.
        high = min(bounds.high, len(task.train_data)) if task is not None else bounds.high
        sizes = {2**k for k in range(int(math.log2(bounds.low)), int(math.log2(max(high, 1))) + 1) if bounds.low <= 2**k <= high}
        sizes.add(base)
        return {"size": Categorical(tuple(sorted(sizes)), base, bounds.when), "lr_scaling": raw["lr_scaling"]}

    def probes(self, space: Mapping[str, Param]) -> list[dict[str, Any]]:
        # A larger batch alone takes fewer, larger steps at the same learning rate and usually loses accuracy
        # that a scaled rate keeps: each probe has sqrt scaling where allowed. The first is two doublings up (a
        # gain worth having, a step a scaled rate usually keeps accurate): the techniques screened after it are
        # tried on top of it, so they train faster too. Then the screening follows the gain upward, and the single
        # doubling comes last (on a small model it is then stopped early, slower than the first).
        size, rule = space["size"], space["lr_scaling"]
        scaling = "sqrt" if rule.contains("sqrt") else rule.default
        larger = sorted(v for v in size.grid_values() if v > size.default)
        return [{"size": v, "lr_scaling": scaling} for v in larger[1:] + larger[:1]]

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        size = int(params.get("size", pipeline.batch_size))
        rule = params.get("lr_scaling", "none")
        ratio = size / pipeline.batch_size
        factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]
        return pipeline.replace(batch_size=size, lr=pipeline.lr * factor)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(BatchSizeStrategy())
