"""A small ResNet on scikit-learn's handwritten digits, upscaled to 32x32 and trained with shift augmentation.

    autoaccel optimize examples/resnet_digits.py

A real, longer training on real data shipped offline with scikit-learn: the 1,797 8x8 digits upscaled
(bilinear) to 1x32x32, random shifts of up to 2 pixels while training, a CIFAR-style ResNet (basic blocks with
BatchNorm, 32/64/128 channels) and the usual recipe: SGD with momentum 0.9 and weight decay 5e-4, lr 0.05, batch
32, cosine schedule stepped per epoch.

AUTOACCEL_EPOCHS sets the number of epochs (default 16). One full training at 16 epochs (720 steps) took 37 s to
70 s on 2-core CPUs (Intel Xeon, torch 2.13, 2 threads; the machines these were measured on differ) and reached
99.7% validation accuracy (359/360). AUTOACCEL_EPOCHS=80 makes one training five times as long (4 to 6 min),
AUTOACCEL_EPOCHS=120 over 5 min on the faster of them; either is longer than the whole default 5-minute budget: the search then trains every candidate on the schedule compressed to a small share of its steps
(see the README, "Trainings longer than a few seconds: fidelity").
"""

import os

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from autoaccel import Task

EPOCHS = int(os.environ.get("AUTOACCEL_EPOCHS", "16"))
SIZE = 32  # images are upscaled from 8x8 to SIZE x SIZE
SHIFT = 2  # training images are shifted by up to this many pixels


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection (a 1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    """A stem convolution, three stages of ``blocks`` basic blocks (width, 2x, 4x channels; strides 1, 2, 2),
    global average pooling and a linear classifier."""

    def __init__(self, width: int = 32, blocks: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for i, stride in enumerate((1, 2, 2)):
            cout = width * 2**i
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, stride if b == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class ShiftedImages(Dataset):
    """(image, label) pairs, each image shifted by up to ``shift`` pixels at random on every read: padded with
    zeros by ``shift`` and cropped back to its size at a random offset (torch's global RNG, so it follows the
    seed)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, shift: int = SHIFT) -> None:
        self.images, self.labels, self.shift = images, labels, shift

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        h, w = image.shape[-2:]
        padded = F.pad(image, (self.shift,) * 4)
        dy, dx = torch.randint(0, 2 * self.shift + 1, (2,)).tolist()
        return padded[:, dy:dy + h, dx:dx + w], self.labels[i]


def digits_datasets(seed: int = 0) -> tuple[ShiftedImages, TensorDataset]:
    """The 1,797 digits as (1, 32, 32) images in [0, 1] (8x8 upscaled bilinearly), split 80/20 with every class
    in both; the training set shifts its images at random, the validation set is plain."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    y = torch.tensor(y, dtype=torch.long)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return ShiftedImages(x_train, y_train), TensorDataset(x_val, y_val)


def task() -> Task:
    train_data, val_data = digits_datasets()
    return Task(
        model=DigitsResNet,
        train_data=train_data,
        val_data=val_data,
        optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4),
        epochs=EPOCHS,
        batch_size=32,
        lr=0.05,
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS),
        name="resnet_digits",
    )
