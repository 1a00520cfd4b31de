"""pytorch/examples' variational autoencoder on scikit-learn's digits (8x8 images, shipped offline), as written:
``forward`` returns ``(recon, mu, logvar)``, and the loss and the metric both unpack the tuple.

    autoaccel optimize examples/vae_digits.py

The data has no targets: the loss and the metric receive the model's outputs and its inputs. The metric is the
evidence lower bound per sample (higher is better), computed once on the whole validation set.
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from autoaccel import Task

LATENT = 8


class VAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc21, self.fc22 = nn.Linear(128, LATENT), nn.Linear(128, LATENT)
        self.fc3, self.fc4 = nn.Linear(LATENT, 128), nn.Linear(128, 64)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x))
        return self.fc21(h), self.fc22(h)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mu  # evaluation decodes the mean: the same outputs for the same inputs
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, 64))
        return torch.sigmoid(self.fc4(F.relu(self.fc3(self.reparameterize(mu, logvar))))), mu, logvar


def negative_elbo(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Reconstruction (binary cross-entropy) plus the KL divergence to the prior, summed over the batch."""
    recon, mu, logvar = outputs
    bce = F.binary_cross_entropy(recon, x.view(-1, 64), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return negative_elbo(outputs, x) / len(x)


def elbo(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], x: torch.Tensor) -> float:
    """The evidence lower bound per sample over the whole validation set (nats; higher is better)."""
    return -float(negative_elbo(outputs, x)) / len(x)


def datasets() -> tuple[TensorDataset, TensorDataset]:
    x, _ = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0  # pixel intensities in [0, 1], as the Bernoulli decoder expects
    val = torch.arange(len(x)) % 5 == 0
    return TensorDataset(x[~val]), TensorDataset(x[val])


train_data, val_data = datasets()
task = Task(model=VAE, train_data=train_data, val_data=val_data, loss=loss, metric=elbo, direction="maximize",
            optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr), epochs=10, batch_size=64, lr=1e-3,
            name="vae_digits")
