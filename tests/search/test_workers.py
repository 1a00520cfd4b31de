"""Several workers on one study, on a real PostgreSQL server: three `autoaccel optimize` processes share one
study, one is killed -9 mid-trial. No completed trial is lost, no configuration is measured twice, the killed
worker's trial is failed by heartbeat and retried, exactly one worker writes the answer, `autoaccel report`
rebuilds the same answer, the password never reaches an output, and no process of the study is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from postgres_server import PASSWORD

from tiny_digits import slow_training_source, write_model

STUDY = "shared"
# Training sleeps 40 ms a step (45 steps): every trial spends about 2 s training, so a kill lands mid-trial
# and three workers overlap on two cores (they mostly wait).
SLOW_TRAINING = slow_training_source(0.04)


def command(model: Path, out: Path, url: str, cache: Path, trials: int) -> list[str]:
    return [sys.executable, "-m", "autoaccel.cli", "optimize", str(model), "--trials", str(trials), "--out", str(out),
            "--target", "cpu", "--strategies", "precision,scheduler", "--remeasure-rounds", "0", "--no-ablation",
            "--storage", url, "--study", STUDY, "--heartbeat", "1", "--cache-dir", str(cache)]


def trials_of(url: str) -> list[FrozenTrial]:
    try:
        return optuna.load_study(study_name=STUDY, storage=url).get_trials()
    except KeyError:
        return []


def in_session(sessions: set[int]) -> list[int]:
    """Processes (any depth) of the given sessions: each worker was started as a session leader."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) in sessions:  # state, ppid, pgrp, session
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_three_workers_one_killed_share_one_study_and_write_one_answer(tmp_path: Path, postgres_url: str) -> None:
    model = write_model(tmp_path, SLOW_TRAINING)
    cache = tmp_path / "shared-cache"
    outs = [tmp_path / f"out{i}" for i in range(3)]
    logs = [(tmp_path / f"worker{i}.log").open("wb") for i in range(3)]
    procs = [subprocess.Popen(command(model, outs[i], postgres_url, cache, trials=14), stdout=logs[i],
                              stderr=subprocess.STDOUT, start_new_session=True) for i in range(3)]
    sessions = {p.pid for p in procs}
    victim = procs[2]
    try:
        deadline = time.monotonic() + 240
        while True:
            assert time.monotonic() < deadline, "worker 3 never ran a trial after two had completed"
            assert victim.poll() is None, (tmp_path / "worker2.log").read_text()
            trials = trials_of(postgres_url)
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            mine = [t for t in trials if t.state == TrialState.RUNNING and (t.user_attrs.get("worker") or {}).get("pid") == victim.pid
                    and "plan" in t.user_attrs]  # measuring, not just asked
            if done >= 2 and mine:
                killed_trial = mine[0].number
                break
            time.sleep(0.1)
        os.killpg(victim.pid, signal.SIGKILL)  # the worker and its trial process, as when a host dies
        victim.wait()
        codes = [p.wait(timeout=400) for p in procs[:2]]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()
    texts = [(tmp_path / f"worker{i}.log").read_text() for i in range(3)]
    assert codes == [0, 0], texts

    trials = trials_of(postgres_url)
    records = {t.number: t for t in trials}
    killed = records[killed_trial]
    assert killed.state == TrialState.FAIL and "no heartbeat" in killed.user_attrs["reason"], killed.user_attrs
    # Queued once more; measured to the end by the retry, or by a worker that proposed it meanwhile (then the
    # retry found it being measured, or measured, and did not repeat it).
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed_trial]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.FAIL), [t.user_attrs for t in retries]
    again = [t for t in trials if t.number > killed_trial and t.state == TrialState.COMPLETE
             and t.user_attrs.get("fingerprint") == killed.user_attrs["fingerprint"]]
    assert again, "the killed worker's configuration was never measured"
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    measured = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("duplicate_of") is None]
    fingerprints = [t.user_attrs["fingerprint"] for t in measured]
    assert len(fingerprints) == len(set(fingerprints)), "a configuration was measured twice"
    assert [t.number for t in trials if t.user_attrs.get("role") == "baseline"] == [0]
    workers = {(t.user_attrs.get("worker") or {}).get("pid") for t in measured}
    assert len(workers & {p.pid for p in procs}) >= 2, "the survivors did not share the work"
    counted = [t for t in trials if t.user_attrs.get("duplicate_of") is None and not t.user_attrs.get("not_run")
               and t.user_attrs.get("role") != "combined"]
    assert len(counted) <= 14 + 1, "the run's --trials budget is shared, not each worker's"  # +1: the retry

    # Exactly one answer: the other survivor says who writes it.
    written = [o for o in outs if (o / "pareto.json").exists()]
    assert len(written) == 1, texts
    writer = outs.index(written[0])
    assert "writes the answer" in texts[1 - writer] or "re-measuring the finalists" in texts[1 - writer], texts[1 - writer]
    answer = json.loads((written[0] / "pareto.json").read_text())

    rebuilt = tmp_path / "rebuilt"
    report = subprocess.run([sys.executable, "-m", "autoaccel.cli", "report", "--storage", postgres_url, "--study", STUDY,
                             "--out", str(rebuilt)], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    rebuilt_answer = json.loads((rebuilt / "pareto.json").read_text())
    for key in ("answers", "baseline", "pareto", "recommended", "verdict", "trials", "failures", "storage"):
        assert rebuilt_answer[key] == answer[key], key

    for text in [*texts, report.stdout, report.stderr, *(p.read_text(errors="replace") for o in (written[0], rebuilt)
                                                       for p in o.rglob("*") if p.is_file() and p.suffix in (".json", ".html", ".yaml"))]:
        assert PASSWORD not in text
    assert in_session(sessions) == [], "a process of the study outlived it"
    print(f"\nworkers: trials {len(trials)}, completed {sum(t.state == TrialState.COMPLETE for t in trials)}, "
          f"failed {sum(t.state == TrialState.FAIL for t in trials)} (busy {sum(t.user_attrs.get('failure_kind') == 'busy' for t in trials)}), "
          f"retried {len(retries)}, measured twice 0, reused {sum(t.user_attrs.get('duplicate_of') is not None for t in trials)}")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the search beats from its own thread (workers.py)
def test_a_worker_paused_past_its_grace_period_drops_its_result_and_goes_on(tmp_path: Path) -> None:
    """A worker stopped (SIGSTOP, a frozen VM) longer than the grace period finds its trial failed and queued
    again by another worker when it resumes: it drops its result instead of dying on a finished trial."""
    from autoaccel.options import Options
    from autoaccel.plugin._registry import plugin_manager
    from autoaccel.search._search import Search
    from autoaccel.search._study import open_storage, open_study
    from autoaccel.search.team._claims import RetryStale
    from autoaccel.trial._run import TrialResult
    from tiny_digits import make_task

    search = Search(make_task(), None, Options(trials=2, target="cpu", strategies=("precision",), out=str(tmp_path)),
                    plugin_manager())
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_s=1)
    study = open_study(storage, "paused", search.objectives, optuna.samplers.RandomSampler())
    search.attach(study)
    trial = study.ask()
    search.team.heartbeat.hold(trial._trial_id)
    search.team.heartbeat.drop(trial._trial_id)  # the worker stops beating: paused
    time.sleep(4.5)  # past the 3 s grace period (SQLite keeps whole seconds)
    RetryStale(search.setup.defaults).fail_stale(study)  # what another worker does before its next trial
    assert study.get_trials()[0].state == TrialState.FAIL
    result = TrialResult({"accuracy": 0.9, "train_time": 1.0, "latency": 0.001}, {})
    assert search.executor.outcomes.complete(study, trial, result, time.monotonic()) is False
    assert study.get_trials()[0].state == TrialState.FAIL and "no heartbeat" in study.get_trials()[0].user_attrs["reason"]
    search.team.heartbeat.close()
