"""Replay search methods against a recorded table: how much search cost each needs to find the win.

    python bench/search_replay.py --table bench/tables/digits_cpu.json --seeds 20 [--trials 6,12] [--json]

A trial's cost is its evaluation seconds, plus its training seconds when its training key was not trained
before in that replay (serving variants of a trained recipe reuse it, as in a real study). For each method, the
median over seeds of the cost to reach 95% of the table's best feasible speedup, per goal (train: train_time,
serve: latency), and its ratio to plain TPE's. Methods:

- autoaccel: the real search (its stages, sampler, factor alternation, conditional space, reuse of measured
  configurations, early stopping of training runs on course to be slower than an answer could be), driven trial by
  trial with the table standing in for the worker (a run stopped early is charged a tenth of its training; the
  user's recipe reports the table's ``profile``, which orders the training screens);
- tpe, nsga2, random: plain Optuna over the flat space, every parameter suggested every trial (what a user of
  Optuna would write), the same objectives;
- exhaustive: every configuration once, in a random order.

With ``--trials``, each method is also run for exactly that many measurements (ours told so, as a user's
``--trials``), and the median best feasible speedup it found is printed: where every trial is dear (a GPU),
the budget is counted in trials rather than seconds.

A table recorded at several fidelities (bench/fidelity.py --space product) is replayed by fidelity_replay.py instead:
the real search at its planned rungs against plain TPE, TPE with Optuna's Hyperband pruner and random, all charged
the same multi-fidelity costs (see that module).

Every method measures the user's recipe first (speedups are against it). A seed that never reaches a goal within
the cap (as many measurements as the table has configurations) counts as never: the median is null when more than half never do.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from autoaccel.errors import TrialFailure
from autoaccel.options import Options
from autoaccel.plugin._contexts import Guards  # noqa: E402
from autoaccel.plugin._registry import plugin_manager  # noqa: E402
from autoaccel.plugin._space import active, parse_space  # noqa: E402
from autoaccel.search import Search
from autoaccel.search import study as studies
from autoaccel.task import load_task
from autoaccel.trial import TrialResult, record
from autoaccel.vocab import METRICS

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"train": "train_time", "serve": "latency"}
REACH = 0.95
METHODS = ("autoaccel", "tpe", "nsga2", "random", "exhaustive")
STOPPED_AT = 0.1  # the share of its training a too-slow trial runs before it is stopped (train.train's checkpoint)
ANYTIME = (0.01, 0.02, 0.05, 0.1, 0.25)  # budgets, as fractions of the whole table's cost


class Table:
    def __init__(self, path: str) -> None:
        self.data = json.loads(Path(path).read_text(encoding="utf-8"))
        self.rows: dict[str, dict[str, Any]] = self.data["rows"]
        self.base = self.rows[self.data["baseline"]]
        self.objectives: list[str] = self.data["objectives"]
        # Per strategy, its local space with conditions, so a flat suggestion maps to the point that applies.
        grouped: dict[str, dict[str, Any]] = {}
        for name, spec in self.data["space"].items():
            strategy, _, local = name.partition(".")
            grouped.setdefault(strategy, {})[local] = spec
        self.spaces = {s: parse_space({"params": local}, f"table {s}") for s, local in grouped.items()}
        budget = self.data["max_accuracy_drop"]
        # Only the goals the table's objectives judge (an inference-mode table has no train goal).
        self.goals = [g for g, metric in GOALS.items() if metric in self.objectives]
        # A goal's best is among the configurations that change only its factor (what its answer may recommend); a
        # measured configuration that changes both factors reaches it too when it is as fast (its user has seen it).
        self.best = {goal: max((self.speedup(r, goal) for r in self.rows.values()
                                if r.get("goal") in (goal, "baseline") and self.feasible(r, budget)), default=1.0)
                     for goal in self.goals}
        self.budget = budget
        # Recorded from the repository root: a relative model path is resolved against it.
        self.model = str(ROOT / self.data["model"]) if not Path(self.data["model"]).is_absolute() else self.data["model"]

    def speedup(self, row: dict[str, Any], goal: str) -> float:
        metric = GOALS[goal]
        if "metrics" not in row or row["metrics"].get(metric, 0) <= 0:
            return 0.0
        return self.base["metrics"][metric] / row["metrics"][metric]

    def feasible(self, row: dict[str, Any], budget: float) -> bool:
        return "metrics" in row and self.base["metrics"]["accuracy"] - row["metrics"]["accuracy"] <= budget + 1e-12

    def lookup(self, flat: dict[str, Any]) -> dict[str, Any]:
        """The row a flat suggestion measures: only the parameters that apply under their siblings count."""
        kept = []
        for strategy, local in self.spaces.items():
            chosen = {k.partition(".")[2]: v for k, v in flat.items() if k.partition(".")[0] == strategy}
            kept += [(f"{strategy}.{k}", v) for k, v in chosen.items() if active(local, k, chosen)]
        return self.rows[self.data["aliases"][json.dumps(sorted(kept), default=str)]]


class Replay:
    """Cost accounting of one method on one seed: evaluation always, training once per training key."""

    def __init__(self, table: Table) -> None:
        self.table, self.cost, self.trained, self.measured = table, 0.0, set(), 0
        self.reached: dict[str, float | None] = dict.fromkeys(table.goals)
        self.trials: dict[str, int | None] = dict.fromkeys(table.goals)  # measurements it took
        self.horizon = anytime_budgets(table)[-1]
        self.history: list[tuple[float, dict[str, float]]] = []  # (cost so far, best feasible speedup per goal)
        self.best: dict[str, float] = dict.fromkeys(table.goals, 1.0)
        self.study: optuna.Study | None = None  # ours: the study it filled (tests read its trials)
        self.search: Any = None

    def measure(self, row: dict[str, Any]) -> None:
        self.measured += 1
        self.cost += row["eval_seconds"]
        if row["training_key"] not in self.trained:
            self.trained.add(row["training_key"])
            self.cost += row["train_seconds"]
        if not self.table.feasible(row, self.table.budget):
            self.history.append((self.cost, dict(self.best)))
            return
        for goal in self.table.goals:
            if row.get("goal") == goal:  # an answer of this goal: it changes that factor only
                self.best[goal] = max(self.best[goal], self.table.speedup(row, goal))
        self.history.append((self.cost, dict(self.best)))
        for goal in self.table.goals:
            if (self.reached[goal] is None and row.get("goal") in (goal, "combined")
                    and self.table.speedup(row, goal) >= REACH * self.table.best[goal]):
                self.reached[goal], self.trials[goal] = self.cost, self.measured

    def best_at(self, cost: float, goal: str) -> float:
        """The best feasible speedup found for ``goal`` by the time ``cost`` seconds were spent (a run that stopped
        early, having reached every goal, keeps what it had)."""
        best = 1.0
        for spent, found in self.history:
            if spent > cost:
                break
            best = found[goal]
        return best

    @property
    def done(self) -> bool:
        """Every goal reached, and the search ran long enough for the anytime comparison."""
        return all(v is not None for v in self.reached.values()) and self.cost >= self.horizon


def plain_optuna(table: Table, seed: int, sampler: optuna.samplers.BaseSampler, cap: int, until_done: bool = True) -> Replay:
    replay = Replay(table)
    directions = ["maximize" if METRICS[o] else "minimize" for o in table.objectives]
    study = optuna.create_study(directions=directions, sampler=sampler)
    space = {name: optuna.distributions.CategoricalDistribution(spec["choices"]) for name, spec in table.data["space"].items()}
    study.enqueue_trial({name: spec["default"] for name, spec in table.data["space"].items()})
    for _ in range(cap):
        trial = study.ask(space)
        row = table.lookup(dict(trial.params))
        replay.measure(row)
        if "metrics" in row:
            study.tell(trial, [row["metrics"][o] for o in table.objectives])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if until_done and replay.done:
            break
    return replay


def exhaustive(table: Table, seed: int, cap: int, until_done: bool = True) -> Replay:
    replay = Replay(table)
    order = [r for k, r in table.rows.items() if k != table.data["baseline"]]
    random.Random(seed).shuffle(order)
    for row in [table.base, *order][:cap]:
        replay.measure(row)
        if until_done and replay.done:
            break
    return replay


class TableRunner:
    """Stands in for the worker: a plan's measurements come from its row of the table."""

    def __init__(self, table: Table, replay: Replay) -> None:
        self.by_fingerprint, self.replay = table.rows, replay
        # The user's recipe's profile, as its training run recorded it (the search orders training screens by it);
        # a table recorded before tables held one has none, and the search then keeps the declared order.
        self.baseline, self.profile = table.data["baseline"], table.data.get("profile") or {}

    def run(self, plan: Any, seed: int, timing_budget_s: float, guards: Guards | None = None) -> TrialResult:
        stop_slower_than = guards.slower_than if guards is not None else None
        row = self.by_fingerprint.get(plan.fingerprint())
        if row is None:
            raise TrialFailure("configuration not in the table", kind="unsupported")
        if (stop_slower_than is not None and "metrics" in row and row["metrics"]["train_time"] > stop_slower_than
                and row["training_key"] not in self.replay.trained):
            # A real run is judged after a tenth of its steps (train.train): charged that much of its training.
            self.replay.cost += STOPPED_AT * row["train_seconds"]
            self.replay.measured += 1
            raise TrialFailure("stopped early: on course to train slower than an answer could", kind="too_slow")
        self.replay.measure(row)
        if "metrics" not in row:
            kind, _, reason = row["failed"].partition(": ")
            raise TrialFailure(reason, kind=kind)
        details: dict[str, Any] = {"checkpoint": row["training_key"], "cached_training": False}
        if plan.fingerprint() == self.baseline and self.profile:
            details["profile"] = dict(self.profile)
        return TrialResult(dict(row["metrics"]), {}, details)

    def close(self) -> None:
        pass


def ours(table: Table, seed: int, cap: int, task: Any, trials: int | None = None) -> Replay:
    """The real search; with ``trials``, told that budget (as ``--trials``) and stopped when it is spent."""
    replay = Replay(table)
    with tempfile.TemporaryDirectory() as out:
        options = Options(strategies=tuple(table.data["strategies"].split(",")), mode=table.data["mode"], seed=seed,
                          choices=_choices(table.data["choices"]), isolate=False, quiet=True, out=out, target="cpu",
                          remeasure_rounds=0, ablation=False, trials=trials)
        search = Search(task, table.model, options, plugin_manager())
        storage = optuna.storages.InMemoryStorage()
        sampler = studies.make_sampler(options.sampler, seed, search.setup.space)
        study = studies.open_study(storage, "replay", search.objectives, sampler)
        studies.ensure_baseline(study, search.setup.defaults)
        search.attach(study)
        runner = TableRunner(table, replay)
        replay.study, replay.search = study, search
        proposals = repeats = 0
        while (replay.measured < trials if trials else not replay.done) and proposals < 4 * cap:
            proposals += 1
            number = search.next_trial(study, runner, proposals)
            done = record.read(study.get_trials(deepcopy=False)[number])
            repeats = repeats + 1 if done.duplicate_of is not None or done.not_run else 0
            if search.policy.exhausted(repeats):
                break  # where the real search stops: it keeps its best so far
    return replay


def _choices(items: list[str]) -> dict[str, tuple[object, ...]] | None:
    from autoaccel.cli import parse_choices as parse

    return parse(items)


def run_method(method: str, table: Table, seed: int, task: Any, trials: int | None = None) -> Replay:
    """One method on one seed: until it reached every goal (and ran past the anytime horizon), or for ``trials``
    measurements exactly, as a user's ``--trials`` budget."""
    cap = len(table.rows)  # as many measurements as exhaustive needs at most: beyond that a search has failed
    if method == "autoaccel":
        return ours(table, seed, cap, task, trials)
    if method == "exhaustive":
        return exhaustive(table, seed, trials or cap, until_done=trials is None)
    samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    return plain_optuna(table, seed, samplers[method](), trials or cap, until_done=trials is None)


def anytime_budgets(table: Table) -> list[float]:
    """Search costs at which every method's best-so-far is compared: fractions of what measuring the whole table
    costs (each training once, every evaluation)."""
    trainings = {r["training_key"]: r["train_seconds"] for r in table.rows.values()}
    total = sum(trainings.values()) + sum(r["eval_seconds"] for r in table.rows.values())
    return [total * f for f in ANYTIME]


def median_or_none(costs: list[float | None]) -> float | None:
    values = sorted(math.inf if c is None else c for c in costs)
    m = statistics.median(values)
    return None if math.isinf(m) else m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--budget", type=float, default=5.0, help="a table with fidelities: the run's budget in minutes "
                        "that plans the search's rungs (default 5, the default run's)")
    parser.add_argument("--trials", default="", help="also: the best each method finds within these fixed trial "
                        "budgets (comma-separated counts, as a user's --trials): every trial is dear on a GPU")
    args = parser.parse_args()
    try:
        budgets_in_trials = [int(n) for n in args.trials.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--trials: expected comma-separated trial counts such as 6,12, got {args.trials!r}")
    if any(n < 1 for n in budgets_in_trials):
        parser.error(f"--trials: expected counts of at least 1, got {args.trials!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    if "fractions" in json.loads(Path(args.table).read_text(encoding="utf-8")):
        from fidelity_replay import METHODS as FIDELITY_METHODS
        from fidelity_replay import replay, show

        path = args.table
        methods = [m for m in args.methods.split(",") if m in FIDELITY_METHODS] if args.methods != ",".join(METHODS) \
            else list(FIDELITY_METHODS)
        if not args.budget > 0:
            parser.error(f"--budget: expected a positive number of minutes, got {args.budget!r}")
        result = replay(path, args.seeds, methods, load_task(str(ROOT / json.loads(Path(path).read_text())["model"])),
                        args.budget)
        print(json.dumps(result) if args.json else "\n".join(show(result)))
        return
    table = Table(args.table)
    task = load_task(table.model)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    budgets = anytime_budgets(table)
    for method in args.methods.split(","):
        replays = [run_method(method, table, seed, task) for seed in range(args.seeds)]
        results[method] = {goal: {"cost_to_95": median_or_none([r.reached[goal] for r in replays]),
                                  "reached": sum(r.reached[goal] is not None for r in replays) / len(replays),
                                  "trials_to_95": median_or_none([r.trials[goal] for r in replays]),
                                  "anytime": [statistics.median(r.best_at(b, goal) for r in replays) for b in budgets]}
                           for goal in table.goals}
        for n in budgets_in_trials:
            short = [run_method(method, table, seed, task, trials=n) for seed in range(args.seeds)]
            for goal in table.goals:
                results[method][goal].setdefault("within_trials", {})[str(n)] = {
                    "best": statistics.median(r.best[goal] for r in short),
                    "reached": sum(r.reached[goal] is not None for r in short) / len(short)}
    if args.json:
        print(json.dumps({"table": table.data["name"], "methods": results}))
        return
    print(f"table {table.data['name']}: {len(table.rows)} configurations; best feasible speedup "
          + ", ".join(f"{g} {table.best[g]:.2f}x" for g in table.goals) + f"; {args.seeds} seeds")
    print(f"{'method':<11}" + "".join(f"{g + ' cost to 95%':>20}{'trials':>8}{'reached':>9}{'vs tpe':>8}" for g in table.goals))
    for method, goals in results.items():
        line = f"{method:<11}"
        for goal, r in goals.items():
            base = results.get("tpe", {}).get(goal, {}).get("cost_to_95")
            cost = r["cost_to_95"]
            ratio = f"{cost / base:.2f}" if cost is not None and base else "n/a"
            trials = r["trials_to_95"]
            line += (f"{(f'{cost:.2f} s' if cost is not None else 'never'):>20}{(f'{trials:.0f}' if trials is not None else '-'):>8}"
                     f"{r['reached']:>9.0%}{ratio:>8}")
        print(line)
    print(f"median best feasible speedup found by a search cost of {', '.join(f'{f:.0%}' for f in ANYTIME)} of the whole "
          f"table's ({', '.join(f'{b:.0f} s' for b in budgets)})")
    for method, goals in results.items():
        cells = "   ".join(f"{goal} " + " ".join(f"{v:.2f}" for v in r["anytime"]) for goal, r in goals.items())
        print(f"{method:<11}{cells}")
    if budgets_in_trials:
        print(f"median best feasible speedup within a fixed budget of {', '.join(map(str, budgets_in_trials))} trials "
              f"(share of seeds that reached 95% of the table's best)")
        for method, goals in results.items():
            cells = "   ".join(f"{goal} " + " ".join(f"{r['within_trials'][str(n)]['best']:.2f} ({r['within_trials'][str(n)]['reached']:.0%})"
                                                      for n in budgets_in_trials) for goal, r in goals.items())
            print(f"{method:<11}{cells}")


if __name__ == "__main__":
    main()
