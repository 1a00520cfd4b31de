"""autoaccel apply / autoaccel.apply(): recipe -> training config, transformed model, verified export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import autoaccel
from autoaccel.cli import main
from autoaccel.onnx_runtime import OrtModule


def write_recipe(path: Path, params: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"autoaccel_recipe": 1, "params": params}))
    return path


def test_cli_apply_exports_onnx_that_matches_pytorch(tmp_path: Path, tiny_task_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path / "recipe.yaml", {"batch_size.size": 64, "batch_size.lr_scaling": "linear",
                                                      "scheduler.kind": "cosine"})
    out = tmp_path / "model.onnx"
    assert main(["apply", str(recipe), str(tiny_task_file), "--export", "onnx", "--out", str(out)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["training"]["dataloader"]["batch_size"] == 64
    assert printed["training"]["scheduler"]["kind"] == "cosine"
    assert printed["export"]["max_abs_diff"] <= 1e-4
    session = OrtModule(out)
    assert session(torch.rand(3, 64)).shape == (3, 10)


def test_api_apply_to_a_trained_model_quantizes_it(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {"quantization.method": "dynamic_int8", "pruning.method": "structured",
                                                "pruning.amount": 0.5})
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    applied = autoaccel.apply(model, recipe)
    linears = [m for m in applied.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert [m.out_features for m in linears] == [16, 10]  # pruned first, then quantized: the phase order
    assert applied.model(torch.rand(2, 64)).shape == (2, 10)


def test_apply_errors_name_the_recipe(tmp_path: Path, tiny_task_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", str(tmp_path / "missing.yaml"), str(tiny_task_file), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.yaml: no such recipe file" in err[0]
    bad = write_recipe(tmp_path / "bad.yaml", {"warp_drive.factor": 9})
    assert main(["apply", str(bad), str(tiny_task_file), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "warp_drive" in capsys.readouterr().err
