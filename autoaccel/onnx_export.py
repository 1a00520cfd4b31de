"""Exporting a model to ONNX, and checking an exported graph by loading it back in ONNX Runtime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autoaccel.errors import TrialFailure


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Export with a dynamic batch axis. The TorchScript exporter is used on purpose: it needs no onnxscript
    and handles the plain feed-forward models this tool serves."""
    path = Path(path)
    model = getattr(model, "_orig_mod", model).eval().cpu()  # a compiled module exports as its original
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example.cpu(),), str(path), dynamo=False, input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means "this graph does not export"
            raise TrialFailure(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                               kind="unsupported") from exc
    return path


def onnx_feed(inputs: torch.Tensor) -> np.ndarray:
    """An input as ONNX Runtime takes it: floating tensors as float32 (the exported graph's input type), integer
    ones (token ids, indices) in their own dtype, which a float cast would corrupt."""
    tensor = inputs.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


def run_onnx(path: str | Path, inputs: torch.Tensor) -> torch.Tensor:
    """The graph at ``path`` run on ``inputs`` by ONNX Runtime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: onnx_feed(inputs)})[0])


def check_onnx(path: Path, model: nn.Module, inputs: torch.Tensor) -> float:
    """Load ``path`` in onnxruntime, run ``inputs``, return the largest absolute difference to ``model``."""
    with torch.no_grad():
        expected = model.eval()(inputs).float()
    return float((expected - run_onnx(path, inputs)).abs().max())
