"""Several workers on one study: claims that keep a configuration from being measured twice, heartbeats that
fail a dead worker's trial, and the coordinator that joins a worker to the run and lets one finish it.
"""

from autoaccel.search.team._claims import is_companion
from autoaccel.search.team._coordinator import Coordinator

__all__ = [
    "Coordinator",
    "is_companion",
]
