"""One measured configuration of a study, as reported to the user."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from autoaccel.task import Shown


@dataclass
class Point:
    """One measured configuration, as reported to the user."""

    trial: int
    role: str
    # Only the settings that changed the plan: what a user applies, nothing inert.
    params: dict[str, Any]
    metrics: dict[str, float]
    metrics_ci95: dict[str, list[float]]
    # objective -> {"value", "ci95", "label", "source"}; ci95 is None where only one measurement exists.
    speedup: dict[str, dict[str, Any]]
    accuracy_drop: dict[str, Any]
    feasible: bool
    verdict: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    goal: str = "combined"  # which factor its settings change: baseline, train, serve or combined
    members: list[dict[str, Any]] = field(default_factory=list)  # {trial, train_time} each
    load: dict[str, float] = field(default_factory=dict)  # other programs' load while it was measured
    finetune_s: float = 0.0  # training after the main run (fine-tuning a pruned model), included in train_time
    # The task's metric, which metrics["accuracy"] (the quality slot, higher is better) holds oriented.
    shown: Shown = field(default_factory=Shown)
    fraction: float = 1.0  # the share of the schedule it trained (its quality is the model's after that)
    # How its quality was judged: "measured" at an informative rung, "same math" (a speed-only change whose loss
    # agreed with the same math's: its quality), or "not judged" (a rung where the recipe has not learned yet).
    judged: str = "measured"

    def ratio(self, objective: str) -> float:
        return float(self.speedup.get(objective, {}).get("value", 1.0))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("shown")
        # The metric under its own name and sign, beside the quality slot the search compares.
        ci = self.metrics_ci95.get("accuracy")
        out["metric"] = {**self.shown.to_json(), "value": self.shown.value(self.metrics.get("accuracy", float("nan"))),
                         "ci95": list(self.shown.interval(ci)) if ci else None}
        return out
