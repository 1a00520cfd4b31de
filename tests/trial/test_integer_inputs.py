"""Integer inputs (token ids) keep their dtype on the ONNX paths: export, ONNX Runtime serving, static int8
calibration (a float cast turns ids into garbage or fails the graph's int64 input). Real export and onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Task
from autoaccel.plugin._contexts import ServeContext
from autoaccel.plugin._onnx import check_onnx, export_onnx, onnx_feed, run_onnx
from autoaccel.plugins.runtime.session import OrtModule
from tiny_digits import base_plan

VOCAB, LENGTH = 50, 12


class Bag(nn.Module):
    """A bag-of-embeddings classifier over token ids."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids).mean(dim=1))


def _ids(n: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, LENGTH), generator=torch.Generator().manual_seed(n))


def test_float_inputs_feed_as_float32_and_ids_keep_their_dtype() -> None:
    assert onnx_feed(torch.ones(2, 3, dtype=torch.float64)).dtype == np.float32
    assert onnx_feed(_ids(2)).dtype == np.int64


def test_a_token_model_exports_and_runs_in_onnxruntime(tmp_path: Path) -> None:
    model = Bag().eval()
    ids = _ids(4)
    path = export_onnx(model, ids[:1], tmp_path / "bag.onnx")
    assert check_onnx(path, model, ids) < 1e-5
    served = OrtModule(path)
    assert torch.allclose(served(ids), model(ids), atol=1e-5)
    assert torch.allclose(run_onnx(path, ids), model(ids), atol=1e-5)


def test_calibration_batches_keep_integer_ids() -> None:
    data = TensorDataset(_ids(64), torch.zeros(64, dtype=torch.long))
    task = Task(model=Bag, train_data=data, val_data=data, batch_size=8, name="bag")
    ctx = ServeContext(task, base_plan(task), 0, _ids(1))
    batches = ctx.calibration(samples=32, batch=16)
    assert len(batches) == 2 and all(b.dtype == np.int64 and b.shape == (16, LENGTH) for b in batches)
