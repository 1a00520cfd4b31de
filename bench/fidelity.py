"""How well the search's proxies stand for whole trainings: every configuration of a restricted training space,
trained at full length and at each proxy fidelity, on real tasks.

    python bench/fidelity.py examples/resnet_digits.py --fractions 1/16,1/4 --out bench/results/fidelity_resnet.json
    python bench/fidelity.py examples/resnet_digits.py --space product --fractions 1/16,1/8,1/4 --out bench/tables/resnet_digits_fidelity.json

``--space pairs`` (the default) records the techniques a CPU run screens first, alone and in the pairs that matter;
``--space product`` records every combination of a small space (``PRODUCT``): a table that bench/search_replay.py
replays search methods on under the same multi-fidelity costs.

For each configuration and fidelity it records the training time (at a proxy: projected from the compressed run's
steady step time, as the search does) and the quality (at a proxy: after the schedule compressed to that share,
the baseline likewise). Then it prints, per proxy fidelity:
- Spearman's rank correlation between the proxy's and the full length's speedups, and between their quality drops;
- the proxy's answer (the fastest configuration whose quality drop at that fidelity is within the budget) and
  whether it is the full-length answer, or within 5% of its full-length speedup.
Every figure comes from real trainings in one process, one configuration after the other.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optuna.trial import TrialState  # noqa: E402
from scipy import stats  # noqa: E402

from autoaccel.errors import TrialFailure
from autoaccel.finish import accuracy_drop, over_budget
from autoaccel.finish._recipe_curve import curve_of
from autoaccel.options import Options
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._registry import plugin_manager  # noqa: E402
from autoaccel.plugin._strategy import apply_all  # noqa: E402
from autoaccel.search import QUALITY_DETAILS, set_up_search
from autoaccel.task import Task, load_task
from autoaccel.trial import TrialRecord, TrialResult, run_trial, warm_up
from autoaccel.trial._curve import RecipeCurve

# The restricted training space: the techniques a CPU run screens first, alone and in the pairs that matter.
CONFIGS: list[dict[str, Any]] = [
    {},
    {"precision.dtype": "bf16"},
    {"memory_format.format": "channels_last"},
    {"precision.dtype": "bf16", "memory_format.format": "channels_last"},
    {"batch_size.size": 64, "batch_size.lr_scaling": "sqrt"},
    {"batch_size.size": 128, "batch_size.lr_scaling": "sqrt"},
    {"batch_size.size": 64, "batch_size.lr_scaling": "sqrt", "precision.dtype": "bf16"},
    {"scheduler.kind": "onecycle"},
]
# The small space recorded whole by --space product: 2 x 2 x 3 x 2 = 24 configurations. Batch sizes (the recipe's,
# twice and four times it) other than the recipe's rescale the LR by sqrt (the rule the search tries first); the schedule is the recipe's or one-cycle.
PRODUCT: dict[str, list[Any]] = {
    "precision.dtype": ["fp32", "bf16"],
    "memory_format.format": ["contiguous", "channels_last"],
    "batch_size.size": [1, 2, 4],  # multiples of the recipe's own batch size
    "scheduler.kind": ["constant", "onecycle"],
}
MULTIPLES = {"batch_size.size"}
PRODUCT_FIXED = {"batch_size.lr_scaling": ["sqrt"], "scheduler.warmup": [0.0], "scheduler.lr_factor": [1.0]}
BUDGET = 0.01  # quality drop allowed: absolute for a metric in [0, 1] (accuracy), else 2% of the recipe's value
NEAR = 0.05  # a proxy's answer within 5% of the best full-length speedup counts as near


def product_configs(defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of PRODUCT, each spelled as the settings it changes from the recipe (the recipe first)."""
    configs = []
    space = {k: [v * defaults[k] for v in vs] if k in MULTIPLES else vs for k, vs in PRODUCT.items()}
    for values in itertools.product(*space.values()):
        config = {k: v for k, v in zip(space, values) if v != defaults.get(k)}
        if config.get("batch_size.size", defaults.get("batch_size.size")) != defaults.get("batch_size.size"):
            config["batch_size.lr_scaling"] = PRODUCT_FIXED["batch_size.lr_scaling"][0]
        configs.append(config)
    return sorted(configs, key=len)


def record(model: str, fractions: list[float], out: Path | None = None, space: str = "pairs",
           replicas: int = 0) -> dict[str, Any]:
    """Every configuration at full length and at each of ``fractions``; the recipe also ``replicas`` more times at
    each rung, each from another seed (the run-to-run noise the recipe's curve and every drop's interval read)."""
    task = load_task(model)
    pm = plugin_manager()
    keys = PRODUCT if space == "product" else {k for c in CONFIGS for k in c}
    names = sorted({k.partition(".")[0] for k in keys})
    plan = set_up_search(task, Options(target="cpu", mode="train", strategies=tuple(names)), pm)
    configs = product_configs(plan.defaults) if space == "product" else CONFIGS
    warm_up(task)
    rows = []
    meta: dict[str, Any] = {"space": space, "strategies": names, "budget": BUDGET, "replicas": replicas,
                            "defaults": {k: plan.defaults[k] for k in sorted(keys)}}
    if space == "product":
        resolved = {k: [v * plan.defaults[k] for v in vs] if k in MULTIPLES else vs for k, vs in PRODUCT.items()}
        meta["choices"] = [f"{k}={','.join(str(v).lower() if isinstance(v, bool) else str(v) for v in vs)}"
                           for k, vs in {**resolved, **PRODUCT_FIXED}.items()]
    for config in configs:
        if any(k not in plan.space for k in config):
            continue
        row: dict[str, Any] = {"config": config, "at": {}}
        for fraction in [1.0, *fractions]:
            base = plan.base.replace(fraction=fraction)
            pipeline = apply_all(plan.strategies, base, {**plan.defaults, **config})
            try:
                row["at"][str(fraction)], result = _cell(task, pipeline, task.seed, config, fraction)
            except TrialFailure as failure:  # a configuration this task cannot run: recorded, left out of the figures
                row["at"][str(fraction)] = {"failed": f"{failure.kind}: {failure.reason}"}
                print(f"{json.dumps(config)} at {Fraction(fraction).limit_denominator()}: failed ({failure.kind})", flush=True)
                break
            if not config and fraction == 1.0:  # what the search's probe and its training screens read
                meta.update(full_steps=row["at"]["1.0"]["fidelity"].get("full_steps"), profile=result.details.get("profile") or {})
            if not config and fraction < 1.0 and replicas:
                # As the search's ladder measures it: the recipe again from other seeds, at each rung (not at full
                # length, which the search never trains for noise).
                row.setdefault("replicas", {})[str(fraction)] = [
                    _cell(task, pipeline, task.seed + k, config, fraction)[0] for k in range(1, replicas + 1)]
        rows.append(row)
        table = {"task": task.name, "model": model, "fractions": fractions, **meta, "rows": rows}
        if out is not None:  # after every configuration: a long recording killed midway keeps what it measured
            out.write_text(json.dumps(table, indent=1) + "\n")
    return {"task": task.name, "model": model, "fractions": fractions, **meta, "rows": rows}


def _cell(task: Task, pipeline: Pipeline, seed: int, config: dict[str, Any],
          fraction: float) -> tuple[dict[str, Any], TrialResult]:
    """One training of ``pipeline`` from ``seed``, as a table cell (and the trial's result)."""
    started = time.perf_counter()
    result = run_trial(task, pipeline, seed=seed, timing_budget_s=0.05)
    fidelity = {k: v for k, v in result.details.get("fidelity", {}).items() if k != "loss_curve"}
    # What pairs a quality drop (per-sample correctness, rows or replicates): a replay's search judges with it.
    pairing = {k: result.details[k] for k in (*QUALITY_DETAILS, "metric") if k in result.details}
    cell = {"train_time": result.metrics["train_time"], "accuracy": result.metrics["accuracy"],
            "wall_s": time.perf_counter() - started, "metrics": result.metrics,
            "ci95": {k: list(v) for k, v in result.ci95.items()}, "fidelity": fidelity, "pairing": pairing, "seed": seed}
    print(f"{json.dumps(config)} at {Fraction(fraction).limit_denominator()}{'' if seed == task.seed else f' (seed {seed})'}: "
          f"train_time {result.metrics['train_time']:.1f} s, accuracy {result.metrics['accuracy']:.4f}, "
          f"{cell['wall_s']:.1f} s wall", flush=True)
    return cell, result


def quality_budget(quality: float, budget: float = BUDGET) -> float:
    """The drop allowed: ``budget`` itself for a metric in [0, 1] (accuracy), else twice it relative to the
    recipe's value (a perplexity, a loss)."""
    return budget if abs(quality) <= 1.0 else 2 * budget * abs(quality)


def summarize(table: dict[str, Any]) -> list[str]:
    rows = [r for r in table["rows"] if not any("failed" in at for at in r["at"].values())]
    failed = [r["config"] for r in table["rows"] if r not in rows]
    base = rows[0]["at"]
    out = [f"{table['task']}: {len(rows)} configurations; full-length recipe {base['1.0']['train_time']:.1f} s, "
           f"accuracy {base['1.0']['accuracy']:.4f}" + (f"; failed to run: {json.dumps(failed)}" if failed else "")]

    def speedup(row: dict[str, Any], f: str) -> float:
        return base[f]["train_time"] / row["at"][f]["train_time"]

    def drop(row: dict[str, Any], f: str) -> float:
        return base[f]["accuracy"] - row["at"][f]["accuracy"]

    budget = quality_budget(base["1.0"]["accuracy"], BUDGET)

    def answer(f: str) -> int:
        feasible = [i for i, r in enumerate(rows) if drop(r, f) <= budget]
        return max(feasible, key=lambda i: speedup(rows[i], f))

    best = answer("1.0")
    best_speed = speedup(rows[best], "1.0")
    out.append(f"  full-length answer: {json.dumps(rows[best]['config'])} at {best_speed:.2f}x")
    for fraction in table["fractions"]:
        f = str(fraction)
        rho_speed = stats.spearmanr([speedup(r, f) for r in rows], [speedup(r, "1.0") for r in rows]).statistic
        rho_quality = stats.spearmanr([drop(r, f) for r in rows], [drop(r, "1.0") for r in rows]).statistic
        mine = answer(f)
        full = speedup(rows[mine], "1.0")
        verdict = ("the same" if mine == best else
                   f"within 5% ({full:.2f}x)" if full >= (1 - NEAR) * best_speed and drop(rows[mine], "1.0") <= budget
                   else f"not the same: {full:.2f}x at full length, drop {drop(rows[mine], '1.0'):+.4f}")
        cost = sum(r["at"][f]["wall_s"] for r in rows) / sum(r["at"]["1.0"]["wall_s"] for r in rows)
        out.append(f"  at {Fraction(fraction).limit_denominator()}: Spearman speed {rho_speed:.2f}, quality {rho_quality:.2f}; "
                   f"its answer {json.dumps(rows[mine]['config'])} is {verdict}; cost {cost:.2f} of full length")
    return out


def _record(number: int, at: dict[str, Any], fraction: float) -> TrialRecord:
    """A table cell as the trial record the search's rules read (quality, its interval, what pairs it)."""
    return TrialRecord(number, TrialState.COMPLETE, role="baseline" if number == 0 else "rung", fraction=fraction,
                       metrics={"accuracy": at["accuracy"], "train_time": at["train_time"]},
                       ci95={k: list(v) for k, v in (at.get("ci95") or {}).items()}, details=dict(at.get("pairing") or {}))


def table_curve(rows: list[dict[str, Any]], fractions: list[float], budget: float) -> RecipeCurve:
    """The recipe's curve as the search's ladder would read it from the table's proxies (full length left out:
    the search does not have it). Run-to-run noise comes from the table's same-math pairs where it has them: the
    recipe's seed replicas (``replicas``), and channels_last, a speed-only change (the spread across speed-only
    trials of the same math that the search also uses)."""
    records: list[TrialRecord] = []
    same = next((r for r in rows if r["config"] == {"memory_format.format": "channels_last"}), None)
    for f in fractions:
        base = rows[0]["at"][str(f)]
        recipe = _record(len(records), base, f)  # the recipe at this rung: the first record at it
        records.append(recipe)
        for again in rows[0].get("replicas", {}).get(str(f), []):
            records.append(dataclasses.replace(_record(len(records), again, f), replica=1))
        if same is not None and str(f) in same["at"]:
            # As the search's sanity check records it: its own measured quality against the recipe's at this rung.
            records.append(TrialRecord(len(records), TrialState.COMPLETE, role="screen", fraction=f,
                                       config={"memory_format.format": "channels_last"},
                                       metrics={"accuracy": base["accuracy"], "train_time": 1.0},
                                       details={"quality": {"against": recipe.number,
                                                            "measured": same["at"][str(f)]["accuracy"]}}))
    return curve_of(records, budget)


def rule_verdicts(table: dict[str, Any]) -> list[str]:
    """How often the old rule (judge at the search's rung, sampling noise only) and the new one (judge at the
    lowest informative rung of the recipe's curve, training noise included; no verdict where none is) accept or
    reject a configuration as full length would, and find the full-length best within 5%."""
    rows = [r for r in table["rows"] if not any("failed" in at for at in r["at"].values())]
    fractions = [float(f) for f in table["fractions"]]
    budget = quality_budget(rows[0]["at"]["1.0"]["accuracy"], table.get("budget", BUDGET))
    curve = table_curve(rows, fractions, budget)

    def drop_at(row: dict[str, Any], f: float, noise: float | None = None) -> dict[str, Any]:
        return accuracy_drop(_record(0, rows[0]["at"][str(f)], f), _record(1, row["at"][str(f)], f), noise)

    truth = [drop_at(r, 1.0)["value"] <= budget + 1e-12 for r in rows]
    speed = [rows[0]["at"]["1.0"]["train_time"] / r["at"]["1.0"]["train_time"] for r in rows]
    best = max(s for s, ok in zip(speed, truth) if ok)
    out = [f"{table['task']}: quality verdicts against full length ({len(rows)} configurations, {sum(truth)} within the "
           f"budget of {budget:.4g} at full length; full-length best {best:.2f}x)"]
    for f in fractions:
        old = [over_budget(drop_at(r, f), budget, f) <= 1e-12 for r in rows]
        at = curve.judged_at(f)
        new: list[bool | None] = [None] * len(rows) if at is None else [
            over_budget(drop_at(r, at, curve.training_noise(at)), budget, at) <= 1e-12 for r in rows]

        def agree(verdicts: list[bool | None]) -> str:
            same = sum(v == t for v, t in zip(verdicts, truth))
            unknown = sum(v is None for v in verdicts)
            wrong = len(rows) - same - unknown
            return f"{same}/{len(rows)} as full length, {wrong} wrong" + (f", {unknown} not judged" if unknown else "")

        def found(verdicts: list[bool | None], f: float = f) -> str:
            picks = [i for i, v in enumerate(verdicts) if v]
            if not picks:
                return "no answer"
            i = min(picks, key=lambda i: rows[i]["at"][str(f)]["train_time"])  # the fastest the proxy accepts
            ok = truth[i] and speed[i] >= (1 - NEAR) * best
            return f"{'finds' if ok else 'misses'} the best within 5% ({speed[i]:.2f}x{'' if truth[i] else ', over budget'})"

        where = "no informative rung" if at is None else f"judged at {Fraction(at).limit_denominator()}"
        out.append(f"  search at {Fraction(f).limit_denominator()}: old rule {agree(old)}, {found(old)}; new rule ({where}) "
                   f"{agree(new)}, {found(new)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a model.py to record (omit with --table)")
    parser.add_argument("--fractions", default="1/16,1/4", help="proxy fidelities, comma-separated")
    parser.add_argument("--space", choices=("pairs", "product"), default="pairs",
                        help="pairs: the first screens and their pairs; product: every combination of PRODUCT (a replay table)")
    parser.add_argument("--out", default=None, help="write the recorded table here (JSON)")
    parser.add_argument("--replicas", type=int, default=0,
                        help="train the recipe this many more times at each proxy rung, from other seeds (run-to-run noise)")
    parser.add_argument("--table", action="append", default=None, help="summarize a recorded table instead (repeatable)")
    args = parser.parse_args()
    tables = [json.loads(Path(t).read_text()) for t in args.table or []]
    if args.model:
        table = record(args.model, [float(Fraction(f)) for f in args.fractions.split(",")], Path(args.out) if args.out else None,
                       args.space, args.replicas)
        tables.append(table)
    for table in tables:
        print("\n".join(summarize(table)))
        print("\n".join(rule_verdicts(table)))


if __name__ == "__main__":
    main()
