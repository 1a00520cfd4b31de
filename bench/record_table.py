"""Record a replay table: every configuration of a restricted space, trained once and evaluated ``--repeats`` times.

    python bench/record_table.py examples/digits.py --strategies batch_size,precision,dataloader,scheduler,quantization,runtime,pruning \
        --choices batch_size.size=16,32,64,128 --choices batch_size.lr_scaling=none,linear ... --out bench/tables/digits_cpu.json

Each row holds the configuration (the settings that change the plan), its goal (train, serve, combined), the
objectives and accuracy, the training key, the seconds its training took and the seconds its evaluation took.
A row's figures are the medians of its evaluations, taken in passes over the whole table (the later ones reuse
the cached training): one evaluation alone can land a whole run on a quiet or a busy spell of the machine, and a
replay then rewards the search that happens on that row rather than the one that searches well.
Every suggested point of the conditional grid is mapped to its row (``aliases``), so a replay of any search
method, conditional or flat, finds what it would have measured. bench/search_replay.py replays searches on it;
bench/README.md documents the format.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoaccel.cli import parse_choices  # noqa: E402
from autoaccel.errors import TrialFailure
from autoaccel.options import Options
from autoaccel.plugin._configuration import configuration, goal_of  # noqa: E402
from autoaccel.plugin._pipeline import Pipeline  # noqa: E402
from autoaccel.plugin._registry import plugin_manager  # noqa: E402
from autoaccel.plugin._space import Categorical, Param, active  # noqa: E402
from autoaccel.plugin._strategy import apply_all  # noqa: E402
from autoaccel.search import set_up_search
from autoaccel.task import load_task
from autoaccel.trial import TrialResult, run_trial, training_key, warm_up

TABLE_VERSION = 1


def describe_param(param: Param) -> dict[str, Any]:
    """A parameter as the YAML a space is written in (conditions included), so a replay needs no plugins."""
    if not isinstance(param, Categorical):
        raise SystemExit(f"record_table: a table needs a finite grid; narrow range parameters with --choices ({param})")
    out: dict[str, Any] = {"choices": list(param.choices), "default": param.default}
    when = {}
    for cond in param.when:
        when[cond.sibling] = "changed" if cond.changed else ({"not": list(cond.values)} if cond.negate else list(cond.values))
    if when:
        out["when"] = when
    return out


def grid(space: dict[str, Param]) -> list[dict[str, Any]]:
    """Every point of the conditional grid: per strategy, the combinations of its active parameters."""
    by_strategy: dict[str, dict[str, Param]] = {}
    for name, param in space.items():
        strategy, _, local = name.partition(".")
        by_strategy.setdefault(strategy, {})[local] = param
    per_strategy = []
    for strategy, local in by_strategy.items():
        points = set()
        for values in itertools.product(*(p.choices for p in local.values())):  # type: ignore[union-attr]
            chosen = dict(zip(local, values))
            kept = {k: v for k, v in chosen.items() if active(local, k, chosen)}
            points.add(tuple(sorted((f"{strategy}.{k}", v) for k, v in kept.items())))
        per_strategy.append(sorted(points, key=repr))
    return [dict(itertools.chain(*combo)) for combo in itertools.product(*per_strategy)]


def alias(params: dict[str, Any]) -> str:
    return json.dumps(sorted(params.items()), default=str)


def medians(results: list[TrialResult]) -> dict[str, float]:
    """Each metric's median over a row's runs (the training figures are the same in each: measured once, cached)."""
    return {name: statistics.median(r.metrics[name] for r in results) for name in results[0].metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--strategies", required=True)
    parser.add_argument("--choices", action="append", default=[])
    parser.add_argument("--mode", default="both")
    parser.add_argument("--objectives", default=None)
    parser.add_argument("--timing-budget", type=float, default=0.2, help="seconds of timing per latency measurement")
    parser.add_argument("--repeats", type=int, default=3, help="evaluations per row; its figures are their medians")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1 evaluation per row, got {args.repeats}")
    task = load_task(args.model)
    options = Options(strategies=tuple(args.strategies.split(",")), choices=parse_choices(args.choices), mode=args.mode,
                      objectives=tuple(args.objectives.split(",")) if args.objectives else None, target="cpu")
    options.validate()
    plan = set_up_search(task, options, plugin_manager())
    # The user's recipe first, after the process's one-off costs are paid: every speedup is against it.
    warm_up(task)
    points = grid(plan.space)
    points.sort(key=lambda p: bool(configuration(plan.strategies, plan.base, {**plan.defaults, **p}, plan.defaults)))
    print(f"{len(points)} grid points over {len(plan.space)} parameters", file=sys.stderr)
    rows: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    pipelines: dict[str, Pipeline] = {}
    results: dict[str, list[TrialResult]] = {}
    evaluations: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        for i, params in enumerate(points):
            config = configuration(plan.strategies, plan.base, {**plan.defaults, **params}, plan.defaults)
            pipeline = apply_all(plan.strategies, plan.base, config)
            fingerprint = pipeline.fingerprint()
            aliases[alias(params)] = fingerprint
            if fingerprint in rows:
                continue
            key = training_key(task, pipeline)
            started = time.perf_counter()
            try:
                first = run_trial(task, pipeline, task.seed, args.timing_budget, cache)
            except TrialFailure as exc:
                rows[fingerprint] = {"params": config, "goal": goal_of(config, plan.strategies, options.mode), "training_key": key,
                                     "failed": f"{exc.kind}: {exc.reason}", "train_seconds": 0.0,
                                     "eval_seconds": time.perf_counter() - started}
                continue
            wall = time.perf_counter() - started
            trained = not first.details.get("cached_training", False)
            train_s = float(first.metrics["train_time"]) if plan.base.train else 0.0
            # Its evaluation: what is left of the run once training (compilation apart) is taken out.
            evaluation = max(0.0, wall - train_s - float(first.details.get("compile_s", 0.0))) if trained else wall
            pipelines[fingerprint], results[fingerprint], evaluations[fingerprint] = pipeline, [first], [evaluation]
            # Training seconds are charged separately by a replay, once per training key.
            rows[fingerprint] = {"params": config, "goal": goal_of(config, plan.strategies, options.mode),
                                 "training_key": key, "train_seconds": train_s}
            print(f"[{i + 1}/{len(points)}] {len(rows)} rows  {config}  {first.metrics.get('accuracy'):.4f}", file=sys.stderr)
        # The later evaluations reuse the cached training, every row once per pass and in a new order each time: a
        # busy or quiet spell of a shared machine then falls on different rows in each pass, and a row's median
        # leaves it out (back to back, the evaluations of one row would share it).
        order = list(pipelines)
        for repeat in range(1, args.repeats):
            random.Random(repeat).shuffle(order)
            for fingerprint in order:
                started = time.perf_counter()
                results[fingerprint].append(run_trial(task, pipelines[fingerprint], task.seed, args.timing_budget, cache))
                evaluations[fingerprint].append(time.perf_counter() - started)
            print(f"pass {repeat + 1} of {args.repeats}: every row evaluated again", file=sys.stderr)
    for fingerprint, measured in results.items():
        rows[fingerprint].update(metrics=medians(measured), eval_seconds=statistics.median(evaluations[fingerprint]))
    baseline = apply_all(plan.strategies, plan.base, {}).fingerprint()
    table = {
        "version": TABLE_VERSION, "name": Path(args.out).stem, "task": task.name, "model": args.model, "mode": options.mode,
        "strategies": args.strategies, "choices": args.choices, "objectives": list(options.resolved_objectives()),
        "repeats": args.repeats,
        "max_accuracy_drop": options.max_accuracy_drop,
        "space": {name: describe_param(p) for name, p in plan.space.items()},
        "baseline": baseline,
        # Where the user's recipe spends its training time, from its training run: the real search orders its
        # training screens by it, so a replay must see it too.
        "profile": results[baseline][0].details.get("profile", {}) if baseline in results else {},
        "rows": rows, "aliases": aliases,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(table, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.out}: {len(rows)} configurations, {len(aliases)} grid points", file=sys.stderr)


if __name__ == "__main__":
    main()
