"""The model families people start from, built as their libraries' READMEs show, with random weights (nothing is
downloaded), sized for 3x32x32 digits; and the digits themselves, as images or as token sentences.

``build(name)``: ``timm:<model>``, ``torchvision:<model>`` or ``hf:<family>``. The ``hf:`` families are tiny
transformers models from their configs (ResNetConfig, MobileNetV2Config, EfficientNetConfig, ConvNextConfig,
ViTConfig, BertConfig): the same architectures (BatchNorm and 1x1 feature maps, squeeze-excite and hard-swish,
depthwise convolutions and LayerNorm, attention, dict batches) without torchvision, so the CI's zoo suite
(tests/plugins/test_zoo.py) runs them beside the CPU torch wheel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import Dataset, TensorDataset

SIZE = 32
CLASSES = 10
PIXELS, LEVELS = 64, 17  # a digit read as a sentence: its 64 pixel intensities, 0..16, after a [CLS] token


def _hf(family: str) -> Callable[[], nn.Module]:
    import transformers as tf

    configs: dict[str, Callable[[], nn.Module]] = {
        # depths and widths cut to a few blocks: the layers people use, at CI's size
        "resnet": lambda: tf.ResNetForImageClassification(tf.ResNetConfig(
            num_channels=3, embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=CLASSES)),
        "mobilenet_v2": lambda: tf.MobileNetV2ForImageClassification(tf.MobileNetV2Config(
            num_channels=3, image_size=SIZE, depth_multiplier=0.35, num_labels=CLASSES)),
        "efficientnet": lambda: tf.EfficientNetForImageClassification(tf.EfficientNetConfig(
            num_channels=3, image_size=SIZE, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320,
            num_labels=CLASSES)),
        "convnext": lambda: tf.ConvNextForImageClassification(tf.ConvNextConfig(
            num_channels=3, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], patch_size=2, num_labels=CLASSES)),
        "vit": lambda: tf.ViTForImageClassification(tf.ViTConfig(
            image_size=SIZE, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, num_labels=CLASSES)),
        "bert": lambda: tf.BertForSequenceClassification(tf.BertConfig(
            vocab_size=LEVELS + 1, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=PIXELS + 1, num_labels=CLASSES)),
    }
    if family not in configs:
        raise ValueError(f"AUTOACCEL_ZOO: hf:{family} is not one of hf:{', hf:'.join(configs)}")
    return configs[family]


HF_FAMILIES = ("resnet", "mobilenet_v2", "efficientnet", "convnext", "vit", "bert")


def build(name: str) -> tuple[Callable[[], nn.Module], str]:
    """The model factory for ``name`` and its input kind ("image" or "text")."""
    source, _, model = name.partition(":")
    if source == "timm":
        import timm

        extra: dict[str, Any] = {"img_size": SIZE} if model.startswith(("vit", "deit")) else {}
        return (lambda: timm.create_model(model, pretrained=False, num_classes=CLASSES, **extra)), "image"
    if source == "torchvision":
        import torchvision

        return (lambda: getattr(torchvision.models, model)(weights=None, num_classes=CLASSES)), "image"
    if source == "hf":
        return _hf(model), "text" if model == "bert" else "image"
    raise ValueError(f"AUTOACCEL_ZOO: expected timm:<model>, torchvision:<model> or hf:<family>, got {name!r}")


class Sentences(Dataset):
    """A digit as a tokenizer's output: input_ids ([CLS] and its 64 pixel levels), attention_mask, labels."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor) -> None:
        self.ids = torch.cat([torch.full((len(pixels), 1), LEVELS), pixels.long()], dim=1)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def digits(kind: str, limit: int | None = None) -> tuple[Dataset, Dataset]:
    """The 1,797 digits split 80/20 (every class in both): 3x32x32 images in [0, 1] (8x8 upscaled bilinearly,
    the gray channel repeated, as CIFAR-sized inputs), or token sentences. ``limit``: the first rows of each."""
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(torch.tensor(x, dtype=torch.float32), torch.tensor(y),
                                                      test_size=0.2, random_state=0, stratify=y)
    if limit is not None:
        x_train, y_train, x_val, y_val = x_train[:limit], y_train[:limit], x_val[:limit], y_val[:limit]
    if kind == "text":
        return Sentences(x_train, y_train), Sentences(x_val, y_val)

    def images(rows: torch.Tensor) -> torch.Tensor:
        small = rows.reshape(-1, 1, 8, 8) / 16.0
        return F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1).contiguous()

    return TensorDataset(images(x_train), y_train), TensorDataset(images(x_val), y_val)
