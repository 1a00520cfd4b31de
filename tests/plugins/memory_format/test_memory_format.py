"""memory_format: contract; channels_last reaches the model and its inputs, and trains on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._strategy import apply_all
from autoaccel.plugin.testing import CPU, StrategyContract
from autoaccel.plugins.memory_format import MemoryFormatStrategy
from autoaccel.trial import _lifecycle as lifecycle
from autoaccel.trial._run import run_trial, serve
from autoaccel.trial._train import setup_for
from tiny_digits import digits_datasets, make_task


class TestMemoryFormatContract(StrategyContract):
    strategy_class = MemoryFormatStrategy


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))


def image_task():  # type: ignore[no-untyped-def]
    train, val = digits_datasets()
    as_images = lambda ds: TensorDataset(ds.tensors[0].reshape(-1, 1, 8, 8), ds.tensors[1])  # noqa: E731
    return make_task(model=cnn, train_data=as_images(train), val_data=as_images(val))


def test_channels_last_reaches_model_and_inputs() -> None:
    plan = MemoryFormatStrategy().apply(Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1), {"format": "channels_last"})
    task = image_task()
    # The model that trains takes the layout...
    trained = setup_for(lifecycle.build_model(task, plan, 0), task, plan, 0).model
    assert trained[0].weight.is_contiguous(memory_format=torch.channels_last)
    # ...and so does the model that is served (also one trained by another recipe, in inference mode).
    served = serve(task, plan, task.model(), torch.rand(1, 1, 8, 8), 0)
    assert served[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert lifecycle.prepare_input(torch.rand(4, 3, 8, 8), plan).is_contiguous(memory_format=torch.channels_last)
    assert lifecycle.prepare_input(torch.rand(4, 64), plan).shape == (4, 64)  # non-image inputs are left alone


def test_channels_last_trains_on_cpu() -> None:
    task = image_task()
    plan = MemoryFormatStrategy().apply(Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1), {"format": "channels_last"})
    assert run_trial(task, plan, timing_budget_s=0.05).metrics["accuracy"] > 0.5


def test_check() -> None:
    assert MemoryFormatStrategy().check(CPU).supported
    xla = CPU.__class__(**{**CPU.__dict__, "kind": "xla", "device": "xla"})
    assert not MemoryFormatStrategy().check(xla).supported


@pytest.mark.gpu
def test_channels_last_bf16_trains_on_cuda() -> None:
    task = image_task()
    base = Pipeline(device="cuda", batch_size=64, lr=0.1, epochs=1)
    precision = pytest.importorskip("autoaccel.plugins.precision", reason="an interaction with the precision strategy")
    plan = apply_all([precision.PrecisionStrategy(), MemoryFormatStrategy()], base,
                     {"precision.dtype": "bf16", "memory_format.format": "channels_last"})
    assert run_trial(task, plan, timing_budget_s=0.1).metrics["accuracy"] > 0.5
