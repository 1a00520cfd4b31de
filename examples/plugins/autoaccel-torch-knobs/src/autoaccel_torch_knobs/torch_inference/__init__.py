"""PyTorch's own inference settings: the intra-op thread count, and inference_mode instead of no_grad.

A serving technique: it wraps every inference call in a context (the ``inference_context`` hook) and never
changes training. A model another engine serves (ONNX Runtime) is left alone: it acts after the strategies that
may hand the model over, and reads from the plan whether one did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from autoaccel.plugin import Capability, Phase, Pipeline, Section, Strategy, Target, hookimpl


@dataclass(frozen=True)
class InferenceSection(Section):
    threads: int = 0  # 0: PyTorch's own choice
    inference_mode: bool = False


@contextlib.contextmanager
def torch_inference(section: InferenceSection) -> Iterator[None]:
    old = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        if section.inference_mode:
            stack.enter_context(torch.inference_mode())
        if section.threads:
            torch.set_num_threads(section.threads)
            stack.callback(torch.set_num_threads, old)
        yield


class TorchInferenceStrategy(Strategy[InferenceSection]):
    name = "torch_inference"
    phase = Phase.RUNTIME
    after = ("runtime", "quantization")
    description = "Intra-op thread count and torch.inference_mode while serving."

    def check(self, target: Target) -> Capability:
        # More threads than cores only contend; the space is cut to what the target has.
        threads = [t for t in (0, 1, 2, 4, 8) if t <= target.cores]
        return Capability(True, "", {"threads": threads})

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        section = InferenceSection(int(params.get("threads", 0)), params.get("mode", "no_grad") == "inference_mode")
        if section == InferenceSection() or pipeline.engine() is not None:
            return pipeline  # off, or another engine serves the model: nothing of PyTorch's to set
        return pipeline.with_section(self, section)

    def inference_context(self, section: InferenceSection, plan: Pipeline) -> contextlib.AbstractContextManager[Any]:
        return torch_inference(section)


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy[Any]], None]) -> None:
    register(TorchInferenceStrategy())
