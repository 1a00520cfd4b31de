"""Exporting a model to ONNX, and checking an exported graph by loading it back in ONNX Runtime.

Inputs may be a tensor, a tuple of positional arguments or a dict of keyword arguments (a Hugging Face-style
``model(**batch)``): the graph takes them as flat, named inputs (``input``; ``input_0``, ``input_1``; the dict's
keys), each with a dynamic batch axis (every axis of token ids), and returns the tensors of the model's outputs
flat (``output`` first: the logits of a ModelOutput, the first item of a tuple), their structure kept in a
``Layout`` for a session to rebuild.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils import _pytree as pytree

from autoaccel.errors import TrialFailure
from autoaccel.task import call, evaluating, move, prediction


def input_names(example: Any) -> list[str]:
    """The graph's input names for inputs shaped like ``example``."""
    if isinstance(example, Mapping):
        return [str(k) for k in example]
    if isinstance(example, (tuple, list)):
        return [f"input_{i}" for i in range(len(example))]
    return ["input"]


def flat_inputs(inputs: Any) -> list[Any]:
    """The inputs as the graph's flat list, in ``input_names`` order."""
    if isinstance(inputs, Mapping):
        return list(inputs.values())
    if isinstance(inputs, (tuple, list)):
        return list(inputs)
    return [inputs]


@dataclass(frozen=True)
class Layout:
    """The structure of a model's outputs (``(log_probs, (h, c))``, a ModelOutput): the graph returns their
    tensors flat, in this order, and a session rebuilds the structure from them (``rebuild``), so whoever calls
    the served model (the Task's own evaluation_step) gets what the PyTorch model returned."""

    spec: Any
    leaves: tuple[Any, ...]  # the example run's leaves: tensors are replaced by the graph's, the rest kept

    @classmethod
    def of(cls, model: nn.Module, example: Any) -> "Layout":
        with torch.no_grad(), evaluating(model):
            leaves, spec = pytree.tree_flatten(call(model, example))
        return cls(spec, tuple(None if isinstance(x, torch.Tensor) else x for x in leaves))

    @property
    def tensors(self) -> int:
        return sum(x is None for x in self.leaves)

    def flat(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        return tuple(x for x in pytree.tree_flatten(outputs)[0] if isinstance(x, torch.Tensor))

    def rebuild(self, tensors: list[torch.Tensor]) -> Any:
        it = iter(tensors)
        return pytree.tree_unflatten([next(it) if x is None else x for x in self.leaves], self.spec)


class _Flat(nn.Module):
    """The model behind flat positional tensors, returning its outputs' tensors flat: what the exporter traces."""

    def __init__(self, model: nn.Module, example: Any, layout: Layout) -> None:
        super().__init__()
        self.model = model
        self.keys = list(example) if isinstance(example, Mapping) else None
        self.layout = layout

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs: Any = dict(zip(self.keys, args)) if self.keys is not None else (args[0] if len(args) == 1 else args)
        return self.layout.flat(call(self.model, inputs))


def export_onnx(model: nn.Module, example: Any, path: str | Path) -> Path:
    """Export with a dynamic batch axis, in eval mode; the model is left in the mode and on the device it was.
    The TorchScript exporter is used on purpose: it needs no onnxscript and handles the plain models this tool
    serves."""
    path = Path(path)
    model = getattr(model, "_orig_mod", model)  # a compiled module exports as its original
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    names = input_names(example)
    args = tuple(t.cpu() if isinstance(t, torch.Tensor) else t for t in flat_inputs(example))
    # The batch axis is dynamic; token ids' every axis is (sequences vary in length, and a (seq, batch) model's
    # batch is not on axis 0).
    axes = {name: ({i: f"{name}_{i}" for i in range(t.ndim)} if isinstance(t, torch.Tensor) and not t.is_floating_point()
                   else {0: "batch"}) for name, t in zip(names, args)}
    with warnings.catch_warnings(), evaluating(model.cpu()):
        warnings.simplefilter("ignore")
        try:
            layout = Layout.of(model, move(example, "cpu"))
            outputs = ["output"] + [f"output_{i}" for i in range(1, layout.tensors)]
            # The wrapper in eval mode too: the exporter restores the mode of the module it was given afterwards,
            # recursively, and a new module's is training (which would put the user's model back in it).
            torch.onnx.export(_Flat(model, example, layout).eval(), args, str(path), dynamo=False, input_names=names,
                              output_names=outputs, dynamic_axes={**axes, "output": {0: "batch"}}, opset_version=17)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means "this graph does not export"
            raise TrialFailure(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                               kind="unsupported") from exc
        finally:
            model.to(device)
    return path


def onnx_feed(inputs: Any) -> np.ndarray:
    """An input as ONNX Runtime takes it: floating tensors as float32 (the exported graph's input type), integer
    ones (token ids, indices) in their own dtype, which a float cast would corrupt."""
    tensor = torch.as_tensor(inputs).detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


def onnx_feeds(names: list[str], inputs: Any) -> dict[str, np.ndarray]:
    """A session's feed dict for ``inputs`` (a tensor, a tuple or a dict), by the graph's input names."""
    if isinstance(inputs, Mapping):
        return {name: onnx_feed(inputs[name]) for name in names}
    return {name: onnx_feed(value) for name, value in zip(names, flat_inputs(inputs))}


def run_onnx(path: str | Path, inputs: Any) -> torch.Tensor:
    """The graph at ``path`` run on ``inputs`` by ONNX Runtime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return torch.from_numpy(session.run(None, onnx_feeds(names, inputs))[0])


def check_onnx(path: Path, model: nn.Module, inputs: Any) -> float:
    """Load ``path`` in onnxruntime, run ``inputs``, return the largest absolute difference to ``model``."""
    with torch.no_grad(), evaluating(model):
        expected = prediction(call(model, inputs)).float()
    return float((expected - run_onnx(path, inputs)).abs().max())
