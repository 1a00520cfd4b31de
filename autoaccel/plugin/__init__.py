"""Everything a plugin author needs, from one module (see docs/plugins.md)::

    from autoaccel.plugin import Phase, Section, Strategy, TrainingSetup, hookimpl

    @dataclass(frozen=True)
    class MySection(Section):
        setting: str

    class MyStrategy(Strategy):
        name, phase, changes_training = "my_technique", Phase.TRAIN, True

        def apply(self, plan, params):
            return plan if params.get("setting", "off") == "off" else plan.with_section(self, MySection(params["setting"]))

        def configure_training(self, section, setup):
            ...  # change setup.optimizer, setup.loss, setup.autocast ...

    @hookimpl
    def autoaccel_register_strategies(register):
        register(MyStrategy())

The contract suite, ``StrategyContract``, is importable from here too (loaded on first use: it needs pytest).
"""

from autoaccel.errors import AutoaccelError, TrialFailure, describe
from autoaccel.plugin._contexts import BuildContext, ServeContext, TrainingSetup, TransformContext
from autoaccel.plugin._hookspecs import hookimpl
from autoaccel.plugin._onnx import Layout, export_onnx, onnx_feeds
from autoaccel.plugin._pipeline import Pipeline, Section
from autoaccel.plugin._space import Categorical, FloatRange, IntRange, Param, Space, load_space
from autoaccel.plugin._strategy import PROFILE_PARTS, Capability, Phase, Strategy
from autoaccel.task import Target, Task, call, evaluating, materialize, prediction, split, train_batches, with_prediction

__all__ = [
    "AutoaccelError",
    "Layout",
    "BuildContext",
    "Capability",
    "Categorical",
    "FloatRange",
    "IntRange",
    "PROFILE_PARTS",
    "Param",
    "Phase",
    "Pipeline",
    "Section",
    "ServeContext",
    "Space",
    "Strategy",
    "StrategyContract",  # noqa: F822 - resolved lazily by __getattr__ below
    "Target",
    "Task",
    "TrainingSetup",
    "TransformContext",
    "TrialFailure",
    "call",
    "describe",
    "export_onnx",
    "hookimpl",
    "load_space",
    "evaluating",
    "materialize",
    "onnx_feeds",
    "prediction",
    "split",
    "train_batches",
    "with_prediction",
]


def __getattr__(name: str) -> object:
    # The contract suite imports pytest and the search machinery: loaded only when a plugin's tests ask for it.
    if name == "StrategyContract":
        from autoaccel.plugin.testing import StrategyContract

        return StrategyContract
    raise AttributeError(f"module 'autoaccel.plugin' has no attribute {name!r}")
