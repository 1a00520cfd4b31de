"""cuda_graphs: a CUDA-only strategy says so elsewhere; on a GPU it runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoaccel.plugin.testing import CPU, CUDA, StrategyContract
from autoaccel.plugins.cuda_graphs import CudaGraphModule, CudaGraphsStrategy


class TestCudaGraphsContract(StrategyContract):
    strategy_class = CudaGraphsStrategy


def test_cuda_graphs_are_unsupported_on_cpu_with_a_reason() -> None:
    s = CudaGraphsStrategy()
    cap = s.check(CPU)
    assert not cap.supported and "CUDA" in cap.reason
    assert s.check(CUDA).supported


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager() -> None:
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).cuda().eval()
    graphed = CudaGraphModule(model)
    x = torch.rand(8, 64, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(graphed(x), model(x))
        y = torch.rand(8, 64, device="cuda")
        torch.testing.assert_close(graphed(y), model(y))  # replay with new data in the same buffer
