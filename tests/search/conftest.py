"""Fixtures shared by the search's unit tests: a real setup of three strategies on the tiny digits task."""

from __future__ import annotations

import pytest

from autoaccel.options import Options
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search._plans import Plans
from autoaccel.search._setup import Setup, set_up_search
from tiny_digits import make_task


@pytest.fixture(scope="module")
def setup() -> Setup:
    options = Options(trials=20, target="cpu", strategies=("precision", "batch_size", "quantization"))
    return set_up_search(make_task(), options, plugin_manager())


@pytest.fixture(scope="module")
def plans(setup: Setup) -> Plans:
    return Plans(make_task(), setup, "both")
