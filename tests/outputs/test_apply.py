"""autoaccel apply / autoaccel.apply(): recipe -> training config, transformed model, verified export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import autoaccel
from autoaccel.cli import main
from autoaccel.errors import AutoaccelError
from autoaccel.plugins.ensembling.models import AverageEnsemble
from autoaccel.plugins.runtime.session import OrtModule


def write_recipe(path: Path, params: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"autoaccel_recipe": 1, "params": params}))
    return path


def test_cli_apply_exports_onnx_that_matches_pytorch(tmp_path: Path, tiny_task_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path / "recipe.yaml", {"batch_size.size": 64, "batch_size.lr_scaling": "linear",
                                                      "scheduler.kind": "cosine"})
    out = tmp_path / "model.onnx"
    assert main(["apply", str(recipe), str(tiny_task_file), "--export", "onnx", "--out", str(out)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["training"]["batch_size"] == 64
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


def answers_recipe(path: Path, task: str = "tiny") -> Path:
    """A recipe as optimize writes it: a primary answer and every answer under `answers`."""
    train = {"trial": 3, "params": {"batch_size.size": 64, "scheduler.kind": "cosine"}, "members": []}
    serve = {"trial": 5, "params": {"quantization.method": "dynamic_int8"}, "members": []}
    combined = {"trial": 9, "params": {**train["params"], **serve["params"]}, "members": []}
    path.write_text(yaml.safe_dump({"autoaccel_recipe": 2, "task": task, "goal": "combined", "trial": 9,
                                    "params": combined["params"],
                                    "answers": {"train": train, "serve": serve, "combined": combined}}))
    return path


def test_the_same_recipe_task_and_seed_give_bit_identical_weights(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = answers_recipe(tmp_path / "recipe.yaml")
    first = autoaccel.apply(tiny_task, recipe, goal="train")
    second = autoaccel.apply(tiny_task, recipe, goal="train")
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert first.config["batch_size"] == 64 and "trained now" in first.training


def test_goal_picks_an_answer_and_defaults_to_combined(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = answers_recipe(tmp_path / "recipe.yaml")
    combined = autoaccel.apply(tiny_task, recipe)
    assert combined.plan.batch_size == 64 and combined.plan.section("quantization").method == "dynamic_int8"
    serve = autoaccel.apply(tiny_task, recipe, goal="serve")
    assert serve.plan.batch_size == 32 and serve.plan.section("quantization").method == "dynamic_int8"
    data = yaml.safe_load(recipe.read_text())
    del data["answers"]["combined"], data["goal"]
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(data))
    assert autoaccel.apply(tiny_task, tmp_path / "two.yaml").plan.batch_size == 64  # no combined: the train answer
    with pytest.raises(AutoaccelError, match="no combined answer in this recipe .it has: serve, train."):
        autoaccel.apply(tiny_task, tmp_path / "two.yaml", goal="combined")


def test_an_ensemble_recipe_trains_its_members_without_a_cache(tiny_task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    member = {"trial": 2, "params": {"scheduler.kind": "cosine"}, "train_time": 0.5}
    recipe = {"task": "tiny", "params": {"ensembling.k": 2}, "members": [member]}
    applied = autoaccel.apply(tiny_task, recipe)
    assert isinstance(applied.model, AverageEnsemble) and len(applied.model.members) == 2
    assert applied.plan.members[0].plan.section("scheduler").kind == "cosine"
    with pytest.raises(AutoaccelError, match="serves several models.*pass the Task"):
        autoaccel.apply(nn.Sequential(nn.Linear(64, 10)), recipe)


def test_a_recipe_of_another_task_exits_2_naming_both(tmp_path: Path, tiny_task_file: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    recipe = answers_recipe(tmp_path / "recipe.yaml", task="resnet50")
    assert main(["apply", str(recipe), str(tiny_task_file), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'resnet50'" in err[0] and "'tiny'" in err[0]


def test_a_second_apply_with_the_same_cache_reuses_the_checkpoint(tmp_path: Path, tiny_task_file: Path) -> None:
    """In separate processes, as a user runs it: the task's fingerprint must not depend on how the file was
    imported, or the second apply would train again."""
    recipe = answers_recipe(tmp_path / "recipe.yaml")
    said = []
    for i in range(2):
        done = subprocess.run([sys.executable, "-m", "autoaccel.cli", "apply", str(recipe), str(tiny_task_file), "--goal", "train",
                               "--export", "state_dict", "--out", str(tmp_path / f"m{i}.pt"), "--cache", str(tmp_path / "cache")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        said.append(yaml.safe_load(done.stdout)["weights"])
    assert said[0].startswith("trained now") and said[1].startswith("reused the cached checkpoint")
    a, b = torch.load(tmp_path / "m0.pt"), torch.load(tmp_path / "m1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_export_leaves_no_file_and_one_line(tmp_path: Path, tiny_task_file: Path,
                                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import autoaccel.plugin._onnx as ort

    def broken(model: nn.Module, example: torch.Tensor, path: Path) -> None:
        Path(path).write_bytes(b"half an onnx file")
        raise RuntimeError("Exporting the operator 'aten::embedding_bag' to ONNX opset\nis not supported")

    monkeypatch.setattr(ort, "export_onnx", broken)
    recipe = write_recipe(tmp_path / "recipe.yaml", {"batch_size.size": 64})
    out = tmp_path / "model.onnx"
    assert main(["apply", str(recipe), str(tiny_task_file), "--export", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--export onnx" in err[0] and "embedding_bag" in err[0]
    assert not out.exists()
