"""The device a study measures on, and the built-in detector behind ``--target``."""

from __future__ import annotations

import importlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from autoaccel.errors import AutoaccelError
from autoaccel.markers import hookimpl

OPTIONAL_LIBRARIES = ("onnx", "onnxruntime", "torchao", "torch_xla", "triton", "torchvision")
TARGET_KINDS = ("auto", "cpu", "cuda", "mps", "xla")


@dataclass(frozen=True)
class Target:
    kind: str
    device: str
    name: str
    cores: int
    memory_gb: float
    compute_capability: tuple[int, int] | None = None
    precisions: tuple[str, ...] = ("fp32",)
    libraries: dict[str, bool] = field(default_factory=dict)
    cpu_flags: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        """A short name used in study names: ``cpu``, ``cuda0`` ..."""
        return self.device.replace(":", "")


def _importable(name: str) -> bool:
    # A real import, not find_spec: a package that is present but broken (torchvision beside a mismatched
    # torch) must count as missing.
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False
    return True


def _host_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def _cpu_model_and_flags() -> tuple[str, tuple[str, ...]]:
    name = "cpu"
    flags: tuple[str, ...] = ()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and name == "cpu":
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    interesting = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "avx512_fp16"}
                    flags = tuple(sorted(interesting & set(line.split(":", 1)[1].split())))
    except OSError:
        pass
    return name, flags


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_target(libraries: dict[str, bool]) -> Target:
    name, flags = _cpu_model_and_flags()
    # torch autocasts to bf16 and fp16 on any x86/ARM CPU; whether it pays off is for the search to measure.
    return Target("cpu", "cpu", name, _cores(), round(_host_memory_gb(), 1), None, ("fp32", "bf16", "fp16"), libraries, flags)


def cuda_target(index: int, libraries: dict[str, bool]) -> Target:
    count = torch.cuda.device_count()
    if index >= count:
        raise AutoaccelError(f"--target cuda:{index}: this machine has {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})")
    props = torch.cuda.get_device_properties(index)
    cc = (props.major, props.minor)
    precisions = ["fp32", "fp16"]
    if cc >= (8, 0):
        precisions[1:1] = ["tf32", "bf16"]
    return Target("cuda", f"cuda:{index}", props.name, _cores(), round(props.total_memory / 2**30, 1), cc, tuple(precisions), libraries)


def hypothetical_target(spec: str) -> Target | None:
    """A representative target of ``spec``'s kind that this machine lacks, so `autoaccel plugins --target cuda`
    can say what would run there (a CUDA GPU is assumed recent: compute capability 8.0, tf32/bf16/fp16)."""
    kind = spec.partition(":")[0]
    libraries = _libraries()
    cores, memory = _cores(), round(_host_memory_gb(), 1)
    if kind == "cuda":
        return Target("cuda", "cuda:0", "a CUDA GPU (not present here)", cores, 80.0, (8, 0), ("fp32", "tf32", "bf16", "fp16"), libraries)
    if kind == "mps":
        return Target("mps", "mps", "Apple MPS (not present here)", cores, memory, None, ("fp32", "fp16"), libraries)
    if kind == "xla":
        return Target("xla", "xla", "an XLA device (not present here)", cores, memory, None, ("fp32", "bf16"), libraries)
    return None


def _libraries() -> dict[str, bool]:
    return {name: _importable(name) for name in OPTIONAL_LIBRARIES}


@hookimpl(trylast=True)
def autoaccel_detect_target(spec: str) -> Target | None:
    """Built-in detection: CPU, CUDA, MPS, and XLA where torch_xla imports."""
    kind, _, index_text = spec.partition(":")
    if kind not in TARGET_KINDS:
        raise AutoaccelError(f"--target: unknown target '{spec}'; expected one of auto, cpu, cuda, cuda:N, mps, xla")
    if index_text and (kind != "cuda" or not index_text.isdigit()):
        raise AutoaccelError(f"--target: '{spec}' is not valid; only cuda takes an index, as in cuda:1")
    libraries = _libraries()
    if kind == "auto":
        if torch.cuda.is_available():
            return cuda_target(0, libraries)
        if torch.backends.mps.is_available():
            kind = "mps"
        else:
            return cpu_target(libraries)
    if kind == "cpu":
        return cpu_target(libraries)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise AutoaccelError(
                f"--target {spec}: no CUDA device is available here (torch.cuda.is_available() is False, "
                f"torch {torch.__version__}); use --target cpu or auto"
            )
        return cuda_target(int(index_text or 0), libraries)
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise AutoaccelError("--target mps: Apple MPS is not available here; use --target cpu or auto")
        return Target("mps", "mps", "Apple MPS", _cores(), round(_host_memory_gb(), 1), None, ("fp32", "fp16"), libraries)
    if not libraries.get("torch_xla"):
        raise AutoaccelError("--target xla: torch_xla does not import here; install torch_xla or use --target cpu")
    return Target("xla", "xla", "XLA device", _cores(), round(_host_memory_gb(), 1), None, ("fp32", "bf16"), libraries)
