"""A contract test suite a strategy subclasses to prove it behaves (pytest)::

    from autoaccel.testing import StrategyContract

    class TestMyStrategy(StrategyContract):
        strategy_class = MyStrategy

Each test builds its own objects, so a suite can run in any order and in parallel.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from autoaccel.pipeline import Pipeline
from autoaccel.space import Categorical, FloatRange, IntRange, Param
from autoaccel.strategy import NAME_RE, Capability, Phase, Strategy
from autoaccel.target import Target

CPU = Target("cpu", "cpu", "test cpu", 2, 8.0, None, ("fp32", "bf16", "fp16"), {})
CUDA = Target("cuda", "cuda:0", "test gpu", 8, 80.0, (9, 0), ("fp32", "tf32", "bf16", "fp16"), {})


def sample_value(param: Param, rng: random.Random) -> Any:
    if isinstance(param, Categorical):
        return rng.choice(param.choices)
    if isinstance(param, IntRange):
        return rng.randint(param.low, param.high)
    assert isinstance(param, FloatRange)
    return rng.uniform(param.low, param.high)


class StrategyContract:
    """Subclass and set ``strategy_class`` (or override :meth:`make`)."""

    strategy_class: ClassVar[type[Strategy]]
    targets: ClassVar[tuple[Target, ...]] = (CPU, CUDA)

    def make(self) -> Strategy:
        return self.strategy_class()

    def base(self) -> Pipeline:
        return Pipeline(device="cpu", batch_size=32, lr=0.01, epochs=2)

    def test_name_and_phase(self) -> None:
        s = self.make()
        assert NAME_RE.match(s.name), f"name {s.name!r} must match {NAME_RE.pattern}"
        assert isinstance(s.phase, Phase)

    def test_space_has_defaults_inside(self) -> None:
        space = self.make().space()
        assert space, "a strategy must vary at least one parameter"
        for name, param in space.items():
            assert param.contains(param.default), f"default of {name} outside its range"

    def test_check_returns_capability_and_keeps_defaults(self) -> None:
        s = self.make()
        for target in self.targets:
            cap = s.check(target)
            assert isinstance(cap, Capability)
            if not cap.supported:
                assert cap.reason, "an unsupported strategy must say why"
            for name, param in s.effective_space(target).items():
                assert param.contains(s.space()[name].default), f"{name}: check() dropped the off value"

    def test_defaults_are_the_identity(self) -> None:
        s = self.make()
        base = self.base()
        assert s.apply(base, s.defaults()) == base, "applying the defaults must leave the user's recipe unchanged"

    def test_apply_never_mutates_and_returns_pipeline(self) -> None:
        s = self.make()
        rng = random.Random(0)
        for target in self.targets:
            space = s.effective_space(target)
            for _ in range(20):
                base = self.base()
                snapshot = base.describe()
                params = {k: sample_value(p, rng) for k, p in space.items()}
                out = s.apply(base, params)
                assert isinstance(out, Pipeline)
                assert base.describe() == snapshot, "apply() mutated its input"
