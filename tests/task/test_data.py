"""data.py and the dataloader plugin: cached batches, the training loader the dataloader section configures,
evaluation and timing batches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autoaccel.plugin._contexts import TrainingSetup
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugins.dataloader import CachedBatches, whole
from autoaccel.task._data import eval_batches, materialize, sample_batch, train_batches
from autoaccel.trial._train import setup_for
from tiny_digits import make_task, with_params

N = 103  # not a multiple of the batch size: the last batch is short


def indexed_dataset(n: int = N) -> TensorDataset:
    """Inputs carry their own index, so a batch says which samples it holds."""
    idx = torch.arange(n)
    return TensorDataset(idx.float().unsqueeze(1).repeat(1, 3), idx)


def epoch_targets(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[int]:
    """The targets (= sample indices) of one pass over ``batches``, in the order they came."""
    return [int(v) for _, targets in batches for v in targets]


def test_cached_batches_cover_every_sample_exactly_once_per_epoch() -> None:
    batches = CachedBatches(whole(indexed_dataset()), batch_size=10, seed=0)
    assert len(batches) == 11
    epochs = [epoch_targets(batches) for _ in range(3)]
    for seen in epochs:
        assert sorted(seen) == list(range(N))
    assert epochs[0] != list(range(N)), "shuffled"
    assert epochs[0] != epochs[1], "a new order each epoch"
    sizes = [len(t) for _, t in batches]
    assert sizes == [10] * 10 + [3]


def test_cached_batches_keep_inputs_and_targets_aligned() -> None:
    for x, y in CachedBatches(whole(indexed_dataset()), batch_size=16, seed=1):
        assert torch.equal(x[:, 0].long(), y)


def test_cached_batches_same_seed_same_order() -> None:
    data = whole(indexed_dataset())
    a = epoch_targets(CachedBatches(data, 10, seed=7))
    b = epoch_targets(CachedBatches(data, 10, seed=7))
    assert a == b
    assert epoch_targets(CachedBatches(data, 10, seed=8)) != a


def test_a_cached_dataset_of_dict_items_gives_the_dict_batches_a_dataloader_would() -> None:
    class Sentences(torch.utils.data.Dataset):  # a tokenizer's items: input_ids, attention_mask, labels
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": torch.full((4,), i), "attention_mask": torch.ones(4), "labels": torch.tensor(i)}

    data = whole(Sentences(), chunk=30)
    assert set(data) == {"input_ids", "attention_mask", "labels"} and data["input_ids"].shape == (N, 4)
    batches = list(CachedBatches(data, batch_size=16, seed=0))
    assert all(torch.equal(b["input_ids"][:, 0], b["labels"]) for b in batches)  # the rows stay together
    assert sorted(int(v) for b in batches for v in b["labels"]) == list(range(N))


def test_materialize_stacks_the_whole_dataset_across_chunks() -> None:
    inputs, targets = materialize(indexed_dataset(), chunk=20)
    assert inputs.shape == (N, 3) and targets.shape == (N,)
    assert torch.equal(targets, torch.arange(N))


def setup(params: dict[str, Any], device: str = "cpu") -> TrainingSetup:
    """The training run the core sets up for a plan with the dataloader ``params`` (no prefix) on ``indexed_dataset``."""
    task = make_task(train_data=indexed_dataset(), val_data=indexed_dataset(), model=lambda: nn.Linear(3, 2))
    plan = with_params(Pipeline(device=device, batch_size=32, lr=0.1, epochs=1), {f"dataloader.{k}": v for k, v in params.items()})
    return setup_for(task.model(), task, plan, seed=0)


def test_train_batches_with_cache_are_cached_batches() -> None:
    batches = setup({"cache": True}).batches
    assert isinstance(batches, CachedBatches)
    assert batches.batch_size == 32
    assert sorted(epoch_targets(batches)) == list(range(N))


def test_train_batches_honour_workers_and_drop_pin_memory_off_cuda() -> None:
    loader = setup({"num_workers": 1, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 4}).batches
    assert isinstance(loader, DataLoader)
    assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor) == (1, True, 4)
    assert loader.pin_memory is False
    assert loader.batch_size == 32
    assert sorted(epoch_targets(loader)) == list(range(N))


def test_train_batches_without_workers_ignore_worker_only_settings() -> None:
    loader = train_batches(indexed_dataset(), batch_size=32, seed=0)
    assert loader.num_workers == 0 and loader.persistent_workers is False
    assert sorted(epoch_targets(loader)) == list(range(N))
    # The worker-only settings mean nothing without workers: the plan is the user's, and so is the loader.
    plain = setup({"num_workers": 0, "persistent_workers": True, "prefetch_factor": 8})
    assert "dataloader" not in plain.plan.sections
    assert isinstance(plain.batches, DataLoader) and plain.batches.num_workers == 0 and plain.batches.persistent_workers is False
    assert sorted(epoch_targets(plain.batches)) == list(range(N))


def test_eval_batches_are_in_order() -> None:
    assert epoch_targets(eval_batches(indexed_dataset(), 25)) == list(range(N))


def test_sample_batch_cycles_through_a_small_dataset() -> None:
    batch = sample_batch(indexed_dataset(5), 12)
    assert batch.shape == (12, 3)
    assert batch[:, 0].long().tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
