"""target.py: the built-in detector behind --target."""

from __future__ import annotations

import os

import pluggy
import pytest
import torch

from autoaccel import AutoaccelError, Target
from autoaccel.plugin._registry import plugin_manager
from autoaccel.task._target import OPTIONAL_LIBRARIES

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return plugin_manager(load_entrypoints=False)


def detect(pm: pluggy.PluginManager, spec: str) -> Target:
    return pm.hook.autoaccel_detect_target(spec=spec)


def test_cpu_target(pm: pluggy.PluginManager) -> None:
    t = detect(pm, "cpu")
    assert (t.kind, t.device, t.key) == ("cpu", "cpu", "cpu")
    assert t.cores == len(os.sched_getaffinity(0))
    assert t.memory_gb > 0
    assert t.compute_capability is None
    assert t.precisions == ("fp32", "bf16", "fp16")
    assert set(t.libraries) == set(OPTIONAL_LIBRARIES) and all(isinstance(v, bool) for v in t.libraries.values())
    assert t.describe()["kind"] == "cpu"


@no_cuda
def test_auto_is_the_cpu_without_accelerators(pm: pluggy.PluginManager) -> None:
    if torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    assert detect(pm, "auto").kind == "cpu"


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_a_clear_error(pm: pluggy.PluginManager, spec: str) -> None:
    with pytest.raises(AutoaccelError, match=rf"^--target {spec}: no CUDA device is available here .*use --target cpu"):
        detect(pm, spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tpu", r"^--target: unknown target 'tpu'; expected one of auto, cpu, cuda, cuda:N, mps, xla"),
        ("gpu", r"^--target: unknown target 'gpu'"),
        ("", r"^--target: unknown target ''"),
        ("cpu:1", r"^--target: 'cpu:1' is not valid; only cuda takes an index"),
        ("cuda:one", r"^--target: 'cuda:one' is not valid; only cuda takes an index"),
    ],
)
def test_bad_target_specs(pm: pluggy.PluginManager, spec: str, message: str) -> None:
    with pytest.raises(AutoaccelError, match=message):
        detect(pm, spec)


def test_mps_and_xla_are_refused_where_missing(pm: pluggy.PluginManager) -> None:
    if not torch.backends.mps.is_available():
        with pytest.raises(AutoaccelError, match=r"^--target mps: Apple MPS is not available here"):
            detect(pm, "mps")
    if not detect(pm, "cpu").libraries.get("torch_xla"):
        with pytest.raises(AutoaccelError, match=r"^--target xla: torch_xla does not import here"):
            detect(pm, "xla")


@pytest.mark.gpu
def test_cuda_target_on_a_gpu(pm: pluggy.PluginManager) -> None:
    t = detect(pm, "cuda")
    assert (t.kind, t.device, t.key) == ("cuda", "cuda:0", "cuda0")
    assert t.compute_capability == torch.cuda.get_device_capability(0)
    assert ("bf16" in t.precisions) == (t.compute_capability >= (8, 0))
    count = torch.cuda.device_count()
    with pytest.raises(AutoaccelError, match=rf"this machine has {count} CUDA device"):
        detect(pm, f"cuda:{count}")
