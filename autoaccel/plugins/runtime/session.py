"""ONNX Runtime sessions as a served model the core can evaluate and time like any module, shared by the
runtime and quantization strategies (a helper module, not a strategy)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoaccel.plugin import Layout, export_onnx, onnx_feeds


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a few batches of training inputs: arrays for a graph
    of one input, or dicts of arrays by input name."""

    def __init__(self, batches: list[Any], names: list[str]) -> None:
        self._it: Iterator[Any] = iter(batches)
        self.names = names

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        return dict(batch) if isinstance(batch, dict) else {self.names[0]: batch}

    def rewind(self) -> None:  # pragma: no cover - newer onnxruntime versions may call it
        pass


def quantize_static_int8(src: Path, dst: Path, calibration: list[Any]) -> Path:
    """Static int8 (QDQ, per-channel weights) calibrated on real training inputs."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = dst.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the raw graph without it
        prepared = src
    names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]
    # The quantizer logs through the root logger (one "Axis 1 is out-of-range" line per LayerNorm weight it
    # leaves per-tensor): noise on the user's terminal, not a fault.
    logging.disable(logging.WARNING)
    try:
        quantize_static(str(prepared), str(dst), _Calibration(calibration, names), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return dst


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


class OrtModule(nn.Module):
    """An ONNX Runtime session behind nn.Module's call, so evaluation and timing treat it as any model.

    ``onnx_path`` is the graph it runs: exported as it is (``write_graph``), never re-exported from the model.
    """

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None,
                 layout: Layout | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.onnx_path = str(path)
        wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(self.onnx_path, options, providers=wanted or ["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.layout = layout  # the structure of the PyTorch model's outputs, rebuilt around the graph's tensors

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # Called as the model was (a tensor, positional arguments, keyword arguments): fed by the graph's names.
        inputs: Any = kwargs if kwargs else (args[0] if len(args) == 1 else args)
        outs = [torch.from_numpy(o) for o in self.session.run(None, onnx_feeds(self.input_names, inputs))]
        return self.layout.rebuild(outs) if self.layout is not None else outs[0]


def onnx_runtime(model: nn.Module, example: Any, int8_static: bool, calibration: list[Any],
                 workdir: str | None = None, threads: int | None = None, providers: list[str] | None = None) -> OrtModule:
    """Export ``model``, optionally quantize it to static int8, and open an ORT session on it."""
    folder = Path(workdir or tempfile.mkdtemp(prefix="autoaccel-ort-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fp32 = export_onnx(model, example, folder / "model.onnx")
        path = quantize_static_int8(fp32, folder / "model.int8.onnx", calibration) if int8_static else fp32
        module = OrtModule(path, threads, providers, Layout.of(model, example))
    except BaseException:
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if workdir is None:
        # The graph files live as long as the session that may still be copied out (autoaccel apply --export).
        weakref.finalize(module, shutil.rmtree, folder, True)
    return module


def write_graph(served: nn.Module, path: Path) -> bool:
    """Copy the graph a session serves to ``path`` (the export hook of the strategies that serve one)."""
    if not isinstance(served, OrtModule):
        return False
    shutil.copyfile(served.onnx_path, path)
    return True


def available() -> tuple[bool, str]:
    try:
        import onnxruntime  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"onnxruntime does not import here ({type(exc).__name__}); pip install onnxruntime"
    return True, ""


def providers() -> list[str]:
    try:
        import onnxruntime as ort
    except Exception:  # noqa: BLE001
        return []
    return list(ort.get_available_providers())


__all__: list[Any] = ["PROVIDERS", "OrtModule", "available", "onnx_runtime", "providers", "quantize_static_int8"]
