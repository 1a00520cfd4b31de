"""Options of one search, shared by the CLI and the Python API, validated before any storage is touched."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from autoaccel.errors import AutoaccelError, did_you_mean
from autoaccel.vocab import MODE_NAMES as MODES
from autoaccel.vocab import OBJECTIVES

SAMPLERS = ("tpe", "nsga2", "random", "grid")
# With neither --trials nor --budget nor --timeout, a run is bounded by minutes, not trials: a user's patience.
DEFAULT_BUDGET_MINUTES = 5.0
# Trials a budgeted run may start at most (the budget, not this, is what normally stops it).
BUDGET_TRIAL_CAP = 500
# Share of a budget kept for the finish (re-measuring finalists side by side, ablation, export): measured on the
# digits example, the finish takes about a quarter of a five-minute run.
FINISH_SHARE = 0.3
DEFAULT_OBJECTIVES = ("accuracy", "train_time", "latency")
INFERENCE_OBJECTIVES = ("accuracy", "latency")


@dataclass
class Options:
    trials: int | None = None  # None: as many as the budget allows (BUDGET_TRIAL_CAP at most)
    timeout: float | None = None  # seconds after which no new trial starts
    budget: float | None = None  # minutes for the whole run, finish included; see resolved_budget
    seed: int = 0
    sampler: str = "tpe"
    mode: str = "both"
    objectives: tuple[str, ...] | None = None
    # The quality budget: an absolute drop in the metric's own units (0.01), or relative to the baseline's value
    # ("2%"): CLI --max-quality-drop, alias --max-accuracy-drop.
    max_accuracy_drop: float | str = 0.01
    target: str = "auto"
    strategies: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None  # installed strategies left out of the search
    # Narrow parameters to some values: {"batch_size.size": (64, 128, 256)}; the default always stays in.
    choices: dict[str, tuple[object, ...]] | None = None
    storage: str | None = None
    study: str | None = None
    # Seconds between a worker's heartbeats; a trial whose worker is silent for three of them is failed and retried
    # by another worker (workers.py).
    heartbeat: int = 10
    cache_dir: str | None = None  # trained checkpoints (default OUT/checkpoints); a shared folder serves every host
    out: str | None = None
    trial_timeout: float = 3600.0
    isolate: bool = True
    quiet: bool = False
    timing_budget_s: float = 1.0
    remeasure_rounds: int = 7
    ablation: bool = True
    max_finalists: int = 6
    # The share of the schedule search trials train: "auto" (planned from the budget; fidelity.py) or a fraction
    # in (0, 1] ("1/16", 0.25, 1 for whole trainings).
    fidelity: str | float = "auto"
    # The share of the validation set quality is measured on (val_share.py): 1 for all of it.
    val_fraction: str | float = 1.0
    # Train the answers and the recipe whole at the end of the run when the rest of the budget affords it.
    confirm: bool = False
    # The user's recipe's metric at full length, as they measured it (confirm.py: its whole training is then not
    # repeated); None: measured here (from Task.weights when set, else by training the recipe whole).
    baseline_metric: float | None = None
    # Print each failed trial's whole traceback (CLI --debug, which also shows the run's own errors' tracebacks).
    debug: bool = False

    def drop_spec(self) -> tuple[float, bool]:
        """The quality budget as (value, relative): 0.01 -> (0.01, False); "2%" -> (0.02, True)."""
        value = self.max_accuracy_drop
        if isinstance(value, str):
            text = value.strip()
            if text.endswith("%"):
                return float(text[:-1]) / 100.0, True
            return float(text), False
        return float(value), False

    def resolved_budget(self) -> float | None:
        """Minutes the whole run may take: --budget, else the default when no other limit was given."""
        if self.budget is not None:
            return self.budget
        return DEFAULT_BUDGET_MINUTES if self.trials is None and self.timeout is None else None

    def resolved_trials(self) -> int:
        return self.trials if self.trials is not None else BUDGET_TRIAL_CAP

    def resolved_objectives(self) -> tuple[str, ...]:
        if self.objectives is not None:
            return self.objectives
        return INFERENCE_OBJECTIVES if self.mode == "inference" else DEFAULT_OBJECTIVES

    def out_dir(self, task_name: str) -> Path:
        return Path(self.out) if self.out else Path("autoaccel-out") / task_name

    def checkpoints(self, task_name: str) -> str:
        return self.cache_dir or str(self.out_dir(task_name) / "checkpoints")

    def storage_url(self, task_name: str) -> str:
        return self.storage or f"sqlite:///{(self.out_dir(task_name) / 'study.db').resolve()}"

    def validate(self) -> "Options":
        if self.trials is not None and (not isinstance(self.trials, int) or self.trials < 1):
            raise AutoaccelError(f"--trials: must be a positive integer, but got {self.trials!r}")
        if self.budget is not None and (not isinstance(self.budget, (int, float)) or not math.isfinite(self.budget)
                                        or self.budget <= 0):
            raise AutoaccelError(f"--budget: must be a positive number of minutes, e.g. 5, but got {self.budget!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise AutoaccelError(f"--timeout: must be a positive number of seconds, but got {self.timeout!r}")
        if not isinstance(self.heartbeat, int) or self.heartbeat < 1:
            raise AutoaccelError(f"--heartbeat: must be a whole number of seconds >= 1, but got {self.heartbeat!r}")
        if self.trial_timeout <= 0:
            raise AutoaccelError(f"--trial-timeout: must be a positive number of seconds, but got {self.trial_timeout!r}")
        if not isinstance(self.remeasure_rounds, int) or self.remeasure_rounds < 0 or self.remeasure_rounds == 1:
            raise AutoaccelError(f"--remeasure-rounds: must be 0 (off) or at least 2 rounds, but got {self.remeasure_rounds!r}")
        if self.sampler not in SAMPLERS:
            raise AutoaccelError(f"--sampler: unknown sampler '{self.sampler}'{did_you_mean(self.sampler, SAMPLERS)} (expected one of {', '.join(SAMPLERS)})")
        if self.mode not in MODES:
            raise AutoaccelError(f"--mode: unknown mode '{self.mode}'{did_you_mean(self.mode, MODES)} (expected one of {', '.join(MODES)})")
        try:
            drop, _ = self.drop_spec()
        except (TypeError, ValueError):
            drop = math.nan
        if isinstance(self.max_accuracy_drop, bool) or math.isnan(drop) or drop < 0:
            raise AutoaccelError("--max-quality-drop: must be >= 0, an absolute drop in the metric's units (e.g. 0.01) or "
                                 f"relative to your recipe's value (e.g. 2%), but got {self.max_accuracy_drop!r}")
        try:
            parse_fidelity(self.fidelity)
        except (TypeError, ValueError, ZeroDivisionError):
            raise AutoaccelError(f"--fidelity: must be auto or a share of your schedule in (0, 1], e.g. 1/16 or 0.25, "
                                 f"but got {self.fidelity!r}") from None
        try:
            parse_val_fraction(self.val_fraction)
        except (TypeError, ValueError, ZeroDivisionError):
            raise AutoaccelError(f"--val-fraction: must be a share of your validation set in (0, 1], e.g. 0.1, 1/10 or 10%, "
                                 f"but got {self.val_fraction!r}") from None
        if self.baseline_metric is not None and (isinstance(self.baseline_metric, bool) or not isinstance(self.baseline_metric, (int, float))
                                                 or not math.isfinite(self.baseline_metric)):
            raise AutoaccelError("--baseline-metric: must be a finite number, your recipe's metric on the validation set "
                                 f"after its whole training (e.g. 0.953), but got {self.baseline_metric!r}")
        objectives = self.resolved_objectives()
        for name in objectives:
            if name not in OBJECTIVES:
                raise AutoaccelError(f"--objectives: unknown objective '{name}'{did_you_mean(name, OBJECTIVES)} (expected some of {', '.join(OBJECTIVES)})")
        if len(set(objectives)) != len(objectives):
            raise AutoaccelError(f"--objectives: each objective may appear once, but got {','.join(objectives)}")
        if "accuracy" not in objectives:
            raise AutoaccelError("--objectives: must include accuracy (the budget is judged against it), e.g. accuracy,train_time")
        if len(objectives) < 2:
            raise AutoaccelError("--objectives: needs accuracy and at least one speed objective (train_time, train_throughput, latency, throughput, memory)")
        for name in ("train_time", "train_throughput"):
            if self.mode == "inference" and name in objectives:
                raise AutoaccelError(f"--objectives: {name} means nothing in --mode inference (no training); drop it")
        return self


def parse_fidelity(text: str | float | None) -> float | None:
    """--fidelity: 'auto' (None), or a fraction of the schedule in (0, 1]: '1/16', '0.25', '1'."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "auto"):
        return None
    value = float(Fraction(str(text).strip())) if isinstance(text, str) else float(text)
    if not (0.0 < value <= 1.0) or not math.isfinite(value):
        raise ValueError(value)
    return value


def parse_val_fraction(value: str | float) -> float:
    """A share in (0, 1]: 0.1, '1/10', '10%'; ValueError otherwise."""
    text = str(value).strip()
    share = float(text[:-1]) / 100.0 if text.endswith("%") else float(Fraction(text))
    if isinstance(value, bool) or not math.isfinite(share) or not 0.0 < share <= 1.0:
        raise ValueError(value)
    return share


def mask_url(url: str) -> str:
    """The storage URL with its password hidden, as it may be printed, stored and reported."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse: hide anything between ':' and '@'
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
