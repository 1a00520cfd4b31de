"""The command line: ``autoaccel optimize model.py`` and ``autoaccel plugins``.

Exit codes: 0 done; 2 bad input (one line on stderr naming the file, field or flag); 130 interrupted (Ctrl-C;
completed trials are kept, re-run to resume); 1 an internal error (a bug: please report it with --debug).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml
from rich.console import Console
from rich.table import Table

from autoaccel.errors import AutoaccelError
from autoaccel.options import DEFAULT_OBJECTIVES, SAMPLERS
from autoaccel.strategy import MODES
from autoaccel.trial import OBJECTIVES


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _choices(items: list[str] | None) -> dict[str, tuple[object, ...]] | None:
    if not items:
        return None
    out: dict[str, tuple[object, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise AutoaccelError(f"--choices: expected PARAM=V1,V2 (e.g. batch_size.size=64,128), but got {item!r}")
        # YAML scalars: 64 is an int, true a bool, 0.5 a float, fp16 a string, as in the search-space files.
        out[name.strip()] = tuple(yaml.safe_load(v.strip()) for v in values.split(",") if v.strip())
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoaccel", description="Find the fastest way to train and serve your PyTorch model here.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    opt = sub.add_parser("optimize", help="search acceleration techniques for the task in MODEL.py")
    opt.add_argument("model", help="Python file defining `task` (a Task or a function returning one)")
    opt.add_argument("--trials", type=int, default=20, help="trials to run in this invocation (default 20)")
    opt.add_argument("--timeout", type=float, default=None, help="stop starting trials after SECONDS")
    opt.add_argument("--trial-timeout", type=float, default=3600.0, help="a trial running longer is stopped and failed (default 3600)")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    opt.add_argument("--mode", choices=tuple(MODES), default="both")
    opt.add_argument("--objectives", type=_csv, default=None,
                     help=f"comma-separated, from {','.join(OBJECTIVES)} (default {','.join(DEFAULT_OBJECTIVES)}; accuracy,latency in inference mode)")
    opt.add_argument("--max-accuracy-drop", type=float, default=0.01, help="absolute accuracy drop allowed vs your recipe (default 0.01)")
    opt.add_argument("--target", default="auto", help="auto, cpu, cuda, cuda:N, mps or xla (default auto)")
    opt.add_argument("--strategies", type=_csv, default=None, help="comma-separated strategy names to search (default: all that apply)")
    opt.add_argument("--choices", action="append", default=None, metavar="PARAM=V1,V2",
                     help="narrow one parameter to these values (repeatable), e.g. batch_size.size=64,128,256")
    opt.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/study.db)")
    opt.add_argument("--study", default=None, help="study name (default TASK-TARGET-MODE)")
    opt.add_argument("--out", default=None, help="output folder (default autoaccel-out/TASK)")
    opt.add_argument("--remeasure-rounds", type=int, default=7,
                     help="rounds of interleaved re-measurement of the finalists against the baseline (0: off; default 7)")
    opt.add_argument("--no-isolation", action="store_true", help="run trials in this process (faster start, no crash protection)")
    opt.add_argument("--quiet", action="store_true", help="no progress lines, only the final table")
    plugins = sub.add_parser("plugins", help="list installed strategies and whether they run on the target")
    plugins.add_argument("--target", default="auto")
    return parser


def _optimize(args: argparse.Namespace) -> int:
    from autoaccel.api import optimize
    from autoaccel.console import make_console, print_summary

    options = {
        "trials": args.trials, "timeout": args.timeout, "trial_timeout": args.trial_timeout, "seed": args.seed,
        "sampler": args.sampler, "mode": args.mode, "objectives": args.objectives,
        "max_accuracy_drop": args.max_accuracy_drop, "target": args.target, "strategies": args.strategies,
        "storage": args.storage, "study": args.study, "out": args.out, "isolate": not args.no_isolation,
        "remeasure_rounds": args.remeasure_rounds,
        "quiet": args.quiet, "choices": _choices(args.choices),
    }
    result = optimize(args.model, **options)
    console = make_console()
    print_summary(console, result.summary, result.baseline.params)
    console.print(f"wrote {result.out_dir / 'pareto.json'} and {result.out_dir / 'recipe.yaml'}")
    return 0


def _plugins(args: argparse.Namespace) -> int:
    from autoaccel.registry import collect_strategies, plugin_manager

    pm = plugin_manager()
    target = pm.hook.autoaccel_detect_target(spec=args.target)
    registry = collect_strategies(pm)
    table = Table(title=f"strategies on {target.name} [{target.device}]")
    for col in ("strategy", "phase", "distribution", "supported", "notes"):
        table.add_column(col)
    for name in sorted(registry.strategies, key=lambda n: (int(registry.strategies[n].phase), n)):
        s = registry.strategies[name]
        cap = s.check(target)
        table.add_row(name, s.phase.name.lower(), registry.origins[name], "yes" if cap.supported else "no", cap.reason or s.description)
    Console(highlight=False, width=160).print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _optimize(args) if args.command == "optimize" else _plugins(args)
    except AutoaccelError as exc:
        if args.debug:
            raise
        print(f"autoaccel: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("autoaccel: interrupted; completed trials are kept in the study, re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
