"""A study's configurations as plans: the settings one trial varies become a Pipeline (with the trained members
its strategies ask for, chosen from the study), and a finished trial's plan is rebuilt from its record."""

from __future__ import annotations

from typing import Any

import optuna

from autoaccel.plugin._configuration import configuration
from autoaccel.plugin._pipeline import Member, Pipeline
from autoaccel.plugin._strategy import apply_all, split_params
from autoaccel.search._members import choose_members, plan_of, recipe_at
from autoaccel.search._setup import Setup
from autoaccel.task import Task


class Plans:
    """Builds plans for the policy, the executor and the finish; holds no study of its own."""

    def __init__(self, task: Task, setup: Setup, mode: str) -> None:
        self.task, self.setup, self.mode = task, setup, mode

    @property
    def base(self) -> Pipeline:
        """The user's recipe as a plan, at the search's share of the schedule once that is planned."""
        return self.setup.base

    def base_at(self, fraction: float | None, replica: int = 0) -> Pipeline:
        """The user's recipe as a plan training ``fraction`` of its schedule (None: the search's fidelity), from the
        task's seed or, as a replica, another (``replica``)."""
        return recipe_at(self.task, self.setup.base, fraction, replica)

    def build(self, params: dict[str, Any], study: optuna.Study | None = None,
              fraction: float | None = None, replica: int = 0) -> tuple[dict[str, Any], Pipeline, int]:
        """The configuration (settings that change the plan), its plan with the trained members its strategies
        ask for chosen from ``study``, and how many of those the study cannot supply yet. ``fraction``: a share of
        the schedule other than the search's (the recipe's ladder, a promotion, `autoaccel confirm`); ``replica``:
        another seed (the recipe's replicas)."""
        strategies = self.setup.strategies
        config = configuration(strategies, self.setup.base, params, self.setup.defaults)
        plan = apply_all(strategies, self.base_at(fraction, replica), config)
        grouped = split_params(config)
        wanted = sum(s.members_needed(grouped[s.name]) for s in strategies if s.name in grouped)
        if wanted and study is not None:
            plan = plan.replace(members=self.members(study, plan, wanted))
        return config, plan, wanted - len(plan.members)

    def members(self, study: optuna.Study, plan: Pipeline, k: int) -> tuple[Member, ...]:
        return choose_members(study, self.task, self.setup.strategies, self.setup.base, self.mode, plan, k)

    def plan_of(self, study: optuna.Study, trial: int) -> Pipeline:
        """The plan a completed trial ran, members included (rebuilt from the trials they came from)."""
        return plan_of(study, trial, self.task, self.setup.strategies, self.setup.base, self.mode)
