"""A zoo model as users bring them, on scikit-learn's digits upscaled to 3x32x32 (CIFAR-sized), random init.

    AUTOACCEL_ZOO=timm:resnet18 autoaccel optimize bench/zoo/task.py

AUTOACCEL_ZOO names the model: ``timm:<name>`` (timm.create_model), ``torchvision:<name>``
(torchvision.models.<name>), or ``hf:<family>`` (a tiny transformers model built from its config: resnet,
mobilenet_v2, efficientnet, convnext, vit, bert; what the CI's zoo suite runs, no torchvision needed).
AUTOACCEL_EPOCHS sets the epochs (default 3), AUTOACCEL_BATCH the batch size (default 64): the recipe is AdamW,
lr 1e-3, as the timm and Hugging Face examples train. Nothing is downloaded: the weights are random.

timm and torchvision need the zoo venv (../shared/tools/zoo-venv.sh: torch 2.14.1 with torchvision 0.29.1);
the ``hf:`` families run beside the CPU torch wheel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from families import build, digits  # noqa: E402 - this folder, beside the task file

from autoaccel import Task  # noqa: E402

NAME = os.environ.get("AUTOACCEL_ZOO", "timm:resnet18")
EPOCHS = int(os.environ.get("AUTOACCEL_EPOCHS", "3"))
BATCH = int(os.environ.get("AUTOACCEL_BATCH", "64"))


def task() -> Task:
    model, kind = build(NAME)
    train_data, val_data = digits(kind)
    return Task(
        model=model,
        train_data=train_data,
        val_data=val_data,
        optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.05),
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=1e-3,
        name=NAME.replace(":", "_").replace("/", "_"),
    )
