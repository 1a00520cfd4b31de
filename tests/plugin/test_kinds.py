"""Techniques act by the task's kind, and what cannot handle the model is ruled out before any training."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Task
from autoaccel.plugins.distillation import DistillationStrategy, kd_loss
from autoaccel.plugins.ensembling import EnsemblingStrategy
from autoaccel.plugins.ensembling.models import AverageEnsemble
from autoaccel.plugins.precision import PrecisionStrategy
from autoaccel.plugins.pruning import PruningStrategy
from autoaccel.task._target import autoaccel_detect_target
from autoaccel.task._task import validate_task

CPU = autoaccel_detect_target("cpu")
X = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))


def _task(model: object, targets: torch.Tensor, **kw: object) -> Task:
    data = TensorDataset(X, targets)
    return validate_task(Task(model=model, train_data=data, val_data=data, **kw))  # type: ignore[arg-type]


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.out = nn.LSTM(4, 8, batch_first=True), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x.unsqueeze(1))[0][:, -1])


def test_fp16_is_ruled_out_for_recurrent_layers_on_a_cpu_before_training() -> None:
    task = _task(LSTMNet, torch.randint(0, 3, (32,)))
    cap = PrecisionStrategy().capability(CPU, task, LSTMNet())
    assert "fp16" not in cap.allowed["dtype"] and "recurrent layers" in cap.reason
    plain = PrecisionStrategy().capability(CPU, task, nn.Linear(4, 3))
    assert plain.allowed["dtype"] == [d for d in ("fp32", "tf32", "bf16", "fp16") if d in CPU.precisions]


def test_structured_pruning_is_ruled_out_when_there_is_nothing_to_shrink() -> None:
    task = _task(LSTMNet, torch.randint(0, 3, (32,)))
    assert "structured" not in PruningStrategy().capability(CPU, task, LSTMNet()).allowed["method"]
    mlp = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    assert "structured" in PruningStrategy().capability(CPU, task, mlp).allowed["method"]


def test_a_regression_averages_outputs_and_offers_no_stacking() -> None:
    task = _task(lambda: nn.Linear(4, 1), X[:, :1] * 2)
    assert task.kind == "regression" and task.metric_fn().name == "mse"
    cap = EnsemblingStrategy().capability(CPU, task, nn.Linear(4, 1))
    assert cap.allowed["method"] == ["average"] and "regression" in cap.reason
    a, b = nn.Linear(4, 1), nn.Linear(4, 1)
    with torch.no_grad():
        assert torch.allclose(AverageEnsemble([a, b], "regression")(X), (a(X) + b(X)) / 2)
        # A classifier's members are averaged as probabilities (log-probabilities back), never raw scores.
        probs = AverageEnsemble([a, b], "classification")(X).exp()
        assert torch.allclose(probs.sum(dim=1), torch.ones(32))


def test_an_ensemble_keeps_the_shape_of_its_members_outputs() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.lin(x), torch.zeros(1)

    out, hidden = AverageEnsemble([Pair(), Pair()])(X)  # (output, hidden) code still unpacks it
    assert out.shape == (32, 3) and hidden.shape == (1,)


def test_generative_tasks_have_no_ensemble_or_distillation() -> None:
    data = [x for x in X]
    task = validate_task(Task(model=lambda: nn.Linear(4, 4), train_data=data, val_data=data,
                              loss=lambda out, inputs: nn.functional.mse_loss(out, inputs), student=lambda size: nn.Linear(4, 4)))
    assert task.kind == "generative"
    assert not EnsemblingStrategy().capability(CPU, task, nn.Linear(4, 4)).supported
    assert not DistillationStrategy().capability(CPU, task, nn.Linear(4, 4)).supported


def test_distillation_of_a_regression_is_mse_and_of_tokens_per_token() -> None:
    student, teacher = torch.randn(8, 1), torch.randn(8)
    assert torch.isclose(kd_loss(student, teacher, 4.0, "regression"), nn.functional.mse_loss(student.squeeze(1), teacher))
    tokens = torch.randn(2, 5, 7)
    per_token = kd_loss(tokens, tokens.flip(0), 2.0, "sequence")
    assert torch.isclose(per_token, kd_loss(tokens.reshape(10, 7), tokens.flip(0).reshape(10, 7), 2.0))
    assert kd_loss(tokens, tokens, 2.0, "sequence").abs() < 1e-5
