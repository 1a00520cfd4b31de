"""How busy the machine was with *other* work while we measured: the CPU time of every process outside our
own process tree, per second of wall time, plus the load average.

A speedup measured while another program loaded the cores on one side only is an artefact of that program.
Each measurement records this figure, so a pair measured under different load can be repeated or discarded
instead of believed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")
# /proc counts CPU time in ticks (10 ms): over a shorter window one stray tick reads as a whole busy core, so a
# load figure is only given for windows long enough to carry it (a tick is then at most 0.1 core).
MIN_WINDOW_S = 0.1


def _busy_ticks() -> int | None:
    """Non-idle CPU ticks of the whole machine since boot (user, nice, system, irq, softirq, steal)."""
    try:
        fields = (PROC / "stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    guest = sum(values[8:10]) if len(values) > 9 else 0  # already counted in user and nice
    return sum(values) - idle - guest


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, CPU ticks) of one process, from /proc/PID/stat: its own user and system time plus that of
    its reaped children (a DataLoader worker that exited mid-measurement was still our own work)."""
    try:
        text = (PROC / pid / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    rest = text.rsplit(")", 1)[-1].split()  # the command name may contain spaces and parentheses
    return int(rest[1]), sum(int(v) for v in rest[11:15])


def _own_ticks(root: int) -> int:
    """CPU ticks of ``root`` and all its descendants (DataLoader workers count as our own work)."""
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (s := _stat(entry.name)) is not None:
            stats[int(entry.name)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


@dataclass(frozen=True)
class Load:
    """Cores kept busy by other processes during a measurement (0.0 on an idle machine), and the 1-minute
    load average at its end; ``foreign_cores`` is None where /proc is not available or the window was too short
    to tell."""

    foreign_cores: float | None
    loadavg: float

    def to_details(self) -> dict[str, float]:
        out = {"loadavg": round(self.loadavg, 2)}
        if self.foreign_cores is not None:
            out["foreign_cores"] = round(self.foreign_cores, 3)
        return out


class LoadProbe:
    """Started at construction; ``stop()`` returns the Load over the interval."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.t0 = time.perf_counter()
        self.busy0 = _busy_ticks()
        self.own0 = _own_ticks(self.pid) if self.busy0 is not None else 0

    def stop(self) -> Load:
        wall = time.perf_counter() - self.t0
        busy1 = _busy_ticks()
        try:
            loadavg = os.getloadavg()[0]
        except OSError:
            loadavg = 0.0
        if self.busy0 is None or busy1 is None or wall < MIN_WINDOW_S:
            return Load(None, loadavg)
        foreign = (busy1 - self.busy0) - (_own_ticks(self.pid) - self.own0)
        return Load(max(0.0, foreign / TICK / wall), loadavg)
