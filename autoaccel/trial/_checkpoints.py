"""Trained checkpoints, cached by a key of everything that affects training.

Post-training variants of one training recipe then cost one training run, members of a plan that serves
several models come from here, and so does the baseline's model for a strategy that learns from it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoaccel.plugin._pipeline import Pipeline, digest
from autoaccel.task import Task


def training_key(task: Task, plan: Pipeline) -> str:
    """Hash of the task and everything in the plan that changes what training does or how long it takes: the
    recipe's own fields and the sections whose strategy declared ``changes_training`` (see
    ``Pipeline.training_view``). Variants that differ only in serving share one trained model."""
    fields = plan.training_view()
    # The device kind, not its index: cuda:0 and cuda:1 train the same model at the same speed.
    fields["device"] = plan.device.split(":")[0]
    return digest({"task": task.fingerprint(), "plan": fields})


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path
    meta: dict[str, Any]


def _writer() -> str:
    """Names a writer's temporary file: host and pid, so writers on several hosts sharing the folder (NFS) never
    write the same temporary file; each renames its own into place, and the last complete one wins."""
    return f"{socket.gethostname()}.{os.getpid()}"


class CheckpointCache:
    """A folder of ``<key>.pt`` state dicts with ``<key>.json`` metadata (train time, accuracy). It may be shared
    by workers on several hosts (``--cache-dir`` on NFS): every file is written whole, then renamed into place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, key: str) -> Entry | None:
        path, meta = self.root / f"{key}.pt", self.root / f"{key}.json"
        if not (path.exists() and meta.exists()):
            return None
        return Entry(key, path, json.loads(meta.read_text(encoding="utf-8")))

    def put(self, key: str, model: nn.Module, meta: dict[str, Any]) -> Entry:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{key}.pt"
        # Write then rename: a trial killed mid-save must not leave a truncated checkpoint that later loads.
        tmp = path.with_suffix(f".pt.{_writer()}.tmp")
        try:
            torch.save(model.state_dict(), tmp)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not leave half a checkpoint behind
            raise
        self.update(key, meta)
        return Entry(key, path, meta)

    def update(self, key: str, meta: dict[str, Any]) -> None:
        target = self.root / f"{key}.json"
        merged = {**(json.loads(target.read_text(encoding="utf-8")) if target.exists() else {}), **meta}
        tmp = target.with_suffix(f".json.{_writer()}.tmp")
        tmp.write_text(json.dumps(merged, default=str), encoding="utf-8")
        tmp.replace(target)

    def entries(self) -> list[Entry]:
        if not self.root.exists():
            return []
        found = []
        for meta in sorted(self.root.glob("*.json")):
            entry = self.get(meta.stem)
            if entry is not None:
                found.append(entry)
        return found

    def load(self, entry: Entry, model: nn.Module, device: str) -> nn.Module:
        model.load_state_dict(torch.load(entry.path, map_location=device, weights_only=True))
        return model
