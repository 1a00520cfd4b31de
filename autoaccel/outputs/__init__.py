"""What the user reads: one published generation of pareto.json, recipe.yaml, report.html and the model; the
terminal's lines and table; a recipe applied in the user's own pipeline.
"""

from autoaccel.outputs._console import Progress, fmt_metric, fmt_params, make_console, print_summary
from autoaccel.outputs._model import export_recommended
from autoaccel.outputs._publish import Generation, publish, sweep
from autoaccel.outputs._recipe import apply, export

__all__ = [
    "Generation",
    "Progress",
    "apply",
    "export",
    "export_recommended",
    "fmt_metric",
    "fmt_params",
    "make_console",
    "print_summary",
    "publish",
    "sweep",
]
