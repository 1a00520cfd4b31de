"""The bundled examples beside digits, end to end as a user runs them: ``autoaccel optimize --trials 4`` reaches
an answer, and ``autoaccel apply`` exports it as an ONNX graph that ONNX Runtime runs.

- word_lm.py: pytorch/examples' (seq, batch) LSTM language model with its own steps, carried hidden state,
  gradient clipping and plateau annealing; perplexity with a relative budget;
- diabetes.py: a regression on scikit-learn's diabetes data, MSE with a relative budget;
- hf_digits.py: a Hugging Face BERT from a config, dict batches, the model's own loss and ModelOutput.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoaccel.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# Alone: each run needs an answer, a speedup beyond noise in 4 trials, which another test's load beside it can
# hide (the README's test command runs these after the rest, by themselves).
pytestmark = pytest.mark.slow  # end to end; what it checks does not depend on the machine's speed, so it runs with the rest


def _run(tmp_path: Path, example: str, *flags: str) -> dict[str, Any]:
    """Run the example as a user would and check what it wrote, whatever the answers say: whether 4 trials find a
    speedup beyond noise depends on the machine and its load, never a test's to demand."""
    out = tmp_path / "out"
    # Fewer re-measurement rounds and no ablation than a user's run: the suite checks the path, not the figures.
    assert main(["optimize", str(EXAMPLES / example), "--trials", "4", "--out", str(out), "--remeasure-rounds", "3",
                 "--no-ablation", *flags]) == 0
    pareto = json.loads((out / "pareto.json").read_text())
    assert {a["goal"] for a in pareto["answers"]} and all(a["verdict"] for a in pareto["answers"]), pareto["answers"]
    # The run's own exported model (the answer's, or the recipe's when no answer was given) loads in onnxruntime.
    import onnxruntime as ort

    onnx = Path(pareto["export"]["files"]["onnx"])
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    pareto["onnx_inputs"] = {i.name: i.type for i in session.get_inputs()}
    if any(a["given"] for a in pareto["answers"]):
        # An answer's recipe applies in the user's own pipeline and exports the same inputs.
        applied = tmp_path / "answer.onnx"
        assert main(["apply", str(out / "recipe.yaml"), str(EXAMPLES / example), "--export", "onnx", "--out", str(applied),
                     "--cache", str(out / "checkpoints")]) == 0
        inputs = {i.name: i.type for i in ort.InferenceSession(str(applied), providers=["CPUExecutionProvider"]).get_inputs()}
        assert inputs == pareto["onnx_inputs"]
    return pareto


def test_word_language_model_perplexity_with_a_relative_budget(tmp_path: Path, capsys: Any) -> None:
    pareto = _run(tmp_path, "word_lm.py", "--max-quality-drop", "2%")
    assert pareto["metric"] == {"name": "perplexity", "direction": "minimize"}
    base = pareto["baseline"]["metric"]["value"]
    assert 1 < base < 2001  # better than guessing among the vocabulary
    assert pareto["max_accuracy_drop"] == pytest.approx(0.02 * base)
    assert pareto["onnx_inputs"] == {"input_0": "tensor(int64)"}  # token ids stay integers
    out = capsys.readouterr().out
    assert "perplexity rise" in out and "Pareto front" in out


def test_diabetes_regression(tmp_path: Path) -> None:
    pareto = _run(tmp_path, "diabetes.py", "--max-quality-drop", "2%")
    assert pareto["metric"] == {"name": "mse", "direction": "minimize"}
    for point in [pareto["baseline"], *pareto["pareto"]]:
        assert np.isfinite(point["metric"]["value"]) and point["metric"]["value"] > 0


def test_hugging_face_model_with_dict_batches(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pareto = _run(tmp_path, "hf_digits.py")
    assert pareto["metric"] == {"name": "accuracy", "direction": "maximize"}
    assert pareto["baseline"]["metric"]["value"] > 0.5  # a small BERT learns the digits from pixel tokens
    assert set(pareto["onnx_inputs"]) == {"input_ids", "attention_mask"}  # named by the batch's keys, labels left out
