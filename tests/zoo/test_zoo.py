"""The zoo suite: every technique on one tiny model of each family people start from (a ResNet, a MobileNet, an
EfficientNet, a ConvNeXt, a ViT, a BERT with dict batches), built from transformers' configs (no torchvision
needed), trained a few steps. Each technique either works, its served outputs agreeing with the eager model's
within its tolerance, or is ruled out with a reason a user understands (the cheap check, or a trial failure of
kind ``unsupported``): never a raw exception. bench/zoo.py runs the same matrix on timm's and torchvision's models
and times it."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from autoaccel.errors import TrialFailure
from autoaccel.plugin._configuration import goal_of
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._registry import default_registry
from autoaccel.plugin._strategy import Strategy
from autoaccel.task import Task, call, prediction, sample_batch
from autoaccel.task._target import autoaccel_detect_target
from autoaccel.trial import run_trial
from autoaccel.trial._checkpoints import training_key
from autoaccel.trial._run import serve

pytest.importorskip("transformers", reason="the zoo families are built from transformers' configs")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "zoo"))
from families import HF_FAMILIES, build, digits  # noqa: E402

pytestmark = pytest.mark.zoo
# Served outputs that keep the model's float32 math (an engine, a layout, a compiler) agree with eager within this,
# relative to the logits' scale; lossy ones (int8, half precision, pruning) are judged on quality by the search,
# and here only need finite outputs of the eager model's shape.
SAME_MATH = 1e-3
LOSSY = ("quantization", "pruning", "precision", "distillation")
# Failures that are a technique's honest "not here", with a reason; anything else is a bug to fix.
HONEST = {"unsupported", "infeasible"}
TARGET = autoaccel_detect_target("cpu")
# Techniques whose every trial pays seconds of fixed cost (compiling, starting processes) run on one family here,
# the one most likely to break them (LayerNorm and depthwise convolutions; dict batches), and their first setting
# only: the suite runs at every landing. bench/zoo.py runs them on every family.
COSTLY = {"compile": "convnext", "data_parallel": "bert"}


def zoo_task(family: str) -> Task:
    factory, kind = build(f"hf:{family}")
    train, val = digits(kind, limit=64)
    return Task(model=factory, train_data=train, val_data=val, epochs=1, batch_size=16, lr=1e-3,
                optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr), name=f"zoo_{family}")


def settings(s: Strategy[Any], task: Task, model: torch.nn.Module) -> list[dict[str, Any]]:
    """The technique's probes: the settings the search tries it with first, in the space this model allows."""
    return s.probes(s.effective_space(TARGET, task, model))


@pytest.fixture(scope="module")
def registry() -> Any:
    return default_registry()


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_every_technique_works_or_is_ruled_out_in_words(family: str, registry: Any) -> None:
    task = zoo_task(family)
    model = task.model()
    base = Pipeline(device="cpu", batch_size=task.batch_size, lr=task.lr, epochs=task.epochs)
    base = base.replace(baseline_key=training_key(task, base))
    example = sample_batch(task.val_data, 4)
    matrix: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as cache:
        run_trial(task, base, 0, 0.01, cache)  # the recipe, trained once: serving techniques reuse it
        for name, s in sorted(registry.strategies.items()):
            cap = s.capability(TARGET, task, model)
            if not cap.supported:
                assert cap.reason and len(cap.reason.splitlines()) == 1, f"{name}: ruled out without one line of reason"
                matrix[name] = f"ruled out: {cap.reason}"
                continue
            probes = settings(s, task, model)
            if name in COSTLY:
                probes = probes[:1] if COSTLY[name] == family else []
            for params in probes:
                label = f"{name} {params}"
                plan = s.apply(base, {**s.defaults(task), **params})
                if plan == base or plan.members:
                    continue  # changes nothing here, or needs other trained models (searched jointly)
                try:
                    result = run_trial(task, plan, 0, 0.01, cache)
                except TrialFailure as exc:
                    assert exc.kind in HONEST, f"{label}: {exc.kind}: {exc.reason} at {exc.where}"
                    assert exc.reason and "\n" not in exc.reason
                    matrix[label] = f"ruled out: {exc.reason}"
                    continue
                assert all(v == v for v in result.metrics.values()), f"{label}: {result.metrics}"
                if goal_of({f"{name}.{k}": v for k, v in params.items()}, [s], "both") == "serve":
                    _agrees(task, plan, example, label, lossy=name in LOSSY)
                matrix[label] = "works"
    assert any(v == "works" for v in matrix.values()), matrix


def _agrees(task: Task, plan: Pipeline, batch: Any, label: str, lossy: bool) -> None:
    """The served model's outputs against the eager model's, on the same weights."""
    inputs = batch
    model = task.model().eval()  # as a trial serves it
    with torch.no_grad():
        eager = prediction(call(model, inputs)).float()
    served = serve(task, plan, model, sample_batch(task.val_data, 1), 0)
    with torch.no_grad():
        got = prediction(call(served, inputs)).float()
    assert got.shape == eager.shape and torch.isfinite(got).all(), f"{label}: served {tuple(got.shape)}"
    if not lossy:
        scale = 1.0 + float(eager.abs().max())
        assert float((got - eager).abs().max()) <= SAME_MATH * scale, f"{label}: served outputs differ from eager"
