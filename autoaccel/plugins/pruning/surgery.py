"""Model surgery for pruning: structured channel/neuron removal that really shrinks layers, unstructured
magnitude pruning made permanent, and 2:4 semi-structured sparsity on GPUs that run it.

Structured pruning follows the data flow with torch.fx: a Linear or Conv2d whose output reaches exactly one
Linear/Conv2d through element-wise layers (activations, dropout, pooling, batch norm, flatten) is a prunable
pair; the weakest output channels of the first (L1 norm) are removed from it, from the batch norm between,
and from the input of the second. The model's last layer is never shrunk: its outputs are the task's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import fx, nn

from autoaccel.plugin import TrialFailure, describe

PASSTHROUGH_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Hardswish, nn.ELU,
                       nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                       nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten)
PASSTHROUGH_FUNCTIONS = {torch.relu, nn.functional.relu, nn.functional.gelu, nn.functional.silu, torch.flatten,
                         nn.functional.dropout, nn.functional.max_pool2d, nn.functional.avg_pool2d,
                         nn.functional.adaptive_avg_pool2d, torch.tanh, torch.sigmoid}
PASSTHROUGH_METHODS = {"relu", "flatten", "view", "reshape", "sigmoid", "tanh"}


@dataclass
class Chain:
    producer: str
    consumer: str
    norms: list[str] = field(default_factory=list)
    flattened: bool = False


def _prunable(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)


def find_chains(gm: fx.GraphModule) -> list[Chain]:
    modules = dict(gm.named_modules())
    chains = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not _prunable(modules[node.target]):
            continue
        chain = Chain(producer=node.target, consumer="")
        current = node
        while len(current.users) == 1:
            (user,) = current.users
            if user.op == "call_module" and _prunable(modules[user.target]):
                chain.consumer = user.target
                break
            if user.op == "call_module" and isinstance(modules[user.target], PASSTHROUGH_MODULES):
                mod = modules[user.target]
                if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    chain.norms.append(user.target)
                chain.flattened |= isinstance(mod, nn.Flatten)
            elif user.op == "call_function" and user.target in PASSTHROUGH_FUNCTIONS:
                chain.flattened |= user.target is torch.flatten
            elif user.op == "call_method" and user.target in PASSTHROUGH_METHODS:
                chain.flattened |= user.target in ("flatten", "view", "reshape")
            else:
                break
            current = user
        if chain.consumer:
            chains.append(chain)
    return chains


def _set(gm: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` in place of ``gm``'s submodule ``name``, in that one's mode: a new module is built in training
    mode, and a BatchNorm left so would update its statistics, and fail on a batch of one at a 1x1 feature map,
    wherever the pruned model is served."""
    parent, _, leaf = name.rpartition(".")
    module.train(gm.get_submodule(name).training)
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def _conv_like(layer: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    """A Conv2d with ``layer``'s geometry and other channel counts. A built Conv2d holds its geometry as
    ``tuple[int, ...]`` (torch's attribute types) while the constructor is typed for pairs: a Conv2d's are pairs."""
    return nn.Conv2d(in_channels, out_channels, cast("tuple[int, int]", layer.kernel_size),
                     cast("tuple[int, int]", layer.stride), cast("str | tuple[int, int]", layer.padding),
                     cast("tuple[int, int]", layer.dilation), bias=layer.bias is not None, padding_mode=layer.padding_mode)


def _shrink_out(layer: nn.Module, keep: torch.Tensor) -> nn.Module:
    new: nn.Linear | nn.Conv2d
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None)
    else:
        assert isinstance(layer, nn.Conv2d)
        new = _conv_like(layer, layer.in_channels, len(keep))
    new = new.to(layer.weight.device, layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight[keep])
        if layer.bias is not None:
            assert new.bias is not None  # built with a bias just above
            new.bias.copy_(layer.bias[keep])
    return new


def _shrink_in(layer: nn.Module, keep: torch.Tensor) -> nn.Module:
    new: nn.Linear | nn.Conv2d
    if isinstance(layer, nn.Linear):
        new = nn.Linear(len(keep), layer.out_features, bias=layer.bias is not None)
    else:
        assert isinstance(layer, nn.Conv2d)
        new = _conv_like(layer, len(keep), layer.out_channels)
    new = new.to(layer.weight.device, layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, keep])
        if layer.bias is not None:
            assert new.bias is not None  # built with a bias just above
            new.bias.copy_(layer.bias)
    return new


def _shrink_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    assert isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d))
    new = type(norm)(len(keep), eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                     track_running_stats=norm.track_running_stats).to(norm.weight.device if norm.affine else "cpu")
    with torch.no_grad():
        if norm.affine:
            new.weight.copy_(norm.weight[keep])
            new.bias.copy_(norm.bias[keep])
        if norm.track_running_stats:
            # Both track running statistics (``new`` was built with the same flag): neither buffer is None.
            assert norm.running_mean is not None and norm.running_var is not None
            assert new.running_mean is not None and new.running_var is not None
            new.running_mean.copy_(norm.running_mean[keep])
            new.running_var.copy_(norm.running_var[keep])
    return new


def prune_structured(model: nn.Module, amount: float) -> nn.Module:
    """Remove the ``amount`` fraction of weakest channels/neurons from every prunable pair; returns a GraphModule."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - data-dependent control flow and the like
        raise TrialFailure(f"structured pruning could not trace the model with torch.fx: {describe(exc)}",
                           kind="unsupported") from exc
    chains = find_chains(gm)
    if not chains:
        raise TrialFailure("structured pruning found no Linear/Conv2d pair to shrink in this model", kind="unsupported")
    for chain in chains:
        # find_chains pairs only prunable layers (_prunable: a Linear or a Conv2d).
        producer = cast("nn.Linear | nn.Conv2d", gm.get_submodule(chain.producer))
        consumer = cast("nn.Linear | nn.Conv2d", gm.get_submodule(chain.consumer))
        channels = producer.weight.shape[0]
        kept = max(1, int(round(channels * (1.0 - amount))))
        importance = producer.weight.detach().abs().flatten(1).sum(dim=1)
        keep = importance.topk(kept).indices.sort().values
        in_width = consumer.weight.shape[1]
        if in_width % channels:
            continue  # a reshape we do not understand sits between them: leave the pair alone
        spatial = in_width // channels
        consumer_keep = keep if spatial == 1 else (keep[:, None] * spatial + torch.arange(spatial, device=keep.device)).flatten()
        _set(gm, chain.producer, _shrink_out(producer, keep))
        for norm in chain.norms:
            _set(gm, norm, _shrink_norm(gm.get_submodule(norm), keep))
        _set(gm, chain.consumer, _shrink_in(consumer, consumer_keep))
    gm.recompile()
    return gm.train(model.training)  # the trace's own flag is a new module's (training): the model's, as it was


def prune_unstructured(model: nn.Module, amount: float) -> nn.Module:
    """Zero the smallest-magnitude ``amount`` of each Linear/Conv weight; masks are made permanent."""
    from torch.nn.utils import prune

    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            prune.l1_unstructured(module, "weight", amount=amount)
            prune.remove(module, "weight")
    return model


def prune_semi_structured(model: nn.Module) -> nn.Module:
    """2:4 sparsity (two of every four weights zero) on Linear layers, in the format sparse tensor cores run."""
    from torch.sparse import to_sparse_semi_structured

    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.is_cuda:
            w = module.weight.detach()
            out_f, in_f = w.shape
            if out_f % 64 or in_f % 64:
                continue  # the sparse kernels need multiples of 64
            groups = w.reshape(-1, 4)
            mask = torch.zeros_like(groups, dtype=torch.bool)
            mask.scatter_(1, groups.abs().topk(2, dim=1).indices, True)
            module.weight = nn.Parameter(to_sparse_semi_structured((groups * mask).reshape(out_f, in_f).half()))
    return model


def sparsity(model: nn.Module) -> float:
    total = zeros = 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and not module.weight.is_sparse:
            total += module.weight.numel()
            zeros += int((module.weight == 0).sum())
    return zeros / total if total else 0.0
