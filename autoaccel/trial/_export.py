"""Writing the recommended model in forms that run: a state dict always, ONNX where the graph exports,
checked by loading it back in ONNX Runtime and comparing with PyTorch's output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from autoaccel.errors import TrialFailure
from autoaccel.plugin._onnx import check_onnx, export_onnx, run_onnx
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import Task, call, map_tensors, prediction, sample_batch
from autoaccel.trial import _lifecycle as lifecycle
from autoaccel.trial._checkpoints import CheckpointCache
from autoaccel.trial._evaluate import latency_input
from autoaccel.trial._run import serve, served_model, trained_model

# fp32 graphs must agree with PyTorch to this absolute tolerance (ORT reorders float sums, so not bit-exact).
ONNX_ATOL = 1e-4


def export_model(task: Task, plan: Pipeline, out: Path, seed: int = 0, cache_dir: str | None = None) -> dict[str, Any]:
    """Write ``out/model.pt`` (state dict of the served model), ``out/trained.pt`` (weights before post-training
    transforms) and ``out/model.onnx`` where it exports; returns what was written and what was not, and why.

    A plan whose strategy serves a graph of its own (an int8 ONNX Runtime graph) has that strategy write it
    (the ``export`` hook); it is judged by how often its predictions agree with the PyTorch model's.
    """
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"files": {}, "notes": []}
    raw = trained_model(task, plan, seed, CheckpointCache(cache_dir) if cache_dir else None).model
    torch.save(raw.state_dict(), out / "trained.pt")
    report["files"]["trained"] = str(out / "trained.pt")
    model = served_model(task, plan, seed, cache_dir)
    torch.save(model.state_dict(), out / "model.pt")
    report["files"]["state_dict"] = str(out / "model.pt")
    example = latency_input(task.val_data, task.example_input)
    # Float inputs as float32, token ids kept integers.
    # Checked on validation inputs, or on the example input when the Task gives one (a model called in its own
    # layout, which the dataset's items are not in).
    sample = example if task.example_input is not None else sample_batch(task.val_data, min(16, len(task.val_data)))
    probe = map_tensors(lambda t: t.float() if t.is_floating_point() else t, sample)
    try:
        served = serve(task, plan, model, example, seed)
        if lifecycle.export(plan, served, out / "model.onnx"):
            # A quantized graph is not expected to match fp32 PyTorch closely; agreement is judged on predictions.
            with torch.no_grad():
                mine = prediction(call(model, probe))
                agree = float((run_onnx(out / "model.onnx", probe).argmax(-1) == mine.argmax(-1)).float().mean())
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
