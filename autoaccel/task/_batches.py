"""Batches of any common shape: a tensor, or tuples, lists and dicts of them (nested), as datasets and
Hugging Face-style models use them; and model outputs of any common shape (a tensor, a tuple whose first item
is the prediction, a ModelOutput or dict with ``logits`` and ``loss``).

A dataset item (and a collated batch) is read as:

- ``(inputs, target)``: a pair, the convention of torchvision and most datasets;
- ``{"input_ids": ..., "labels": ...}``: a dict is the model's keyword arguments (``model(**batch)``); its
  ``labels`` (when present) are the target, and the model usually computes its own loss from them;
- a lone tensor, or ``(inputs,)``: no target (an autoencoder, a VAE, a generative model).

Inputs are passed as they come: a tensor positionally, a dict as keyword arguments, a tuple or list as
positional arguments (``model(x, lengths)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

Batch = Any  # a tensor, or a (nested) tuple, list or dict of tensors and plain values
LABEL_KEYS = ("labels", "label", "targets", "target")


def tensors(batch: Batch) -> Iterator[torch.Tensor]:
    """Every tensor in the batch, depth first, in order."""
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from tensors(value)
    elif isinstance(batch, (tuple, list)):
        for value in batch:
            yield from tensors(value)


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], batch: Batch) -> Batch:
    """The batch with ``fn`` applied to every tensor, its structure (dict, tuple, namedtuple, list) kept."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        return type(batch)(**{k: map_tensors(fn, v) for k, v in batch.items()}) if _keyword_built(batch) else \
            {k: map_tensors(fn, v) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple is rebuilt field by field
        return type(batch)(*(map_tensors(fn, v) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_tensors(fn, v) for v in batch)
    return batch


def _keyword_built(mapping: Mapping[str, Any]) -> bool:
    # A ModelOutput or a BatchEncoding is rebuilt as its own class; a plain dict (or anything else) as a dict.
    return type(mapping) is not dict and hasattr(type(mapping), "__dataclass_fields__")


def move(batch: Batch, device: str, non_blocking: bool = False) -> Batch:
    """The batch on ``device``, every tensor moved (one already there is left as it is)."""
    kind = device.split(":")[0]
    return map_tensors(lambda t: t if t.device.type == kind else t.to(device, non_blocking=non_blocking), batch)


def size(batch: Batch) -> int:
    """Samples in the batch: the first dimension of its first tensor."""
    first = next(tensors(batch), None)
    if first is None or first.ndim == 0:
        raise ValueError(f"cannot tell the batch size of a {type(batch).__name__} with no batched tensor in it")
    return int(first.shape[0])


def split(batch: Batch) -> tuple[Batch, Any]:
    """``(inputs, target)`` of an item or a batch, the target None when there is none (see the module doc)."""
    if isinstance(batch, Mapping):
        target = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        return batch, target
    if isinstance(batch, (tuple, list)) and not hasattr(batch, "_fields"):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
        raise ValueError(f"an item of {len(batch)} values: expected (inputs, target), a dict of model arguments or "
                         "a lone input (or give the Task a training_step and evaluation_step that read it)")
    return batch, None


@dataclass(frozen=True)
class Arguments:
    """The arguments of one model call as the user's own step made it (seen by a forward hook)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block, each submodule's own mode restored after it: whatever runs the
    user's model outside training (export, a graph's layout, calibration, checks) must neither update BatchNorm's
    running statistics (nor fail on a batch of one reaching a 1x1 feature map) nor leave the model in another
    mode than it found it."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def call(model: Callable[..., Any], inputs: Batch) -> Any:
    """The model on its inputs: a dict as keyword arguments, a tuple or list as positional ones."""
    if isinstance(inputs, Arguments):
        return model(*inputs.args, **inputs.kwargs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)) and not hasattr(inputs, "_fields"):
        return model(*inputs)
    return model(inputs)


def prediction(outputs: Any) -> torch.Tensor:
    """The prediction in a model's outputs: a tensor itself; ``logits`` of a ModelOutput or dict (else its first
    tensor that is not the loss); the first item of a tuple (``(output, hidden)``, a VAE's ``(recon, mu, logvar)``)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping) or hasattr(outputs, "logits"):
        logits = outputs.get("logits") if isinstance(outputs, Mapping) else outputs.logits
        if isinstance(logits, torch.Tensor):
            return logits
        items = outputs.items() if isinstance(outputs, Mapping) else vars(outputs).items()
        for key, value in items:
            if key != "loss" and isinstance(value, torch.Tensor):
                return value
    if isinstance(outputs, (tuple, list)) and outputs:
        return prediction(outputs[0])
    raise ValueError(f"cannot find the prediction in model outputs of type {type(outputs).__name__} (expected a "
                     "tensor, a tuple starting with one, or a ModelOutput/dict with 'logits')")


def with_prediction(outputs: Any, new: torch.Tensor) -> Any:
    """``outputs`` with their prediction (as ``prediction`` finds it) replaced by ``new``, the rest kept: what a
    combination of models (an ensemble) returns, so that code unpacking ``(output, hidden)`` still runs."""
    if isinstance(outputs, torch.Tensor):
        return new
    if isinstance(outputs, (tuple, list)) and outputs and not hasattr(outputs, "_fields"):
        return type(outputs)([with_prediction(outputs[0], new), *outputs[1:]])
    if isinstance(outputs, Mapping):
        key = "logits" if isinstance(outputs.get("logits"), torch.Tensor) else next(
            k for k, v in outputs.items() if k != "loss" and isinstance(v, torch.Tensor))
        rest = {k: v for k, v in outputs.items() if k != "loss"}  # the members' loss is not the combination's
        return (type(outputs)(**{**rest, key: new}) if _keyword_built(outputs) else {**rest, key: new})
    return new


def own_loss(outputs: Any) -> torch.Tensor | None:
    """The loss a model computed itself (Hugging Face models given ``labels``), or None."""
    value = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    return value if isinstance(value, torch.Tensor) else None


def collate(dataset: Any, indices: range | list[int]) -> Batch:
    """Items of a map-style dataset collated into one batch (the DataLoader's default collation)."""
    return default_collate([dataset[i] for i in indices])


def describe(batch: Batch) -> str:
    """A short description of a batch's structure and shapes, for error lines: ``dict(input_ids=(2, 16), ...)``."""
    if isinstance(batch, torch.Tensor):
        return str(tuple(batch.shape))
    if isinstance(batch, Mapping):
        return "dict(" + ", ".join(f"{k}={describe(v)}" for k, v in batch.items()) + ")"
    if isinstance(batch, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in batch) + ")"
    return type(batch).__name__


def features(batch: Batch) -> Batch:
    """What a served model is called with: the inputs of an item or batch, without the labels of a dict (a model
    in production is not given the answer)."""
    inputs, _ = split(batch)
    if isinstance(inputs, Mapping):
        return {k: v for k, v in inputs.items() if k not in LABEL_KEYS}
    return inputs
