"""One study, one worker against two: the same `autoaccel optimize` command (a fixed --trials budget, which
workers of one run share) run by one process, then by two processes started together on a fresh database.
Prints each side's wall time, trials measured per hour, and whether the two answers agree.

Uses a private PostgreSQL server (tests/postgres_server.py: Debian's binaries) when it can start one, else a
journal file (Optuna's JournalStorage), and says which.

    python bench/workers.py [--model examples/digits.py] [--trials 16] [--strategies batch_size,precision,scheduler]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


@contextlib.contextmanager
def storages(tmp: Path) -> Iterator[tuple[str, Iterator[str]]]:
    """(what it is, fresh storage URLs)."""
    from postgres_server import Unavailable, postgres_server

    try:
        with postgres_server() as url:
            import psycopg

            server = url.rsplit("/", 1)[0]

            def fresh() -> Iterator[str]:
                for i in range(100):
                    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
                        conn.execute(f"CREATE DATABASE bench{i}")
                    yield f"{server}/bench{i}"

            yield "PostgreSQL 15 (private server on this machine)", fresh()
            return
    except Unavailable as why:
        print(f"no PostgreSQL server ({why}); using a journal file")
    yield "a journal file", (f"journal://{tmp / f'study{i}.log'}" for i in range(100))


def run(model: str, url: str, workers: int, trials: int, strategies: str, tmp: Path) -> tuple[float, list[str]]:
    """Wall seconds until every worker exited; each worker's output folder."""
    outs = [str(tmp / f"w{workers}-{i}") for i in range(workers)]
    cmd = [sys.executable, "-m", "autoaccel.cli", "optimize", model, "--trials", str(trials), "--target", "cpu",
           "--strategies", strategies, "--storage", url, "--study", "bench", "--cache-dir", str(tmp / f"cache{workers}")]
    started = time.perf_counter()
    procs = [subprocess.Popen([*cmd, "--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for out in outs]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a worker failed:\n{err[-2000:]}")
    return time.perf_counter() - started, outs


def answers(outs: list[str]) -> dict[str, object]:
    written = [Path(o) / "pareto.json" for o in outs if (Path(o) / "pareto.json").exists()]
    assert len(written) == 1, f"{len(written)} answers written"
    data = json.loads(written[0].read_text())
    return {a["goal"]: a.get("params") for a in data.get("answers") or []}


def measured(url: str) -> int:
    study = optuna.load_study(study_name="bench", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(url[len("journal://"):])) if url.startswith("journal://") else url)
    return sum(t.state == TrialState.COMPLETE and t.user_attrs.get("duplicate_of") is None for t in study.get_trials())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "examples" / "digits.py"))
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--strategies", default="batch_size,precision,scheduler")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, storages(Path(tmp_name)) as (kind, urls):
        tmp = Path(tmp_name)
        print(f"storage: {kind}; --trials {args.trials} --strategies {args.strategies}")
        results = {}
        for workers in (1, 2):
            url = next(urls)
            seconds, outs = run(args.model, url, workers, args.trials, args.strategies, tmp)
            n = measured(url)
            results[workers] = (seconds, n, answers(outs))
            print(f"{workers} worker(s): {seconds:.1f} s, {n} configurations measured, {3600 * n / seconds:.0f} per hour, "
                  f"answers {results[workers][2]}")
        (s1, n1, a1), (s2, n2, a2) = results[1], results[2]
        print(f"ratio 2 workers / 1: wall time {s2 / s1:.2f}x, measured per hour {(n2 / s2) / (n1 / s1):.2f}x; "
              f"answers {'agree' if a1 == a2 else 'differ'}")


if __name__ == "__main__":
    main()
