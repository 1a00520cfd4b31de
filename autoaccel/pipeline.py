"""The Pipeline: an immutable plan of one trial that the core's training loop and runtime honour.

Strategies never patch models or loops; they return a new Pipeline with some fields changed
(``dataclasses.replace``). The core reads the plan and does the work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
SCHEDULES = ("constant", "step", "cosine", "onecycle")


@dataclass(frozen=True)
class LoaderPlan:
    """DataLoader settings; ``cache`` materialises the dataset as tensors once and slices batches from it."""

    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int = 2
    cache: bool = False


@dataclass(frozen=True)
class SchedulePlan:
    """LR schedule over the whole run; ``warmup`` is the fraction of steps spent ramping up linearly."""

    kind: str = "constant"
    warmup: float = 0.0


@dataclass(frozen=True)
class DistillPlan:
    """Train ``task.student(size)`` against the teacher with KD loss alpha*KL(T) + (1-alpha)*task loss."""

    temperature: float = 4.0
    alpha: float = 0.5
    student_size: float = 0.5


@dataclass(frozen=True)
class RuntimePlan:
    """What executes the model at inference: eager PyTorch, or an ONNX Runtime session (optionally int8)."""

    kind: str = "eager"
    int8_static: bool = False
    provider: str = "cpu"  # ONNX Runtime execution provider: cpu, cuda or tensorrt


ModelTransform = Callable[[nn.Module, "TransformContext"], nn.Module]


@dataclass(frozen=True)
class Member:
    """Another trained model that a plan serves beside its own (an ensemble member): the trial it came from, the
    recipe that trains it (to reproduce it when it is not cached) and what its training cost, which the plan
    that uses it pays too."""

    trial: int
    key: str
    plan: "Pipeline"
    params: Mapping[str, Any]
    train_time: float
    memory: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {"trial": self.trial, "key": self.key, "params": dict(self.params), "train_time": self.train_time}


@dataclass(frozen=True)
class TransformContext:
    """What a post-training transform may use: the task, the plan, and the core's fine-tuning loop."""

    task: Any
    plan: "Pipeline"
    seed: int
    finetune: Callable[[nn.Module, int], nn.Module]
    cache: Any = None  # the CheckpointCache, where ensembles find their members
    key: str = ""  # the trial's own training key
    # The trained model of another recipe (an ensemble member): from the cache, or trained now when missing.
    trained: Callable[["Pipeline"], nn.Module] | None = None


def describe_transform(transform: Any) -> str:
    """A readable name for a transform (functools.partial shows its function and keywords)."""
    func = getattr(transform, "func", transform)
    name = getattr(func, "__name__", repr(func))
    keywords = getattr(transform, "keywords", None)
    return f"{name}({', '.join(f'{k}={v}' for k, v in keywords.items())})" if keywords else name


@dataclass(frozen=True)
class Pipeline:
    device: str
    batch_size: int
    lr: float
    epochs: int
    precision: str = "fp32"
    loss_scaling: bool = False
    schedule: SchedulePlan = field(default_factory=SchedulePlan)
    loader: LoaderPlan = field(default_factory=LoaderPlan)
    eval_batch_size: int = 256
    train: bool = True
    memory_format: str = "contiguous"
    compile_mode: str | None = None  # torch.compile mode, for training and inference alike
    cudnn_benchmark: bool = False
    matmul_precision: str = "highest"  # torch.set_float32_matmul_precision for fp32 plans ("high" = TF32)
    cuda_graphs: bool = False  # capture inference in CUDA graphs (static shapes)
    # A quantized model fixes its own inference precision: autocast would feed it the wrong dtype.
    quantized: bool = False
    distill: DistillPlan | None = None
    runtime: RuntimePlan = field(default_factory=RuntimePlan)
    # Cache key of the model a distillation student learns from (the baseline's training), set by the core.
    teacher_key: str | None = None
    # Inference mode without Task.weights: the one recipe every trial's model is trained by (once, cached).
    weights_from: "Pipeline | None" = None
    # Post-training transforms, applied in phase order after training (pruning before quantization, ...).
    model_transforms: tuple[ModelTransform, ...] = ()
    # Other trained models this plan serves beside its own, chosen by the core for strategies that ask for them.
    members: tuple[Member, ...] = ()
    # Free-form fields a third-party strategy and its companion hooks agree on; read-only.
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def replace(self, **changes: Any) -> "Pipeline":
        """A new plan with ``changes``; the receiver is never modified."""
        if "extras" in changes:
            changes["extras"] = MappingProxyType(dict(changes["extras"]))
        return dataclasses.replace(self, **changes)

    def with_extra(self, key: str, value: Any) -> "Pipeline":
        return self.replace(extras={**self.extras, key: value})

    def add_transform(self, transform: ModelTransform) -> "Pipeline":
        return self.replace(model_transforms=(*self.model_transforms, transform))

    def architecture(self) -> str:
        """Which factory builds the trained model: the task's model, or its student at some size."""
        return f"student:{self.distill.student_size:g}" if self.distill else "model"

    def describe(self, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        """A JSON-able view of every field of the plan (but ``exclude``), for recipes, reports and fingerprints.

        Built from the dataclass fields, so a field added later is described (and fingerprinted) without anyone
        having to remember it.
        """
        return {f.name: _describe_value(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in exclude}

    def fingerprint(self) -> str:
        """Identity of the configuration: equal plans, however their parameters were spelled, share it."""
        return digest(self.describe())


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _describe_value(value: Any) -> Any:
    if isinstance(value, (Pipeline, Member)):
        return value.describe()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, float):
        return round(value, 12)  # 0.1 * 3 and 0.3 are one learning rate
    if isinstance(value, Mapping):
        return {str(k): repr(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [describe_transform(v) if callable(v) else _describe_value(v) for v in value]
    return value
