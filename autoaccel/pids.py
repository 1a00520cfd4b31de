"""Whether a process still lives: how a run tells a killed writer's leftovers from a live one's work."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while process ``pid`` exists on this host (even when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
