"""Choosing what to measure: the study and its storage, the policy that proposes configurations (stages,
screening, local moves, members), the executor that runs and records trials, and team/ for several workers.
"""

from autoaccel.search import _study as study
from autoaccel.search._sanity import QUALITY_DETAILS
from autoaccel.search._search import Search
from autoaccel.search._setup import base_pipeline, set_up_search
from autoaccel.search._study import open_storage

__all__ = [
    "QUALITY_DETAILS",
    "Search",
    "base_pipeline",
    "open_storage",
    "set_up_search",
    "study",
]
