"""From a study to answers: the finalists re-measured against the baseline, one answer per goal (minimal by
ablation, its evidence stated), and the summaries the outputs are written from.
"""

from autoaccel.finish import _evidence as evidence
from autoaccel.finish import _known_recipe as known_recipe
from autoaccel.finish import _recipe_curve as recipe_curve
from autoaccel.finish._answers import Answer, describe_speed, goal_score, goals_for, judging, keep
from autoaccel.finish._evidence import words
from autoaccel.finish._finisher import finalize
from autoaccel.finish._finishing import Finishing
from autoaccel.finish._study_facts import environment
from autoaccel.finish._summary import (
    PRIMARY,
    Point,
    Summary,
    accuracy_drop,
    judge,
    output_texts,
    over_budget,
    serves_exactly,
    speed_objectives,
    summarize_study,
)

__all__ = [
    "Answer",
    "Finishing",
    "PRIMARY",
    "Point",
    "Summary",
    "accuracy_drop",
    "describe_speed",
    "environment",
    "evidence",
    "finalize",
    "goal_score",
    "goals_for",
    "judging",
    "keep",
    "judge",
    "known_recipe",
    "recipe_curve",
    "output_texts",
    "over_budget",
    "serves_exactly",
    "speed_objectives",
    "summarize_study",
    "words",
]
