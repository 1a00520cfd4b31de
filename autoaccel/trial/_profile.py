"""Where a training run spends its time: waiting for data, copying batches to the device, forward, backward and
the optimizer (the parts in ``PROFILE_PARTS``).

The search screens first the techniques that relieve the largest part of the user's recipe, and the report shows
the baseline's split as a picture. On a CPU every part is host time. On CUDA the parts the device runs are timed
with CUDA events, which need no extra synchronisation, so profiling does not slow what it measures; waiting for
data stays host time (the loop already waits for the device at the end of every step).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch

from autoaccel.plugin._strategy import PROFILE_PARTS

# Set-up, model building and the last partial waits that no part claims: shown so the parts add up to the run.
OTHER = "other"


class StepProfile:
    """Accumulates seconds per part; ``lap(part)`` closes the segment that began at the previous lap."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda") and torch.cuda.is_available()
        self.seconds: dict[str, float] = dict.fromkeys(PROFILE_PARTS, 0.0)
        self._last = time.perf_counter()
        self._events: list[tuple[str, torch.cuda.Event]] = []

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        if self.cuda and part != "data":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._events.append((part, event))
        else:
            self.seconds[part] += now - self._last
            if self.cuda:
                # The device's segments of this step start here.
                start = torch.cuda.Event(enable_timing=True)
                start.record()
                self._events = [("", start)]
        self._last = now

    def step_done(self) -> None:
        """After the loop synchronised at the end of a step: read this step's device segments, restart the clock."""
        if self.cuda and len(self._events) > 1:
            for (_, begin), (part, end) in zip(self._events, self._events[1:]):
                self.seconds[part] += begin.elapsed_time(end) / 1000.0
            self._events = []
        self._last = time.perf_counter()


def shares(profile: Mapping[str, float]) -> dict[str, float]:
    """Each part's fraction of the profiled time (empty when nothing was profiled)."""
    total = sum(profile.values())
    return {k: v / total for k, v in profile.items()} if total > 0 else {}


def relief(profile: Mapping[str, float], parts: tuple[str, ...]) -> float:
    """The fraction of the profiled training time spent in ``parts``: how much a technique could remove."""
    share = shares({k: v for k, v in profile.items() if k in PROFILE_PARTS})
    return sum(share.get(p, 0.0) for p in parts)


WORDS = {"data": "waiting for data", "copy": "copying batches to the device", "forward": "the forward pass",
         "backward": "the backward pass", "optimizer": "the optimizer", OTHER: "set-up and the rest",
         "evaluation": "evaluation"}


def describe(profile: Mapping[str, float]) -> str:
    """'training: 41% the forward pass, 30% the backward pass, ...' (largest first; parts under 1% left out)."""
    share = shares({k: v for k, v in profile.items() if k != "evaluation"})
    parts = [f"{v:.0%} {WORDS.get(k, k)}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]) if v >= 0.01]
    return ", ".join(parts)


def relieved(before: Mapping[str, float], after: Mapping[str, float]) -> str | None:
    """What a faster recipe removed, in the user's words: the part of the training step whose time fell the most
    ('waiting for data took 58% of your training (1.2 s); here 0.1 s'), or None when nothing fell."""
    parts = [p for p in PROFILE_PARTS if p in before and p in after]
    if not parts:
        return None
    part = max(parts, key=lambda p: before[p] - after[p])
    if before[part] - after[part] <= 0:
        return None
    share = shares({k: v for k, v in before.items() if k != "evaluation"}).get(part, 0.0)
    return (f"{WORDS[part]} took {share:.0%} of your training ({before[part]:.2f} s); "
            f"here {after[part]:.2f} s")
