"""Load-aware re-measurement: a speedup that another program's load produced is never claimed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from autoaccel.measure._host_load import LoadProbe
from autoaccel.trial._remeasure import interleave, paired_ratio

# Alone: another test running beside these (the README's command runs the rest in parallel) is other programs' load.
pytestmark = [pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs /proc to see other programs' load"),
              pytest.mark.alone]

BUSY = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"


@pytest.fixture
def competitors() -> Iterator[list[int]]:
    """Three busy processes outside our process tree (reparented away from us, as another user's job is),
    stopped until a measurement lets them run. On two cores they take most of the CPU while they run."""
    shell = f"for i in 1 2 3; do {sys.executable} -c '{BUSY}' >/dev/null 2>&1 & echo $!; done"
    pids = [int(p) for p in subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout.split()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    yield pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def work() -> float:
    """A fixed amount of CPU work, timed."""
    t0 = time.perf_counter()
    total = 0
    for i in range(3_000_000):  # long enough (well over 0.1 s) for /proc's 10 ms ticks to carry a load figure
        total += i * i
    return time.perf_counter() - t0


def test_the_probe_sees_other_programs_but_not_our_own_children(competitors: list[int]) -> None:
    probe = LoadProbe()
    child = subprocess.Popen([sys.executable, "-c", "end = __import__('time').time() + 0.6\nwhile __import__('time').time() < end: pass"])
    child.wait()
    own = probe.stop().foreign_cores
    for pid in competitors:
        os.kill(pid, signal.SIGCONT)
    probe = LoadProbe()
    time.sleep(0.6)
    foreign = probe.stop().foreign_cores
    for pid in competitors:
        os.kill(pid, signal.SIGSTOP)
    assert own is not None and foreign is not None
    assert own < 0.5 < 1.0 < foreign, (own, foreign)


def test_a_load_on_one_side_only_claims_no_speedup(competitors: list[int]) -> None:
    """The baseline (config 0) is measured while other programs load the cores, the candidate (the very same
    work) while they are stopped: naively the candidate looks faster; with the load recorded it is not claimed."""

    def measure_once(config: int) -> float:
        for pid in competitors:
            os.kill(pid, signal.SIGCONT if config == 0 else signal.SIGSTOP)
        try:
            return work()
        finally:
            for pid in competitors:
                os.kill(pid, signal.SIGSTOP)

    loads: list[list[float | None]] = []
    samples = interleave(2, 5, measure_once, loads)
    naive = paired_ratio(samples[0], samples[1])
    assert naive.value > 1.2, "the competing load did not slow the baseline side; the test proves nothing here"
    guarded = paired_ratio(samples[0], samples[1], base_load=loads[0], cand_load=loads[1])
    assert not guarded.faster and guarded.label == "unreliable"
    assert guarded.discarded >= 3 and "load differed" in guarded.unreliable
    assert all(b is not None and c is not None and b - c > 0.5 for b, c in zip(loads[0], loads[1]))


def test_equal_load_on_both_sides_is_kept() -> None:
    loads: list[list[float | None]] = []
    samples = interleave(2, 5, lambda c: work(), loads)
    r = paired_ratio(samples[0], samples[1], base_load=loads[0], cand_load=loads[1])
    assert r.discarded <= 1 and not r.unreliable


def test_a_window_too_short_for_ticks_gives_no_load_figure() -> None:
    """A 5 ms window holds at most a tick or two: reading it as 'one core busy' would discard honest rounds."""
    probe = LoadProbe()
    time.sleep(0.005)
    assert probe.stop().foreign_cores is None
