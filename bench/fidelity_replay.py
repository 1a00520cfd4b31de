"""Search methods replayed on a table recorded at several fidelities (bench/fidelity.py --space product): what each
costs to find a training answer within 95% of the best, when every trial is charged what its training took.

    python bench/search_replay.py --table bench/tables/resnet_digits_fidelity.json --seeds 10

The table holds every configuration of a small training space, each trained whole and on its schedule compressed
to 1/16, 1/8, 1/4 and 1/2 (a compressed run is a run of its own: its LR schedule is compressed, so it cannot be
continued into a longer one). A trial at a fidelity costs that run's recorded wall time (model build, training,
evaluation). What a method has found at any moment is its *incumbent*, the answer it would give then, judged by
the table's full-length truth: its full-length speedup when its full-length quality is within the budget, else it
is a wrong answer (counted as no speedup). Methods:

- autoaccel: the real search (stages, sampler, early stopping), its fidelity planned as a default 5-minute run
  (or ``--budget`` minutes) plans it from the table's recipe (search rung and answer rung; fidelity.plan). Its incumbent is the fastest
  configuration within budget at the search rung; it is charged, once, the promotion the finish runs before it
  answers (the incumbent and the recipe at the answer rung);
- tpe, random: plain Optuna over the flat space, every trial a whole training;
- tpe+hyperband: TPE with Optuna's HyperbandPruner over rungs 1/16, 1/4, 1 (reduction factor 4). Optuna's pruners
  are single-objective (optuna/optuna#3450), so a trial reports one value per rung: its speedup over the recipe at
  that rung when its quality drop there is within budget, else 0. Its incumbent is the best trial completed at
  full length.

The table keeps each run's per-sample correctness, so the real search judges quality with its own paired rule (at
a compressed rung, a drop rules a configuration out only beyond noise); plain Optuna's methods judge by value, as
a user's objective would.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import optuna
from fidelity import BUDGET, quality_budget  # bench/fidelity.py, which records these tables

from autoaccel.errors import TrialFailure
from autoaccel.options import FINISH_SHARE, Options
from autoaccel.plugin._contexts import Guards
from autoaccel.plugin._registry import plugin_manager
from autoaccel.search import Search
from autoaccel.search import study as studies
from autoaccel.trial import TrialResult, record
from autoaccel.trial import fidelity as fidelities

REACH = 0.95
METHODS = ("autoaccel", "tpe", "tpe+hyperband", "random")
STOPPED_AT = 0.1  # the share of its run a trial stopped early for being too slow is charged (train.train's check)
DEFAULT_BUDGET_MIN = 5.0  # the default run's budget, which plans the search's fidelity
HYPERBAND_RUNGS = (1 / 16, 1 / 4, 1.0)
ANYTIME = (0.02, 0.05, 0.1, 0.25)  # budgets, as fractions of what training every configuration whole costs


def key(config: dict[str, Any]) -> str:
    return json.dumps(sorted(config.items()), default=str)


class FidelityTable:
    """Every configuration of a small space at each recorded fraction of the schedule, and the full-length truth."""

    def __init__(self, path: str) -> None:
        self.data = json.loads(Path(path).read_text(encoding="utf-8"))
        self.rows = [r for r in self.data["rows"] if not any("failed" in at for at in r["at"].values())]
        self.by_config = {key(r["config"]): r for r in self.rows}
        self.base = self.by_config[key({})]
        self.fractions = sorted({1.0, *self.data["fractions"]})
        self.defaults: dict[str, Any] = self.data["defaults"]
        self.budget = quality_budget(self.base["at"]["1.0"]["accuracy"], float(self.data.get("budget", BUDGET)))
        self.space = {k: sorted({r["config"].get(k, self.defaults[k]) for r in self.rows}, key=str)
                      for k in self.defaults if k != "batch_size.lr_scaling"}
        self.best = max(self.truth(r) for r in self.rows)
        self.whole = sum(r["at"]["1.0"]["wall_s"] for r in self.rows)
        self.model = self.data["model"]

    def at(self, row: dict[str, Any], fraction: float) -> dict[str, Any]:
        return row["at"][str(float(fraction))]

    def speedup(self, row: dict[str, Any], fraction: float) -> float:
        return self.at(self.base, fraction)["train_time"] / self.at(row, fraction)["train_time"]

    def within(self, row: dict[str, Any], fraction: float) -> bool:
        return self.at(self.base, fraction)["accuracy"] - self.at(row, fraction)["accuracy"] <= self.budget + 1e-12

    def truth(self, row: dict[str, Any] | None) -> float:
        """What an answer is worth to its user: its full-length speedup, or 1.0 (no gain) when wrong or absent."""
        if row is None or not self.within(row, 1.0):
            return 1.0
        return self.speedup(row, 1.0)

    def lookup(self, flat: dict[str, Any]) -> dict[str, Any]:
        """The row of a flat suggestion: the settings it changes; a changed batch size rescales the LR by sqrt."""
        config = {k: v for k, v in flat.items() if v != self.defaults[k]}
        if "batch_size.size" in config:
            config["batch_size.lr_scaling"] = "sqrt"
        return self.by_config[key(config)]

    def snap(self, fraction: float) -> float:
        """The recorded fraction a planned one is replayed at: the largest not above it."""
        return max((f for f in self.fractions if f <= fraction + 1e-12), default=self.fractions[0])


class Trajectory:
    """One method on one seed: the cost spent and, after each trial, the incumbent's full-length worth."""

    def __init__(self, table: FidelityTable) -> None:
        self.table, self.cost = table, 0.0
        self.history: list[tuple[float, float]] = []
        self.reached: float | None = None
        self.incumbent: dict[str, Any] | None = None

    def charge(self, seconds: float) -> None:
        self.cost += seconds

    def answer(self, row: dict[str, Any] | None, extra: float = 0.0) -> None:
        """The method's incumbent is now ``row``; ``extra``: seconds it must still spend before it can give it."""
        self.incumbent = row
        worth = self.table.truth(row)
        self.history.append((self.cost + extra, worth))
        if self.reached is None and worth >= REACH * self.table.best:
            self.reached = self.cost + extra

    def best_at(self, cost: float) -> float:
        worth = 1.0
        for spent, w in self.history:
            if spent > cost:
                break
            worth = w
        return worth

    @property
    def wrong(self) -> bool:
        return self.incumbent is not None and not self.table.within(self.incumbent, 1.0)


def _plain(table: FidelityTable, seed: int, sampler: optuna.samplers.BaseSampler,
           pruner: optuna.pruners.BasePruner | None = None) -> tuple[optuna.Study, dict[str, Any]]:
    """A single-objective study over the table's flat space, the user's recipe queued first (speedups are
    against it), as a user of Optuna would write it. Named after the seed: Hyperband assigns trials to brackets
    by a hash of the study's name, so an unnamed (random) study would not replay the same twice."""
    study = optuna.create_study(study_name=f"replay-{seed}", direction="maximize", sampler=sampler, pruner=pruner)
    study.enqueue_trial({k: table.defaults[k] for k in table.space})
    return study, {k: optuna.distributions.CategoricalDistribution(v) for k, v in table.space.items()}


def full_length(table: FidelityTable, seed: int, sampler: optuna.samplers.BaseSampler, cap: int) -> Trajectory:
    """Plain Optuna: every trial trains the whole recipe; the incumbent is the fastest within budget."""
    out = Trajectory(table)
    study, space = _plain(table, seed, sampler)
    best: dict[str, Any] | None = None
    for _ in range(cap):
        trial = study.ask(space)
        row = table.lookup(dict(trial.params))
        out.charge(table.at(row, 1.0)["wall_s"])
        feasible = table.within(row, 1.0)
        study.tell(trial, table.speedup(row, 1.0) if feasible else 0.0)
        if feasible and (best is None or table.speedup(row, 1.0) > table.speedup(best, 1.0)):
            best = row
        out.answer(best)
    return out


def hyperband(table: FidelityTable, seed: int, cap: int) -> Trajectory:
    """TPE with Optuna's HyperbandPruner: a trial trains at 1/16, then (if kept) at 1/4, then whole."""
    out = Trajectory(table)
    rungs = [table.snap(f) for f in HYPERBAND_RUNGS]
    units = [round(f / rungs[0]) for f in rungs]
    pruner = optuna.pruners.HyperbandPruner(min_resource=units[0], max_resource=units[-1], reduction_factor=4)
    study, space = _plain(table, seed, optuna.samplers.TPESampler(seed=seed), pruner)
    best: dict[str, Any] | None = None
    for _ in range(cap):
        trial = study.ask(space)
        row = table.lookup(dict(trial.params))
        value = 0.0
        for fraction, unit in zip(rungs, units):
            out.charge(table.at(row, fraction)["wall_s"])
            value = table.speedup(row, fraction) if table.within(row, fraction) else 0.0
            trial.report(value, unit)
            if fraction < 1.0 and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
            if value > 0 and (best is None or value > table.speedup(best, 1.0)):
                best = row
        out.answer(best)
    return out


class FidelityRunner:
    """Stands in for the worker of the real search: a plan's measurements come from its row at its fraction."""

    def __init__(self, table: FidelityTable, search: Search | None, out: Trajectory) -> None:
        self.table, self.search, self.out = table, search, out
        self.plans: dict[str, tuple[dict[str, Any], float]] = {}
        self.measured: list[tuple[dict[str, Any], float]] = []

    def index(self) -> None:
        """Every configuration's plan at every recorded fraction, by fingerprint (built as the search builds them)."""
        assert self.search is not None
        for row in self.table.rows:
            for fraction in self.table.fractions:
                _, plan, _ = self.search.plans.build({**self.search.setup.defaults, **row["config"]}, fraction=fraction)
                self.plans[plan.fingerprint()] = (row, fraction)

    def probe(self, plan: Any, seed: int) -> dict[str, float]:
        full = self.table.at(self.table.base, 1.0)
        steps = int(self.table.data["full_steps"])
        return {"full_s": full["train_time"], "full_steps": float(steps), "step_s": full["train_time"] / steps}

    def run(self, plan: Any, seed: int, timing_budget_s: float, guards: Guards | None = None) -> TrialResult:
        if not self.plans:
            self.index()
        found = self.plans.get(plan.fingerprint())
        if found is None:
            raise TrialFailure("configuration not in the table", kind="unsupported")
        row, fraction = found
        at = self.table.at(row, fraction)
        slower_than = guards.slower_than if guards is not None else None
        if slower_than is not None and at["train_time"] > slower_than:
            self.out.charge(STOPPED_AT * at["wall_s"])
            raise TrialFailure("stopped early: on course to train slower than an answer could", kind="too_slow")
        self.out.charge(at["wall_s"])
        self.measured.append((row, fraction))
        details: dict[str, Any] = {"checkpoint": key(row["config"]) + str(fraction), "cached_training": False,
                                   "fidelity": at.get("fidelity", {"fraction": fraction}), **at.get("pairing", {})}
        if not row["config"] and self.table.data.get("profile"):
            details["profile"] = dict(self.table.data["profile"])
        metrics = dict(at.get("metrics") or {"train_time": at["train_time"], "accuracy": at["accuracy"]})
        return TrialResult(metrics, {k: tuple(v) for k, v in at.get("ci95", {}).items()}, details)

    def close(self) -> None:
        pass


def ours(table: FidelityTable, seed: int, cap: int, task: Any, budget_min: float = DEFAULT_BUDGET_MIN) -> Trajectory:
    out = Trajectory(table)
    with tempfile.TemporaryDirectory() as folder:
        options = Options(strategies=tuple(table.data["strategies"]), mode="train", seed=seed, isolate=False,
                          quiet=True, out=folder, target="cpu", remeasure_rounds=0, ablation=False,
                          choices=_choices(table.data["choices"]))
        # Plan the fidelity as the default run does (fidelity.plan, from the recipe's full training and the search's
        # share of the budget), then search at the recorded rung at or below the planned one (as --fidelity).
        probe = FidelityRunner(table, None, out).probe(None, seed)
        budget = budget_min * 60.0
        techniques = len(Search(task, table.model, options, plugin_manager()).policy.stages.techniques("train"))
        planned = fidelities.plan(probe["full_s"], int(probe["full_steps"]), probe["step_s"], budget * (1 - FINISH_SHARE),
                                  budget * FINISH_SHARE, techniques)
        rung, answer_rung = table.snap(planned.search), table.snap(planned.answer)
        options = dataclasses.replace(options, fidelity=str(Fraction(rung).limit_denominator()))
        search = Search(task, table.model, options, plugin_manager())
        runner = FidelityRunner(table, search, out)
        storage = optuna.storages.InMemoryStorage()
        study = studies.open_study(storage, "replay", search.objectives,
                                   studies.make_sampler(options.sampler, seed, search.setup.space))
        search._plan_fidelity(study, runner)
        studies.ensure_baseline(study, search.setup.defaults)
        search.attach(study)
        proposals = repeats = 0
        best: dict[str, Any] | None
        while proposals < 4 * cap and len(runner.measured) < cap:
            proposals += 1
            number = search.next_trial(study, runner, proposals)
            done = record.read(study.get_trials(deepcopy=False)[number])
            repeats = repeats + 1 if done.duplicate_of is not None or done.not_run else 0
            best = _incumbent(study, runner, rung, table)
            # Before it answers, the finish trains the incumbent and the recipe at the answer rung.
            promotion = 0.0 if best is None or answer_rung <= rung else (
                table.at(best, answer_rung)["wall_s"] + table.at(table.base, answer_rung)["wall_s"])
            out.answer(best, promotion)
            if search.policy.exhausted(repeats):
                break
        out.rungs = (rung, answer_rung)  # type: ignore[attr-defined]
    return out


def _incumbent(study: optuna.Study, runner: FidelityRunner, rung: float, table: FidelityTable) -> dict[str, Any] | None:
    """The answer the search would give now: the fastest configuration it measured at its rung and judged within
    the quality budget itself (its paired rule: at a compressed rung, over the budget only beyond noise)."""
    best: dict[str, Any] | None = None
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        done = record.read(trial)
        if done.duplicate_of is not None or not done.feasible or done.fingerprint not in runner.plans:
            continue
        row, fraction = runner.plans[done.fingerprint]
        if fraction == rung and (best is None or table.speedup(row, rung) > table.speedup(best, rung)):
            best = row
    return best


def _choices(items: list[str]) -> dict[str, tuple[object, ...]] | None:
    from autoaccel.cli import parse_choices as parse

    return parse(items)


def run_method(method: str, table: FidelityTable, seed: int, task: Any,
               budget_min: float = DEFAULT_BUDGET_MIN) -> Trajectory:
    cap = 2 * len(table.rows)  # a search that has not found it in twice the space's size has failed
    if method == "autoaccel":
        return ours(table, seed, cap, task, budget_min)
    if method == "tpe+hyperband":
        return hyperband(table, seed, cap)
    sampler = optuna.samplers.TPESampler(seed=seed) if method == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    return full_length(table, seed, sampler, cap)


def median_or_none(costs: list[float | None]) -> float | None:
    m = statistics.median(sorted(math.inf if c is None else c for c in costs))
    return None if math.isinf(m) else m


def replay(path: str, seeds: int, methods: list[str], task: Any, budget_min: float = DEFAULT_BUDGET_MIN) -> dict[str, Any]:
    table = FidelityTable(path)
    budgets = [table.whole * f for f in ANYTIME]
    results: dict[str, Any] = {}
    for method in methods:
        runs = [run_method(method, table, seed, task, budget_min) for seed in range(seeds)]
        results[method] = {"cost_to_95": median_or_none([r.reached for r in runs]),
                           "reached": sum(r.reached is not None for r in runs) / len(runs),
                           "wrong": sum(r.wrong for r in runs) / len(runs),
                           "anytime": [statistics.median(r.best_at(b) for r in runs) for b in budgets]}
        if method == "autoaccel":
            results[method]["rungs"] = list(getattr(runs[0], "rungs", ()))
    return {"table": table.data["task"], "configurations": len(table.rows), "best": table.best, "budget_min": budget_min,
            "whole_s": table.whole, "budgets_s": budgets, "methods": results}


def show(result: dict[str, Any]) -> list[str]:
    methods = result["methods"]
    lines = [f"table {result['table']} (fidelities): {result['configurations']} configurations; best full-length "
             f"training speedup within budget {result['best']:.2f}x; training every configuration whole costs "
             f"{result['whole_s']:.0f} s"]
    if "autoaccel" in methods and methods["autoaccel"].get("rungs"):
        search, answer = methods["autoaccel"]["rungs"]
        lines.append(f"autoaccel searches at {Fraction(search).limit_denominator()} of the schedule and promotes its "
                     f"answer to {Fraction(answer).limit_denominator()} (planned as a {result['budget_min']:g}-minute run plans them)")
    lines.append(f"{'method':<15}{'cost to 95%':>13}{'reached':>9}{'vs tpe':>8}{'wrong':>7}   median worth of the "
                 f"answer at {', '.join(f'{f:.0%}' for f in ANYTIME)} of that cost")
    base = methods.get("tpe", {}).get("cost_to_95")
    for method, r in methods.items():
        cost = r["cost_to_95"]
        ratio = f"{cost / base:.2f}" if cost is not None and base else "n/a"
        lines.append(f"{method:<15}{(f'{cost:.0f} s' if cost is not None else 'never'):>13}{r['reached']:>9.0%}"
                     f"{ratio:>8}{r['wrong']:>7.0%}   " + " ".join(f"{v:.2f}x" for v in r["anytime"]))
    return lines
