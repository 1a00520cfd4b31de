"""The fork server trial workers are forked from: it imports torch and the worker's modules once per search process.

A spawned worker is a new interpreter that imports torch, this package and torch's lazily imported compiler stack
before its first trial: about 5 s on 2 cores, paid by every run and again after every crash or timeout (the
worker is replaced). Forked from multiprocessing's fork server, which has imported them already, a worker starts
in about half a second. The server imports only (no thread pool is started, no device touched), so each fork
starts clean; it exits with the search process.

This module imports neither torch nor the rest of the package, so the command line can start the server first
and let it import torch while the command itself does the same (two cores, two imports at once).
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.forkserver
from typing import Any

# What the server imports: torch, the compiler stack an optimizer's first step imports lazily (about 1.5 s; see
# trial/_run.warm_up), and the worker's own modules.
PRELOAD = ["torch", "torch._dynamo", "torch.optim", "autoaccel.trial._isolation"]


def context() -> Any:
    """The fork server's context where the platform has one (Linux, macOS), else spawn. Never a plain fork of the
    search process: it would inherit torch's thread pools and locks mid-state."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # takes effect when the server starts (the first worker of this process)
    return ctx


def start_early() -> None:
    """Start the server now, before the caller imports torch itself: both imports then run at once."""
    if context().get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()
