"""One typed record of a trial, and the one place that writes it to Optuna and reads it back.

A trial's results travel through Optuna's storage as user attributes (JSON). Every module reads them through
:func:`read`, which gives a :class:`TrialRecord`, and writes them through :func:`write`, which refuses a name
the record does not have: a misspelt key cannot silently become a new attribute nobody reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

FEASIBLE_TOLERANCE = 1e-12  # constraint values at or below this are within the accuracy budget


@dataclass
class TrialRecord:
    """What a trial of the study is and what it measured."""

    number: int
    state: TrialState
    params: dict[str, Any] = field(default_factory=dict)  # as the sampler suggested them
    values: list[float] | None = None  # the objective values Optuna holds
    role: str = "candidate"  # baseline, candidate, or what the finish enqueued (ablation, combined)
    config: dict[str, Any] | None = None  # the settings that change the plan (off values and no-ops dropped)
    goal: str | None = None  # baseline, train, serve or combined
    fingerprint: str | None = None  # identity of the plan: equal plans share it
    plan: dict[str, Any] = field(default_factory=dict)  # the plan, described
    metrics: dict[str, float] = field(default_factory=dict)
    ci95: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # checkpoint, timings, warnings, members, load ...
    constraint: float | None = None  # accuracy drop minus the budget: <= 0 is feasible
    failure_kind: str | None = None
    reason: str | None = None
    where: str | None = None  # of a failure: the user's last frame and the library's that raised (trial/_where.py)
    traceback: str | None = None  # of a failure: the whole traceback, or a hung or crashed worker's stack
    seconds: float | None = None  # wall time the trial took
    not_run: bool = False  # proposed too early (too few trained models for it), never measured
    duplicate_of: int | None = None  # the trial that measured this configuration before
    worker: dict[str, Any] | None = None  # host and pid of the process that ran it
    retry_of: int | None = None  # the trial whose worker died mid-trial (no heartbeat): this one measures it again
    run: int | None = None  # the run of workers that asked it (workers.py): a --trials budget is that run's
    over: int | None = None  # a screen or stack added to another configuration: the trial it must beat
    # The share of the recipe's schedule the trial trained (Pipeline.fraction); trials are compared with the
    # baseline at their own fraction only. None: the whole recipe.
    fraction: float | None = None
    # The identity of its training math (Pipeline.math_key) and, when it changes only training speed, the loss
    # tolerance of its sanity check: {"key": ..., "tolerance": ... or None}.
    math: dict[str, Any] | None = None
    # A replica of the user's recipe trained from another seed (Pipeline.replica): it measures run-to-run noise.
    replica: int | None = None
    # Set by whoever enqueued the trial (Executor.run_fixed), which finds it by this: Optuna hands out the oldest
    # waiting trial, which may be another's (one left waiting by a killed process, or taken by another worker).
    ticket: str | None = None

    @property
    def measured(self) -> bool:
        return self.state == TrialState.COMPLETE and bool(self.metrics)

    @property
    def feasible(self) -> bool:
        return self.constraint is not None and self.constraint <= FEASIBLE_TOLERANCE

    @property
    def settings(self) -> dict[str, Any]:
        """The settings that define the configuration (the suggested params for a record without a config)."""
        return dict(self.config if self.config is not None else self.params)

    @property
    def members(self) -> list[dict[str, Any]]:
        """Other trained models the trial served beside its own: ``{trial, train_time}`` each."""
        return list(self.details.get("members") or [])

    def describe(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["state"] = self.state.name.lower()
        return out


# The attributes a record keeps in storage: every field but those Optuna itself holds.
STORED = tuple(f.name for f in dataclasses.fields(TrialRecord) if f.name not in ("number", "state", "params", "values"))


def read(t: FrozenTrial) -> TrialRecord:
    attrs = t.user_attrs
    known = {name: attrs[name] for name in STORED if attrs.get(name) is not None}
    return TrialRecord(number=t.number, state=t.state, params=dict(t.params), values=t.values, **known)


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(STORED)
    if unknown:
        raise KeyError(f"not fields of a trial record: {', '.join(sorted(unknown))}")
    # Tuples (intervals) are stored as JSON lists; normalised here so what is read back equals what was written.
    return {k: ({m: list(v) for m, v in value.items()} if k == "ci95" and value is not None else value)
            for k, value in fields.items()}


def write(trial: optuna.Trial, **fields: Any) -> None:
    """Store ``fields`` of the record on a running trial."""
    for key, value in _checked(fields).items():
        trial.set_user_attr(key, value)


def write_stored(storage: optuna.storages.BaseStorage, trial_id: int, **fields: Any) -> None:
    """Store ``fields`` on a trial through its storage (a trial another process left behind)."""
    for key, value in _checked(fields).items():
        storage.set_trial_user_attr(trial_id, key, value)


def enqueued(role: str, **fields: Any) -> dict[str, Any]:
    """The attributes a trial is queued with (``study.enqueue_trial(..., user_attrs=enqueued(role))``); fields
    that are None are left out (read back as None)."""
    return _checked({"role": role, **{k: v for k, v in fields.items() if v is not None}})


def copy_results(trial: optuna.Trial, twin: TrialRecord) -> None:
    """Give ``trial`` the measured results of ``twin`` (the same configuration, measured before)."""
    write(trial, metrics=twin.metrics, ci95=twin.ci95, details=twin.details, plan=twin.plan, constraint=twin.constraint)
