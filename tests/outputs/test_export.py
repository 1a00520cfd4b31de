"""Export: a state dict always, ONNX that loads in onnxruntime and agrees with PyTorch."""

from __future__ import annotations

from pathlib import Path

import torch

from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugins.runtime.session import OrtModule
from autoaccel.trial._export import ONNX_ATOL, export_model
from tiny_digits import make_mlp, with_params


def test_fp32_export_round_trips_through_onnx_runtime(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    report = export_model(tiny_task, plan, tmp_path / "model", cache_dir=str(tmp_path / "cache"))
    assert report["onnx_max_abs_diff"] <= ONNX_ATOL  # the tolerance the export promises
    session = OrtModule(report["files"]["onnx"])
    model = make_mlp()
    model.load_state_dict(torch.load(report["files"]["state_dict"], weights_only=True))
    x = torch.rand(7, 64)
    torch.testing.assert_close(session(x), model.eval()(x), atol=ONNX_ATOL, rtol=0)


def test_static_int8_export_is_the_quantized_graph(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = with_params(Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1), {"quantization.method": "static_int8_ort"})
    assert plan.engine() == "onnxruntime"
    report = export_model(tiny_task, plan, tmp_path / "model")
    assert Path(report["files"]["onnx"]).exists()
    assert report["onnx_prediction_agreement"] > 0.9


def test_a_graph_that_does_not_export_still_gets_a_state_dict(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = with_params(Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1), {"quantization.method": "dynamic_int8"})
    report = export_model(tiny_task, plan, tmp_path / "model")
    assert Path(report["files"]["state_dict"]).exists() and Path(report["files"]["trained"]).exists()
    if "onnx" not in report["files"]:
        assert any("no ONNX file" in n for n in report["notes"])
