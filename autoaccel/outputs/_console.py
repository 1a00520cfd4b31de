"""What the terminal shows: one line per finished trial while the search runs, a table at the end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table

from autoaccel.finish import Summary
from autoaccel.finish import words as evidence_words
from autoaccel.task import Shown

UNITS = {"accuracy": "", "train_time": "s", "train_throughput": "/s", "latency": "ms", "throughput": "/s", "memory": "MB"}


def fmt_metric(name: str, value: float, shown: Shown | None = None) -> str:
    """A metric's value with its unit; the quality slot ("accuracy") as the task's metric shows it."""
    if name == "accuracy":
        return (shown or Shown()).fmt(value)
    if name in ("throughput", "train_throughput"):
        return f"{value:,.0f}{UNITS[name]}"
    return f"{value:.3g}{UNITS[name]}"


def fmt_params(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """Only what differs from the user's recipe; the baseline reads as 'your recipe'."""
    changed = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items() if defaults.get(k) != v]
    return " ".join(changed) if changed else "your recipe"


def make_console(stderr: bool = False, quiet: bool = False) -> Console:
    """A console that does not squeeze tables to 80 columns when output goes to a file or a CI log."""
    console = Console(stderr=stderr, highlight=False, quiet=quiet)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, quiet=quiet, width=160)
    return console


def fmt_speedup(entry: Mapping[str, Any] | None) -> str:
    """'1.84x [1.71, 1.98]' where an interval exists; '~' marks a ratio within noise."""
    if not entry:
        return "1.00x"
    ci = entry.get("ci95")
    if not ci:
        return f"{entry['value']:.2f}x"
    mark = "" if entry.get("label") in ("faster", "slower") else " ~"
    return f"{entry['value']:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}]{mark}"


class Progress:
    """Progress on stderr: a bar over trials (elapsed, remaining, best so far) above one line per finished trial.

    The bar is drawn only on a terminal; in a log or CI the per-trial lines carry the same information.
    """

    def __init__(self, quiet: bool) -> None:
        self.console = make_console(stderr=True, quiet=quiet)
        self.bar: RichProgress | None = None
        self.task_id: TaskID | None = None
        # Proposals that repeated a measured configuration since the last line: said on one line, not one each.
        self.reuses: list[tuple[int, int]] = []

    def start(self, total: int | None) -> None:
        if self.console.quiet or not self.console.is_terminal:
            return
        self.bar = RichProgress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("remaining"), TimeRemainingColumn(), TextColumn("{task.description}"),
                                console=self.console, transient=True)
        self.task_id = self.bar.add_task("", total=total)
        self.bar.start()

    def stop(self) -> None:
        self._said_reuses()
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def info(self, text: str) -> None:
        self._said_reuses()
        self.console.print(text)

    def reused(self, number: int, twin: int) -> None:
        """Trial ``number`` repeated trial ``twin``'s configuration and took its measurement: folded with the
        next ones into one line (a search that keeps proposing what it measured would fill the screen)."""
        self.reuses.append((number, twin))

    def _said_reuses(self) -> None:
        if not self.reuses:
            return
        pairs = ", ".join(f"#{number} as #{twin}" for number, twin in self.reuses)
        what = "a configuration measured before" if len(self.reuses) == 1 else f"{len(self.reuses)} configurations measured before"
        self.reuses = []
        self.console.print(f"    [dim]reused {what}, not run again: {pairs}[/]")

    def trial(self, n: int, total: int | None, number: int, params: str, outcome: str, best: str,
              counted: bool = True) -> None:
        """One finished trial; ``total`` is None when a budget, not a trial count, bounds the run."""
        self._said_reuses()
        count = f"{n}/{total}" if total is not None else str(n)
        self.console.print(f"[bold]trial {count}[/] (#{number}) {escape(params)}\n    -> {outcome}{best}")
        if self.bar is not None and self.task_id is not None:
            self.bar.update(self.task_id, advance=1 if counted else 0, description=best.strip(" |"))


def result_table(summary: Summary, defaults: Mapping[str, Any]) -> Table:
    shown = summary.metric
    table = Table(title=f"Pareto front (feasible: {shown.drop_word} <= {summary.max_accuracy_drop:g})")
    table.add_column("trial", justify="right")
    for name in summary.objectives:
        table.add_column(shown.name if name == "accuracy" else name, justify="right")
        if name != "accuracy":
            table.add_column(f"{name} speedup", justify="right")
    table.add_column("")
    table.add_column("configuration (changes from your recipe)")
    answered = [p for a in summary.answers if a.given and (p := summary.point(a.trial)) is not None]
    rows = list({p.trial: p for p in [summary.baseline, *summary.pareto, *answered]}.values())
    for p in rows:
        cells = [str(p.trial)]
        for name in summary.objectives:
            cells.append(fmt_metric(name, p.metrics[name], shown))
            if name != "accuracy":
                cells.append(fmt_speedup(p.speedup.get(name)))
        goals = [a.goal for a in summary.answers if a.given and a.trial == p.trial]
        mark = "baseline" if p is summary.baseline else (f"{'+'.join(goals)} answer" if goals else p.verdict)
        table.add_row(*cells, mark, fmt_params(p.params, defaults))
    return table


def print_summary(console: Console, summary: Summary, defaults: Mapping[str, Any]) -> None:
    console.print(result_table(summary, defaults))
    if summary.remeasured:
        console.print("Speedups: paired ratios from the interleaved re-measurement, 95% intervals; '~' = within noise.")
    console.print("[bold]Answers[/] (each judged on its own goal's metrics; every requested metric reported):")
    for a in summary.answers:
        head = f"trial {a.trial}: {fmt_params(a.params, {})}" if a.given else "keep your recipe"
        console.print(f"  [bold]{a.goal}[/] -> {escape(head)}")
        console.print(f"      {escape(a.verdict)}")
        if a.given and (said := evidence_words(a.evidence, a.goal, summary.metric)):
            console.print(f"      evidence: {escape(said)}")
        for note in a.notes:
            console.print(f"      {escape(note)}")
        if a.members:
            paid = ", ".join(f"trial {m['trial']} ({m['train_time']:.3g}s)" for m in a.members)
            console.print(f"      its train_time includes the training of the other models it serves: {escape(paid)}")
    # Trials the search stopped early because they could not be an answer are not failures of a technique.
    stopped, failed = summary.stopped, summary.failed
    if failed:
        console.print(f"{len(failed)} trial(s) failed:")
        for f in failed:
            console.print(f"  trial {f.trial} ({escape(f.kind)}): {escape(f.reason)}")
    if stopped:
        # Many, and each said why as it stopped: their numbers here, their reasons in the report.
        console.print(f"{len(stopped)} trial(s) stopped early, on course to train slower than an answer could (reasons in "
                      f"the report): {', '.join(str(f.trial) for f in stopped)}")
