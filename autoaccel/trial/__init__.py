"""What runs in the worker process: isolation, the lifecycle of a plan, training, evaluation, the checkpoint
cache, the time profile, paired re-measurement, export, and the one typed record of a trial.
"""

from autoaccel.trial import _fidelity as fidelity
from autoaccel.trial import _lifecycle as lifecycle
from autoaccel.trial import _record as record
from autoaccel.trial._checkpoints import training_key
from autoaccel.trial._evaluate import latency_input, score, time_inference
from autoaccel.trial._export import export_model
from autoaccel.trial._fidelity import Fidelity, affordable, duration, share
from autoaccel.trial._isolation import InProcessRunner, IsolatedRunner, TaskSource
from autoaccel.trial._launch import TrainingJob, launch_training
from autoaccel.trial._point import Point
from autoaccel.trial._profile import OTHER, WORDS, describe, relief, relieved, shares
from autoaccel.trial._quality import evaluate
from autoaccel.trial._record import TrialRecord, read
from autoaccel.trial._remeasure import Ratio, interleave, paired_ratio, train_samples
from autoaccel.trial._run import (
    Timings,
    Trained,
    TrialResult,
    remeasure_plans,
    run_trial,
    serve,
    served_model,
    serving,
    transform_model,
    warm_up,
)
from autoaccel.trial._train import setup_for

__all__ = [
    "Fidelity",
    "InProcessRunner",
    "IsolatedRunner",
    "OTHER",
    "Point",
    "Ratio",
    "TaskSource",
    "Timings",
    "Trained",
    "TrainingJob",
    "TrialRecord",
    "TrialResult",
    "WORDS",
    "affordable",
    "describe",
    "duration",
    "evaluate",
    "export_model",
    "fidelity",
    "interleave",
    "latency_input",
    "launch_training",
    "lifecycle",
    "paired_ratio",
    "read",
    "record",
    "relief",
    "relieved",
    "remeasure_plans",
    "run_trial",
    "score",
    "serve",
    "served_model",
    "serving",
    "setup_for",
    "share",
    "shares",
    "time_inference",
    "train_samples",
    "training_key",
    "transform_model",
    "warm_up",
]
