"""pruning: contract, layers that really shrink, masks made permanent, GPU-only 2:4 dropped elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoaccel.errors import TrialFailure
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin.testing import CPU, CUDA, StrategyContract
from autoaccel.plugins.pruning import PruningStrategy
from autoaccel.plugins.pruning.surgery import find_chains, prune_structured, prune_unstructured, sparsity
from autoaccel.trial._run import run_trial


class TestPruningContract(StrategyContract):
    strategy_class = PruningStrategy


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 16, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv2(torch.relu(self.bn(self.conv1(x))))))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def test_structured_pruning_really_shrinks_conv_bn_and_linear_layers() -> None:
    torch.manual_seed(0)
    model = ConvNet().eval()
    model.bn.running_mean.uniform_()  # non-trivial statistics, so a wrong slice would show in the outputs
    pruned = prune_structured(model, 0.5)
    assert pruned.conv1.out_channels == 8 and pruned.bn.num_features == 8 and pruned.conv2.in_channels == 8
    assert pruned.conv2.out_channels == 16
    assert pruned.fc1.in_features == 16 * 16 and pruned.fc1.out_features == 32
    assert pruned.fc2.in_features == 32 and pruned.fc2.out_features == 10  # the task's outputs are never cut
    x = torch.randn(3, 1, 8, 8)
    assert pruned(x).shape == (3, 10)
    assert sum(p.numel() for p in pruned.parameters()) < 0.4 * sum(p.numel() for p in model.parameters())


def test_a_pruned_model_keeps_the_mode_it_was_pruned_in() -> None:
    # A new layer is built in training mode: a BatchNorm left so updates its statistics wherever the pruned model
    # is served, and fails on a batch of one at a 1x1 feature map (timm's MobileNetV3 on 32x32 images did).
    model = ConvNet().eval()
    pruned = prune_structured(model, 0.5)
    assert not pruned.training and not any(m.training for m in pruned.modules())
    before = pruned.bn.running_mean.clone()
    pruned(torch.randn(1, 1, 8, 8))
    assert torch.equal(pruned.bn.running_mean, before)
    assert prune_structured(ConvNet().train(), 0.5).bn.training


def test_structured_pruning_keeps_the_strongest_channels_exactly() -> None:
    """Channels whose weights are zero contribute nothing: removing them must not change the output."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        model[0].weight[[1, 3, 4]] = 0.0
        model[0].bias[[1, 3, 4]] = 0.0
    pruned = prune_structured(model, 0.5)
    x = torch.randn(5, 8)
    torch.testing.assert_close(pruned(x), model(x))
    assert pruned.get_submodule("0").out_features == 3


def test_chain_detection_skips_branches() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.b(h) + h  # h feeds two users: shrinking it would break the add

    chains = find_chains(torch.fx.symbolic_trace(Residual()))
    assert chains == []
    with pytest.raises(TrialFailure, match="no Linear/Conv2d pair"):
        prune_structured(Residual(), 0.5)


def test_unstructured_pruning_is_permanent() -> None:
    model = prune_unstructured(nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4)), 0.5)
    assert sparsity(model) == pytest.approx(0.5, abs=0.02)
    assert not any("mask" in name for name, _ in model.named_buffers())  # the reparametrisation is removed


def test_check_drops_2_4_off_ampere_and_says_so() -> None:
    cpu = PruningStrategy().check(CPU)
    assert "semi_structured_2_4" not in cpu.allowed["method"]
    assert "compute capability 8.0" in cpu.reason
    assert "semi_structured_2_4" in PruningStrategy().check(CUDA).allowed["method"]


def test_pruning_with_finetuning_runs_in_a_trial(tiny_task) -> None:  # type: ignore[no-untyped-def]
    s = PruningStrategy()
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    plan = s.apply(base, {"method": "structured", "amount": 0.5, "finetune_epochs": 1})
    result = run_trial(tiny_task, plan, timing_budget_s=0.05)
    baseline = run_trial(tiny_task, base, timing_budget_s=0.05)
    assert result.details["parameters"] < baseline.details["parameters"]
    assert result.metrics["accuracy"] > 0.5


def test_fine_tuning_is_charged_to_the_recipe(tiny_task, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A pruned variant reuses the cached training, but its fine-tuning epoch is training it pays for."""
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    cached = run_trial(tiny_task, base, timing_budget_s=0.02, cache_dir=str(tmp_path))
    plan = PruningStrategy().apply(base, {"method": "structured", "amount": 0.5, "finetune_epochs": 1})
    pruned = run_trial(tiny_task, plan, timing_budget_s=0.02, cache_dir=str(tmp_path))
    assert pruned.details["cached_training"] is True and pruned.details["finetune_s"] > 0
    assert pruned.metrics["train_time"] == pytest.approx(cached.metrics["train_time"] + pruned.details["finetune_s"])


class ModeInGraph(nn.Module):
    """timm's BatchNormAct2d in miniature: BatchNorm called functionally with ``self.training``, which torch.fx
    bakes into the traced graph, behind a 1x1 feature map (an ImageNet architecture on small images)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc0 = nn.Linear(64, 32)
        self.bn = nn.BatchNorm1d(32)
        self.fc1 = nn.Linear(32, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc0(x)
        h = nn.functional.batch_norm(h, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
                                     training=self.training)
        return self.fc2(torch.relu(self.fc1(h)))  # fc1 -> fc2: the pair structured pruning shrinks


def test_a_structurally_pruned_trial_traces_the_model_as_it_is_served() -> None:
    # Traced in training mode, the pruned graph would run BatchNorm in training mode on the batch of one that
    # latency is timed on, and fail (timm's MobileNetV3 on 32x32 digits did).
    from tiny_digits import make_task

    task = make_task(model=ModeInGraph)
    plan = PruningStrategy().apply(Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1), {"method": "structured"})
    result = run_trial(task, plan, seed=0, timing_budget_s=0.02)
    assert result.metrics["latency"] > 0 and result.metrics["accuracy"] > 0.3
