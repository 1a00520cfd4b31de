"""The command line: ``autoaccel optimize|report|apply|plugins``.

Exit codes: 0 done; 2 bad input (one line on stderr naming the file, field or flag); 130 interrupted (Ctrl-C;
completed trials are kept, re-run to resume); 1 an internal error (a bug: please report it with --debug).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoaccel.errors import AutoaccelError, Interrupted, TaskWarning, exit_status, interrupt_reason
from autoaccel.fork_server import start_early
from autoaccel.options import DEFAULT_OBJECTIVES, SAMPLERS
from autoaccel.vocab import MODE_NAMES as MODES
from autoaccel.vocab import OBJECTIVES


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_choices(items: list[str] | None) -> dict[str, tuple[object, ...]] | None:
    if not items:
        return None
    out: dict[str, tuple[object, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise AutoaccelError(f"--choices: expected PARAM=V1,V2 (e.g. batch_size.size=64,128), but got {item!r}")
        # YAML scalars: 64 is an int, true a bool, 0.5 a float, fp16 a string, as in the search-space files.
        out[name.strip()] = tuple(_scalar(v.strip(), item) for v in values.split(",") if v.strip())
    return out


def _scalar(text: str, item: str) -> object:
    """One --choices value read as a YAML scalar; anything else (tags, aliases, lists) is refused."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
        ok = False
    else:
        ok = isinstance(value, (str, int, float, bool))
    if not ok:
        raise AutoaccelError(f"--choices: each value must be a plain number, word or true/false, but got {text!r} in {item!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoaccel", description="Find the fastest way to train and serve your PyTorch model here.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks: the run's own errors', and each failed trial's")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_optimize(sub)
    _add_other_commands(sub)
    plugins = sub.add_parser("plugins", help="list installed strategies and whether they run on the target")
    plugins.add_argument("--target", default="auto")
    return parser


def _add_optimize(sub: Any) -> None:
    """``autoaccel optimize``: the search, with every option of a run."""
    opt = sub.add_parser("optimize", help="search acceleration techniques for the task in MODEL.py")
    opt.add_argument("model", help="Python file defining `task` (a Task or a function returning one)")
    opt.add_argument("--trials", type=int, default=None,
                     help="trials to run in this invocation (default: as many as --budget allows)")
    opt.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                     help="minutes for the whole run, the final re-measurement included (default 5 when neither "
                          "--trials nor --timeout is given)")
    opt.add_argument("--timeout", type=float, default=None, help="stop starting trials after SECONDS")
    opt.add_argument("--trial-timeout", type=float, default=3600.0, help="a trial running longer is stopped and failed (default 3600)")
    opt.add_argument("--seed", type=int, default=0,
                     help="seeds the search's proposals (default 0); trainings keep your task's seed (Task.seed), so "
                          "each candidate and your recipe start alike")
    opt.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    opt.add_argument("--mode", choices=tuple(MODES), default="both")
    opt.add_argument("--objectives", type=_csv, default=None,
                     help=f"comma-separated, from {','.join(OBJECTIVES)} (default {','.join(DEFAULT_OBJECTIVES)}; accuracy,latency in inference mode)")
    opt.add_argument("--max-quality-drop", "--max-accuracy-drop", dest="max_accuracy_drop", default="0.01", metavar="DROP",
                     help="quality drop allowed vs your recipe: absolute in the metric's units (default 0.01) or "
                          "relative to your recipe's value (2%%)")
    opt.add_argument("--target", default="auto", help="auto, cpu, cuda, cuda:N, mps or xla (default auto)")
    opt.add_argument("--strategies", type=_csv, default=None, help="comma-separated strategy names to search (default: all that apply)")
    opt.add_argument("--exclude", type=_csv, default=None, help="comma-separated strategy names to leave out of the search")
    opt.add_argument("--choices", action="append", default=None, metavar="PARAM=V1,V2",
                     help="narrow one parameter to these values (repeatable), e.g. batch_size.size=64,128,256")
    opt.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/study.db)")
    opt.add_argument("--study", default=None, help="study name (default TASK-TARGET-MODE)")
    opt.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                     help="how often this worker tells the study it is alive; a trial of a worker silent for 3x this "
                          "is failed and retried by another worker (default 10)")
    opt.add_argument("--cache-dir", default=None, metavar="PATH",
                     help="trained checkpoints (default OUT/checkpoints); a folder shared by every host lets workers "
                          "reuse each other's training")
    opt.add_argument("--out", default=None, help="output folder (default autoaccel-out/TASK)")
    opt.add_argument("--remeasure-rounds", type=int, default=7,
                     help="rounds of interleaved re-measurement of the finalists against the baseline (0: off; default 7)")
    opt.add_argument("--no-ablation", action="store_true", help="skip the ablation of the recommendation at the end")
    opt.add_argument("--fidelity", default="auto", metavar="SHARE",
                     help="share of your schedule each search trial trains, compressed (e.g. 1/16): auto (default) plans "
                          "it from the budget and one probed training; 1 trains every trial whole")
    opt.add_argument("--confirm", action="store_true",
                     help="at the end, train the train and combined answers and your recipe whole (as autoaccel confirm "
                          "does) when the rest of the budget affords it")
    opt.add_argument("--baseline-metric", type=float, default=None, metavar="VALUE",
                     help="your recipe's metric on the validation set after its whole training, as you measured it "
                          "(e.g. 0.953): the confirmation then does not train your recipe whole again (with Task.weights set, "
                          "it evaluates them instead)")
    opt.add_argument("--val-fraction", default="1", metavar="SHARE",
                     help="share of the validation set quality is measured on, the same seeded rows for every trial "
                          "(e.g. 1/10 for a huge set; default 1: all of it)")
    opt.add_argument("--no-isolation", action="store_true", help="run trials in this process (faster start, no crash protection)")
    opt.add_argument("--quiet", action="store_true", help="no progress lines, only the final table")
    opt.add_argument("--json", action="store_true", help="print the final result as JSON on stdout (progress stays on stderr)")


def _add_other_commands(sub: Any) -> None:
    """``autoaccel report``, ``apply`` and ``confirm``: what comes after a run."""
    rep = sub.add_parser("report", help="rebuild report.html, pareto.json and the table from a study in storage")
    rep.add_argument("--out", default=None, help="folder of an optimize run (its study.db), and where the report goes")
    rep.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/study.db)")
    rep.add_argument("--study", default=None, help="study name (needed when the storage holds several)")
    rep.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    app = sub.add_parser("apply", help="apply a recipe.yaml to the task in MODEL.py and export the model")
    app.add_argument("recipe", help="recipe.yaml written by autoaccel optimize")
    app.add_argument("model", help="Python file defining `task`")
    app.add_argument("--export", choices=("onnx", "torchscript", "state_dict"), default="onnx")
    app.add_argument("--out", required=True, help="path of the exported file")
    app.add_argument("--target", default="cpu", help="device to apply on (default cpu)")
    app.add_argument("--cache", default=None, help="checkpoint folder of the optimize run (OUT/checkpoints) to reuse its training")
    app.add_argument("--goal", choices=("train", "serve", "combined"), default=None,
                     help="which answer of the recipe to apply (default: combined where there is one, else the one there is)")
    con = sub.add_parser("confirm", help="train the answers of a run and your recipe at full length (the serve answer "
                                         "is evaluated on it), "
                                         "and update the answers' evidence")
    con.add_argument("out", help="folder of an optimize run (its study.db)")
    con.add_argument("--model", default=None, help="the run's MODEL.py (default: the file the run was started with)")
    con.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/study.db)")
    con.add_argument("--study", default=None, help="study name (needed when the storage holds several)")
    con.add_argument("--baseline-metric", type=float, default=None, metavar="VALUE",
                     help="your recipe's metric on the validation set after its whole training, as you measured it "
                          "(e.g. 0.953): the confirmation then does not train your recipe whole again (with Task.weights set, "
                          "it evaluates them instead)")
    con.add_argument("--quiet", action="store_true", help="no progress lines")


def _optimize(args: argparse.Namespace) -> int:
    from autoaccel.api import optimize
    from autoaccel.outputs import make_console, print_summary

    options = {
        "trials": args.trials, "budget": args.budget, "timeout": args.timeout, "trial_timeout": args.trial_timeout, "seed": args.seed,
        "sampler": args.sampler, "mode": args.mode, "objectives": args.objectives,
        "max_accuracy_drop": args.max_accuracy_drop, "target": args.target, "strategies": args.strategies,
        "exclude": args.exclude,
        "storage": args.storage, "study": args.study, "heartbeat": args.heartbeat, "cache_dir": args.cache_dir,
        "out": args.out, "isolate": not args.no_isolation,
        "remeasure_rounds": args.remeasure_rounds, "ablation": not args.no_ablation,
        "quiet": args.quiet, "choices": parse_choices(args.choices), "fidelity": args.fidelity, "val_fraction": args.val_fraction,
        "confirm": args.confirm, "baseline_metric": args.baseline_metric, "debug": args.debug,
    }
    # --json keeps stdout for the JSON document alone; progress goes to stderr as always.
    result = optimize(args.model, **options)
    if args.json:
        print(json.dumps(result.summary.to_json(), default=str))
        return 0
    console = make_console()
    if result.finished_by is not None:
        # Another worker writes the answer; this one's trials are in the study (`autoaccel report` rebuilds it).
        console.print(escape(f"worker {result.finished_by} writes the answer of study '{result.study.study_name}'; "
                             f"`autoaccel report --storage URL --study {result.study.study_name}` rebuilds it from any host"))
        return 0
    print_summary(console, result.summary, result.baseline.params)
    console.print(escape(f"wrote {result.out_dir / 'report.html'}, pareto.json and recipe.yaml"))
    return 0


def _report(args: argparse.Namespace) -> int:
    import optuna

    from autoaccel.finish import summarize_study
    from autoaccel.options import mask_url
    from autoaccel.outputs import Generation, make_console, print_summary, publish
    from autoaccel.search import open_storage
    from autoaccel.search.team import is_companion

    if args.storage is None and args.out is None:
        raise AutoaccelError("report: give --out (the folder of an optimize run) or --storage URL")
    out = Path(args.out) if args.out else Path("autoaccel-out") / "report"
    if args.storage is None and not (out / "study.db").exists():
        raise AutoaccelError(f"--out: {out / 'study.db'} does not exist; point --out at an optimize run's folder, or pass --storage")
    url = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    storage = open_storage(url)
    # Each study's companion (its workers' claims, workers.py) is not a study of its own to report.
    names = [n for n in optuna.get_all_study_names(storage=storage) if not is_companion(n)]
    name = args.study or (names[0] if len(names) == 1 else None)
    if name is None or name not in names:
        raise AutoaccelError(f"--study: {'choose one of' if names else 'no study in this storage;'} {', '.join(names)}"
                             + (f" (got {args.study!r})" if args.study else ""))
    study = optuna.load_study(study_name=name, storage=storage)
    objectives = tuple(study.user_attrs.get("objectives") or ())
    try:
        summary = summarize_study(study, objectives, float(study.user_attrs.get("max_accuracy_drop", 0.01)))
    except ValueError:
        raise AutoaccelError(f"--study: '{name}' has no completed baseline trial yet; nothing to report") from None
    meta = {"task": study.user_attrs.get("task"), "study": name, "mode": study.user_attrs.get("mode"),
            "target": study.user_attrs.get("target"), "storage": mask_url(url), "export": study.user_attrs.get("export"),
            "fidelity": study.user_attrs.get("fidelity")}
    generation = Generation(out)
    try:
        generation.adopt_model()  # the model of the run that exported it; the rest is rebuilt from the study
        path = publish(generation, summary, study, meta)
    except BaseException:
        generation.discard()
        raise
    if args.json:
        print(json.dumps(summary.to_json(), default=str))
        return 0
    console = make_console()
    print_summary(console, summary, summary.baseline.params)
    console.print(escape(f"wrote {path}"))
    return 0


def _confirm(args: argparse.Namespace) -> int:
    from autoaccel.confirm import confirm
    from autoaccel.outputs import make_console, print_summary
    from autoaccel.plugin._registry import plugin_manager

    if args.baseline_metric is not None and not math.isfinite(args.baseline_metric):
        raise AutoaccelError(f"--baseline-metric: must be a finite number, but got {args.baseline_metric!r}")
    summary = confirm(args.out, plugin_manager(), args.model, args.storage, args.study, args.quiet,
                      baseline_metric=args.baseline_metric)
    console = make_console()
    print_summary(console, summary, summary.baseline.params)
    console.print(escape(f"wrote {Path(args.out) / 'report.html'}, pareto.json and recipe.yaml"))
    return 0


def _apply(args: argparse.Namespace) -> int:
    from autoaccel.outputs import apply, export
    from autoaccel.task import load_task, move
    from autoaccel.trial import latency_input

    task = load_task(args.model)
    target = args.target
    applied = apply(task, args.recipe, device=target, cache_dir=args.cache, goal=args.goal)
    result = export(applied, args.export, args.out, move(latency_input(task.val_data, task.example_input), target))
    print(yaml.safe_dump({"training": applied.config, "weights": applied.training, "export": result}, sort_keys=False), end="")
    return 0


def _plugins(args: argparse.Namespace) -> int:
    from autoaccel.plugin._registry import collect_strategies, plugin_manager
    from autoaccel.plugin._strategy import ordered
    from autoaccel.task import hypothetical_target

    pm = plugin_manager()
    try:
        target = pm.hook.autoaccel_detect_target(spec=args.target)
    except AutoaccelError as exc:
        # Listing what would run on a target this machine lacks is a fair question; answer it, saying so.
        target = hypothetical_target(args.target)
        if target is None:
            raise
        print(f"autoaccel: note: {exc}; listing what would run on {target.name}", file=sys.stderr)
    registry = collect_strategies(pm)
    table = Table(title=f"strategies on {target.name} [{target.device}]")
    for col in ("strategy", "phase", "distribution", "supported", "notes"):
        table.add_column(col)
    # In the order they act (phase, then their declared relations).
    for s in ordered(list(registry.strategies.values())):
        cap = s.check(target)
        table.add_row(s.name, s.phase.name.lower(), registry.origins[s.name], "yes" if cap.supported else "no", cap.reason or s.description)
    Console(highlight=False, width=160).print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("optimize", "confirm") and not getattr(args, "no_isolation", False):
        start_early()  # the trial workers' fork server imports torch while this process does
    previous = _terminate_like_ctrl_c()
    try:
        commands = {"optimize": _optimize, "report": _report, "apply": _apply, "confirm": _confirm, "plugins": _plugins}
        with warnings.catch_warnings():
            warnings.showwarning = _show_task_warning
            return commands[args.command](args)
    except AutoaccelError as exc:
        if args.debug:
            raise
        print(f"autoaccel: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"autoaccel: {interrupt_reason(exc)}; completed trials are kept in the study, re-run the same command to resume",
              file=sys.stderr)
        return exit_status(exc)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _show_task_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                       file: Any = None, line: str | None = None) -> None:
    """A warning about the user's Task as one line, as errors are; any other warning as Python shows it."""
    if issubclass(category, TaskWarning):
        print(f"autoaccel: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _terminate_like_ctrl_c() -> dict[int, Any]:
    """SIGTERM and SIGHUP stop a run the way Ctrl-C does (trial marked failed, worker killed, exit 143 / 129);
    returns the handlers they replaced."""
    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (main() called from a thread): leave the default
            pass
    return previous


if __name__ == "__main__":
    sys.exit(main())
