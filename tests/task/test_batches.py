"""Batches of every common shape, end to end: a real trial trains, evaluates and serves each without a wrapper.

Pairs of (tensor, target), tuples of model arguments, lists, dicts called as ``model(**batch)`` whose outputs
carry their own loss (Hugging Face style), ``(features_dict, label)`` pairs, lone inputs with no target, and
per-token (sequence) models."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from autoaccel import Pipeline, Task
from autoaccel.task._batches import Arguments, call, features, move, own_loss, prediction, size, split
from autoaccel.task._task import validate_task
from autoaccel.trial._run import run_trial

N, D, C = 96, 6, 3


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # three learnable classes


class Items(Dataset):
    def __init__(self, make: Any) -> None:
        self.x, self.y = _data()
        self.make = make

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> Any:
        return self.make(self.x[i], self.y[i])


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(D // 2, C), nn.Linear(D - D // 2, C)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.a(left) + self.b(right)


class KeywordModel(nn.Module):
    """Hugging Face style: keyword inputs, ``labels`` optional, a dict of loss and logits back."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(D, C)

    def forward(self, features: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.net(features * mask)
        out: dict[str, Any] = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class Recurrent(nn.Module):
    """Returns (output, hidden), as an RNN language model does."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(D, C)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), torch.zeros(1)


SHAPES: dict[str, tuple[Any, Any]] = {
    "pair": (lambda x, y: (x, y), lambda: nn.Linear(D, C)),
    "list": (lambda x, y: [x, y], lambda: nn.Linear(D, C)),
    "tuple of arguments": (lambda x, y: ((x[: D // 2], x[D // 2:]), y), TwoInputs),
    "dict with labels": (lambda x, y: {"features": x, "mask": torch.ones(D), "labels": y}, KeywordModel),
    "(features dict, label)": (lambda x, y: ({"features": x, "mask": torch.ones(D)}, y), KeywordModel),
    "tuple outputs": (lambda x, y: (x, y), Recurrent),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_batch_shape_trains_evaluates_and_serves(shape: str) -> None:
    make, model = SHAPES[shape]
    task = validate_task(Task(model=model, train_data=Items(make), val_data=Items(make), epochs=3, batch_size=16, lr=0.5,
                              name=shape.replace(" ", "_")))
    assert task.kind == "classification" and task.metric_fn().name == "accuracy"
    plan = Pipeline(device="cpu", batch_size=16, lr=0.5, epochs=3)
    result = run_trial(task, plan, 0, 0.05)
    assert result.metrics["accuracy"] > 0.6, f"{shape}: it did not learn ({result.metrics['accuracy']})"
    assert result.details["metric"] == {"name": "accuracy", "direction": "maximize"}
    assert result.metrics["latency"] > 0 and result.metrics["train_throughput"] > 0


def test_a_lone_input_has_no_target_and_its_loss_sees_the_input() -> None:
    x, _ = _data()
    seen: list[bool] = []

    def reconstruction(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        seen.append(outputs.shape == inputs.shape)
        return nn.functional.mse_loss(outputs, inputs)

    data = [x[i] for i in range(N)]  # lone tensors: an autoencoder's data
    task = validate_task(Task(model=lambda: nn.Sequential(nn.Linear(D, 2), nn.Linear(2, D)), train_data=data, val_data=data,
                              loss=reconstruction, epochs=2, batch_size=16, lr=0.1, name="ae"))
    assert task.kind == "generative" and task.metric_fn().name == "loss"
    result = run_trial(task, Pipeline(device="cpu", batch_size=16, lr=0.1, epochs=2), 0, 0.05)
    assert all(seen) and seen
    assert result.metrics["accuracy"] < 0  # quality is the negated loss: lower loss is better
    assert result.ci95["accuracy"][0] <= result.metrics["accuracy"] <= result.ci95["accuracy"][1]


class TokenModel(nn.Module):
    """Per-token classes: (N, T) ids in, (N, T, V) scores out."""

    def __init__(self, vocab: int = 5) -> None:
        super().__init__()
        self.emb, self.out = nn.Embedding(vocab, 8), nn.Linear(8, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids))


def test_a_per_token_model_is_a_sequence_task_judged_by_perplexity() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 5, (N, 7), generator=g)
    data = TensorDataset(ids, (ids + 1) % 5)  # the next id: learnable per token
    task = validate_task(Task(model=TokenModel, train_data=data, val_data=data, epochs=4, batch_size=16, lr=0.5, name="tokens"))
    assert task.kind == "sequence" and task.metric_fn().name == "perplexity"
    result = run_trial(task, Pipeline(device="cpu", batch_size=16, lr=0.5, epochs=4), 0, 0.05)
    assert 1.0 <= -result.metrics["accuracy"] < 5.0  # better than guessing among 5 ids (perplexity 5)


def test_structures_move_and_split_recursively() -> None:
    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.zeros(4, 2), "nested": [torch.ones(4), (torch.zeros(4, dtype=torch.long), "text")],
             "pair": Pair(torch.ones(4), 3), "labels": torch.arange(4)}
    moved = move(batch, "cpu")
    assert isinstance(moved["pair"], Pair) and moved["nested"][1][1] == "text"
    assert size(batch) == 4 and size((torch.zeros(7, 3), torch.zeros(7))) == 7
    inputs, target = split(batch)
    assert inputs is batch and torch.equal(target, torch.arange(4))
    assert "labels" not in features(batch)
    assert split(torch.zeros(3))[1] is None and split((torch.zeros(3),))[1] is None
    with pytest.raises(ValueError, match="an item of 3 values"):
        split((torch.zeros(1), torch.zeros(1), torch.zeros(1)))


def test_outputs_of_every_common_shape_give_their_prediction_and_loss() -> None:
    logits, loss = torch.randn(2, 3), torch.tensor(0.5)

    class Output:  # a ModelOutput-like object with attributes
        def __init__(self) -> None:
            self.loss, self.logits = loss, logits

    assert prediction(logits) is logits
    assert prediction((logits, torch.zeros(1))) is logits
    assert prediction({"loss": loss, "logits": logits}) is logits
    assert prediction({"loss": loss, "scores": logits}) is logits  # the first tensor that is not the loss
    assert prediction(Output()) is logits and own_loss(Output()) is loss
    assert own_loss(logits) is None and own_loss({"logits": logits}) is None
    model = KeywordModel()
    assert call(model, {"features": torch.zeros(2, D), "mask": torch.ones(2, D)})["logits"].shape == (2, C)
    assert call(TwoInputs(), (torch.zeros(2, 3), torch.zeros(2, 3))).shape == (2, C)
    assert call(Recurrent(), Arguments((torch.zeros(2, D),), {"hidden": None}))[0].shape == (2, C)
