"""The zoo suite: every technique on one tiny model of each family people start from (a ResNet, a MobileNet, an
EfficientNet, a ConvNeXt, a ViT, a BERT with dict batches), built from transformers' configs (no torchvision
needed), trained a few steps. Each technique either works, its served outputs agreeing with the eager model's
within its tolerance, or is ruled out with a reason a user understands (the cheap check, or a trial failure of
an honest kind): never a raw exception, a crash or a hang. bench/zoo.py prints the same matrix for timm's and
torchvision's models, with speedups."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from autoaccel.plugin._registry import default_registry
from autoaccel.task import Task

pytest.importorskip("transformers", reason="the zoo families are built from transformers' configs")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "zoo"))
from families import HF_FAMILIES, build, digits  # noqa: E402
from matrix import matrix  # noqa: E402

pytestmark = pytest.mark.zoo
# Techniques whose every trial pays seconds of fixed cost (compiling, starting processes) run on one family here,
# the one most likely to break them (LayerNorm and depthwise convolutions; dict batches), at their first setting:
# the suite runs at every landing. bench/zoo.py runs them on every family.
COSTLY = {"compile": "convnext", "data_parallel": "bert"}


def zoo_task(family: str) -> Task:
    factory, kind = build(f"hf:{family}")
    train, val = digits(kind, limit=64)
    return Task(model=factory, train_data=train, val_data=val, epochs=1, batch_size=16, lr=1e-3,
                optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr), name=f"zoo_{family}")


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_every_technique_works_or_is_ruled_out_in_words(family: str) -> None:
    registry = default_registry()
    skipped = {name for name, on in COSTLY.items() if on != family}
    # Serving techniques at every probe (an evaluation each, and where the engines and formats differ); training
    # ones at their first but precision (each dtype is its own kernels), as their other settings take the same
    # route through the model (another batch size, another schedule).
    first = {name for name, s in registry.strategies.items() if s.changes_training and name != "precision"}
    cells = matrix(zoo_task(family), registry, only=set(registry.strategies) - skipped, first_only=first | set(COSTLY),
                   timing_budget_s=0.01)
    failed = [f"{c.label}: {c.reason} at {c.where}" for c in cells if c.status == "failed"]
    assert not failed, failed
    assert all(c.reason and "\n" not in c.reason for c in cells if c.status == "ruled out")
    differ = [c.label for c in cells if c.agrees is False]
    assert not differ, f"served outputs differ from the eager model's: {differ}"
    assert any(c.status == "works" and c.agrees for c in cells), "no serving change was compared"
    assert {c.technique for c in cells} >= {"runtime", "quantization", "precision", "scheduler"}
