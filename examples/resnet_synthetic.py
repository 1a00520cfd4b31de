"""torchvision ResNet on synthetic data of ImageNet shape: a GPU training-throughput example (no download).

    autoaccel optimize examples/resnet_synthetic.py --target cuda --mode train \\
        --objectives accuracy,train_throughput --max-accuracy-drop 1.0

Labels are random, so accuracy is chance level and only speed is being compared (hence the loose budget).
Set AUTOACCEL_RESNET=resnet18 for a lighter model. Needs torchvision (present on the GPU machines; PyPI's
torchvision does not import beside the CPU-only torch wheel).
"""

import os

import torch
from torch.utils.data import Dataset

from autoaccel import Task

try:
    import torchvision
except Exception as exc:  # noqa: BLE001 - a broken torchvision raises RuntimeError, not ImportError
    raise ImportError(f"examples/resnet_synthetic.py needs torchvision, which does not import here: {exc}") from exc

ARCH = os.environ.get("AUTOACCEL_RESNET", "resnet50")


class SyntheticImages(Dataset):
    """``size`` images of 3x224x224 drawn from a pool of 64 fixed random tensors (cheap to serve, real shapes)."""

    def __init__(self, size: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.pool = torch.randn(64, 3, 224, 224, generator=g)
        self.labels = torch.randint(0, 1000, (size,), generator=g)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pool[i % 64], self.labels[i]


def model() -> torch.nn.Module:
    return getattr(torchvision.models, ARCH)(weights=None, num_classes=1000)


def task() -> Task:
    return Task(
        model=model,
        train_data=SyntheticImages(2048, seed=0),
        val_data=SyntheticImages(512, seed=1),
        epochs=1,
        batch_size=64,
        lr=0.1,
        name=f"{ARCH}_synthetic",
    )
