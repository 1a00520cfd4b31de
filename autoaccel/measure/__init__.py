"""The clock: one timing harness (warm-up, device sync, repeats to a 95% interval) and the load other
programs put on the host while it measured.
"""

from autoaccel.measure._host_load import LoadProbe
from autoaccel.measure._timing import Clock, Measurement, measure, summarize

__all__ = [
    "Clock",
    "LoadProbe",
    "Measurement",
    "measure",
    "summarize",
]
