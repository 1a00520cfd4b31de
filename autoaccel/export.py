"""Writing the recommended model in forms that run: a state dict always, ONNX where the graph exports,
checked by loading it back in ONNX Runtime and comparing with PyTorch's output."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoaccel.data import sample_batch
from autoaccel.errors import TrialFailure
from autoaccel.evaluate import latency_input
from autoaccel.pipeline import Pipeline
from autoaccel.task import Task

# fp32 graphs must agree with PyTorch to this absolute tolerance (ORT reorders float sums, so not bit-exact).
ONNX_ATOL = 1e-4


def check_onnx(path: Path, model: nn.Module, inputs: torch.Tensor) -> float:
    """Load ``path`` in onnxruntime, run ``inputs``, return the largest absolute difference to ``model``."""
    from autoaccel.onnx_runtime import OrtModule

    session = OrtModule(path)
    with torch.no_grad():
        expected = model.eval()(inputs).float()
    got = session(inputs)
    return float((expected - got).abs().max())


def export_model(task: Task, plan: Pipeline, out: Path, seed: int = 0, cache_dir: str | None = None) -> dict[str, Any]:
    """Write ``out/model.pt`` (state dict of the served model), ``out/trained.pt`` (weights before post-training
    transforms) and ``out/model.onnx`` where it exports; returns what was written and what was not, and why."""
    from autoaccel.onnx_runtime import export_onnx, onnx_runtime
    from autoaccel.trial import served_model, trained_model

    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"files": {}, "notes": []}
    raw, _ = trained_model(task, plan, seed, None if cache_dir is None else _cache(cache_dir), {}, {}, {})
    torch.save(raw.state_dict(), out / "trained.pt")
    report["files"]["trained"] = str(out / "trained.pt")
    model = served_model(task, plan, seed, cache_dir)
    torch.save(model.state_dict(), out / "model.pt")
    report["files"]["state_dict"] = str(out / "model.pt")
    example = latency_input(task.val_data, task.example_input)
    probe = sample_batch(task.val_data, min(16, len(task.val_data))).float()
    try:
        if plan.runtime.kind == "onnxruntime":
            ort_model = onnx_runtime(model, example, plan.runtime.int8_static, _calibration(task, seed) if plan.runtime.int8_static else [],
                                     workdir=str(out / "onnx-work"))
            shutil.copyfile(ort_model.path, out / "model.onnx")
            shutil.rmtree(out / "onnx-work", ignore_errors=True)
            # An int8 graph is not expected to match fp32 PyTorch closely; agreement is judged on predictions.
            with torch.no_grad():
                agree = float((ort_model(probe).argmax(1) == model(probe).argmax(1)).float().mean())
            report["onnx_prediction_agreement"] = agree
        else:
            export_onnx(model, example, out / "model.onnx")
            diff = check_onnx(out / "model.onnx", model, probe)
            report["onnx_max_abs_diff"] = diff
            if diff > ONNX_ATOL:
                report["notes"].append(f"ONNX output differs from PyTorch by {diff:.2e} (> {ONNX_ATOL:g}); kept, but check it")
        report["files"]["onnx"] = str(out / "model.onnx")
    except TrialFailure as exc:
        report["notes"].append(f"no ONNX file: {exc.reason}")
    return report


def _cache(cache_dir: str) -> Any:
    from autoaccel.cache import CheckpointCache

    return CheckpointCache(cache_dir)


def _calibration(task: Task, seed: int) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(task.train_data), generator=g)[:256].tolist()
    return [torch.stack([task.train_data[i][0] for i in idx[s:s + 32]]).float().numpy() for s in range(0, len(idx), 32)]
