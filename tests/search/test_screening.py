"""Screening, stacking and the stages of a search, replayed against a small recorded table (no training here):
digits, batch size x precision x quantization, measured on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from autoaccel.errors import TrialFailure
from autoaccel.plugin._contexts import Guards
from autoaccel.plugin._registry import default_registry
from autoaccel.plugin._space import Categorical
from autoaccel.plugin._strategy import split_params
from autoaccel.search._screening import FATAL, MAX_PROBES, Screening
from autoaccel.search._stages import Stages
from autoaccel.trial import _record as record
from autoaccel.trial._record import TrialRecord

TABLE = Path(__file__).resolve().parent.parent / "fixtures" / "tables" / "digits_mini.json"


@pytest.fixture(scope="module")
def ours(replay):  # type: ignore[no-untyped-def]
    """Our search replayed on the mini table until it reached both goals: its study's trials, in order."""
    from autoaccel.task._loading import load_task

    table = replay.Table(str(TABLE))
    run = replay.run_method("autoaccel", table, 0, load_task(table.model))
    assert run.done, run.reached
    return run


def _records(run: Any) -> list[TrialRecord]:
    return [record.read(t) for t in run.study.get_trials(deepcopy=False)]


def _techniques(r: TrialRecord) -> set[str]:
    return {k.partition(".")[0] for k in r.settings}


def _added(r: TrialRecord, records: list[TrialRecord]) -> set[str]:
    """The techniques a screen tried: all of its own alone, or what it added to the configuration it was over."""
    over = split_params(records[r.over].settings) if r.over is not None else {}
    return {name for name, local in split_params(r.settings).items() if over.get(name) != local}


def test_serving_techniques_are_screened_first_each_alone_then_training_ones_on_top(ours: Any) -> None:
    records = _records(ours)
    assert records[0].role == "baseline"
    screens = [r for r in records if r.role == "screen"]
    assert screens and all(len(_added(r, records)) == 1 for r in screens)
    order = [next(iter(_added(r, records))) for r in screens]
    # quantization serves the baseline's trained model (an evaluation each): screened before any training technique,
    # each alone against the user's recipe
    first_training = min(order.index(t) for t in ("batch_size", "precision") if t in order)
    assert set(order[:first_training]) == {"quantization"}
    assert all(r.over is None for r in screens[:first_training])
    assert {"batch_size", "precision"} <= set(order[first_training:])
    # a training screen after one that helped is added to the best training configuration so far (each training
    # screen is a training run: what helped is kept, and the later screens train faster)
    for r in screens[first_training:]:
        if r.over is not None:
            over = records[r.over]
            assert over.measured and over.feasible and over.metrics["train_time"] < records[0].metrics["train_time"]
            assert over.settings.items() <= r.settings.items()


def test_serving_screens_reuse_the_baselines_training_and_cost_an_evaluation(replay: Any, ours: Any) -> None:
    table = replay.Table(str(TABLE))
    for r in _records(ours):
        if r.role == "screen" and _techniques(r) == {"quantization"}:
            assert r.details["checkpoint"] == table.base["training_key"]


def test_each_verdict_says_what_the_technique_was_judged_against(ours: Any) -> None:
    records = _records(ours)
    verdicts = ours.search.policy.stages.verdicts(records, records[0])
    assert verdicts["batch_size"].status == "helps" and verdicts["batch_size"].speedup > 1
    assert verdicts["quantization"].status == "helps"
    # bf16 went on top of the batch that helped, and is judged against it, not against the user's recipe
    precision = verdicts["precision"]
    batch = records[verdicts["batch_size"].trial]
    assert precision.status == "helps" and f"on top of trial {batch.number}" in precision.reason
    assert records[precision.trial].over == batch.number


def test_a_left_out_serving_technique_is_stacked_on_the_best_configuration_so_far() -> None:
    strategies = _strategies("quantization", "runtime")
    stages = Stages(strategies, _space(strategies), "inference", {"serve": ["latency"]}, ("serve",))
    base = _base()
    runtime = TrialRecord(1, TrialState.COMPLETE, role="screen", config={"runtime.engine": "onnxruntime"},
                          fingerprint="ort", constraint=-0.01, metrics={"accuracy": 0.9, "latency": 0.5},
                          ci95={"latency": [0.49, 0.51]})
    quantized = TrialRecord(2, TrialState.COMPLETE, role="screen", config={"quantization.method": "dynamic_int8"},
                            fingerprint="q", constraint=-0.01, metrics={"accuracy": 0.9, "latency": 1.01},
                            ci95={"latency": [0.99, 1.03]})
    # every other probe handed out already: the serving factor is screened
    stages.screening.proposed.update(repr(sorted(p.items())) for probes in stages.screening.probes.values() for p in probes)
    records = [base, runtime, quantized]
    assert stages.verdicts(records, base)["quantization"].status == "no gain"
    stack = stages.next(records, base)
    assert stack.role == "stack" and stack.strategy.name == "quantization" and stack.over == 1
    assert stack.config["runtime.engine"] == "onnxruntime" and stack.config["quantization.method"] != "none"


def _strategies(*names: str) -> list[Any]:
    registry = default_registry()
    return [registry.get(n) for n in names]


def _space(strategies: list[Any]) -> dict[str, Any]:
    return {f"{s.name}.{k}": p for s in strategies for k, p in s.space().items()}


def test_the_baselines_profile_orders_the_training_techniques() -> None:
    strategies = _strategies("dataloader", "precision", "quantization")
    screening = Screening(strategies, _space(strategies), "both", {"train": ["train_time"], "serve": ["latency"]})
    waiting = {"data": 6.0, "forward": 1.0, "backward": 1.0, "optimizer": 0.5}
    computing = {"data": 0.2, "forward": 4.0, "backward": 5.0, "optimizer": 0.5}
    assert [s.name for s in screening.order(waiting)] == ["quantization", "dataloader", "precision"]
    assert [s.name for s in screening.order(computing)] == ["quantization", "precision", "dataloader"]


def test_among_techniques_that_relieve_as_much_one_with_a_one_off_cost_comes_last() -> None:
    # compile is declared before precision and memory_format, and relieves the same parts: a compilation (a minute
    # for a ResNet on a CPU) must not take a short budget before the cheap wins are known.
    strategies = _strategies("compile", "precision", "memory_format", "batch_size")
    assert [s.name for s in strategies if s.one_off_cost] == ["compile"]
    screening = Screening(strategies, _space(strategies), "train", {"train": ["train_time"]})
    computing = {"data": 0.2, "forward": 4.0, "backward": 5.0, "optimizer": 0.5}
    names = [s.name for s in screening.order(computing)]
    assert names[0] == "batch_size" and names[-1] == "compile"


def _base() -> TrialRecord:
    return TrialRecord(0, TrialState.COMPLETE, role="baseline", config={}, fingerprint="base", constraint=-0.01,
                       metrics={"accuracy": 0.9, "train_time": 10.0, "latency": 1.0},
                       ci95={"accuracy": [0.88, 0.92], "latency": [0.95, 1.05]})


def test_a_technique_that_fails_on_the_task_is_dropped_after_its_first_failure() -> None:
    strategies = _strategies("quantization", "runtime")
    screening = Screening(strategies, _space(strategies), "inference", {"serve": ["latency"]})
    base = _base()
    kind = next(iter(sorted(FATAL)))
    failed = TrialRecord(1, TrialState.FAIL, config={"quantization.method": "dynamic_int8"}, fingerprint="q1",
                         failure_kind=kind, reason="export failed: op not supported")
    verdicts = screening.verdicts([base, failed], base)
    assert verdicts["quantization"].status == "failed" and "op not supported" in verdicts["quantization"].reason
    nxt = screening.next_probe([base, failed], base, {})
    assert nxt is not None and nxt[0].name == "runtime"  # quantization's other setting is not tried


def test_a_technique_is_judged_after_at_most_max_probes_settings_without_gain() -> None:
    strategies = _strategies("quantization")
    space = {"quantization.method": Categorical(("none", "a", "b", "c", "d"), "none")}
    screening = Screening(strategies, space, "inference", {"serve": ["latency"]})
    base = _base()
    slow = [TrialRecord(i, TrialState.COMPLETE, config={"quantization.method": v}, fingerprint=v, constraint=-0.01,
                        metrics={"accuracy": 0.9, "latency": 1.02}, ci95={"latency": [0.97, 1.07]})
            for i, v in enumerate("abcd"[:MAX_PROBES], start=1)]
    verdict = screening.verdicts([base, *slow], base)["quantization"]
    assert verdict.status == "no gain" and not verdict.survives
    assert screening.next_probe([base, *slow], base, {}) is None


def _batch_screening() -> Screening:
    strategies = _strategies("batch_size")
    return Screening(strategies, _space(strategies), "train", {"train": ["train_time"]})


def _probe(number: int, size: int, seconds: float, accuracy: float = 0.9) -> TrialRecord:
    return TrialRecord(number, TrialState.COMPLETE, config={"batch_size.size": size, "batch_size.lr_scaling": "sqrt"},
                       fingerprint=f"b{size}", constraint=0.9 - accuracy - 0.01,
                       metrics={"accuracy": accuracy, "train_time": seconds})


def test_a_run_of_wins_is_followed_until_the_next_probe_gains_nothing_more() -> None:
    screening, base = _batch_screening(), _base()
    first = _probe(1, 64, 5.0)
    assert screening.verdicts([base, first], base)["batch_size"].status == "pending"  # it keeps paying: go on
    nxt = screening.next_probe([base, first], base, {})
    assert nxt is not None and nxt[1] == {"batch_size.size": 128, "batch_size.lr_scaling": "sqrt"}
    second = _probe(2, 128, 5.5)  # slower than the first win: the run ends there
    verdict = screening.verdicts([base, first, second], base)["batch_size"]
    assert verdict.status == "helps" and verdict.trial == 1 and verdict.speedup == pytest.approx(2.0 / 1.1)


def test_faster_but_over_the_budget_alone_is_kept_to_combine() -> None:
    screening, base = _batch_screening(), _base()
    fast = _probe(1, 64, 4.0, accuracy=0.84)
    slower = _probe(2, 128, 4.5, accuracy=0.80)
    verdict = screening.verdicts([base, fast, slower], base)["batch_size"]
    assert verdict.survives and verdict.trial == 1 and "over the accuracy budget" in verdict.reason


def test_a_technique_with_nothing_left_to_try_is_judged_without_a_trial() -> None:
    # --choices can narrow a technique to the user's own setting: it has no probe, and screening must go on.
    strategies = _strategies("quantization", "runtime")
    space = {**_space(strategies), "quantization.method": Categorical(("none",), "none")}
    screening = Screening(strategies, space, "inference", {"serve": ["latency"]})
    base = _base()
    verdict = screening.verdicts([base], base)["quantization"]
    assert verdict.status == "no gain" and "nothing to try" in verdict.reason and verdict.trial is None
    nxt = screening.next_probe([base], base, {})
    assert nxt is not None and nxt[0].name == "runtime"


def _bf16_on(number: int, over: TrialRecord, seconds: float) -> TrialRecord:
    return TrialRecord(number, TrialState.COMPLETE, role="screen", over=over.number,
                       config={**over.settings, "precision.dtype": "bf16"}, fingerprint=f"bf16-{number}",
                       constraint=-0.01, metrics={"accuracy": 0.9, "train_time": seconds})


def test_a_probe_added_to_a_configuration_is_judged_against_that_configuration() -> None:
    strategies = _strategies("batch_size", "precision")
    screening = Screening(strategies, _space(strategies), "train", {"train": ["train_time"]})
    base, batch = _base(), _probe(1, 64, 5.0)
    # 4.0 s against batch 64's 5.0 s: 1.25x / 1.1 for a single run's noise, though 2.5x against the recipe. (Its
    # other settings handed out already, so the verdict does not wait on them.)
    screening.proposed.update(repr(sorted(p.items())) for p in screening.probes["precision"])
    faster = screening.verdicts([base, batch, _bf16_on(2, batch, 4.0)], base)["precision"]
    assert faster.status == "helps" and faster.trial == 2 and "on top of trial 1" in faster.reason
    assert faster.speedup == pytest.approx(1.25 / 1.1)
    # 4.8 s: 2.1x faster than the recipe, which batch 64 alone explains; bf16 adds nothing beyond noise
    screening = Screening(strategies, _space(strategies), "train", {"train": ["train_time"]})
    records = [base, batch, _bf16_on(2, batch, 4.8)]
    evidence = screening.evidence(records, base)["precision"]
    assert [t.own for t in evidence] == [{"precision.dtype": "bf16"}] and evidence[0].against is batch
    assert screening.verdicts(records, base)["precision"].status == "pending"  # its other settings remain
    nxt = screening.next_probe(records, base, {})
    assert nxt is not None and nxt[1] != {"precision.dtype": "bf16"}  # the probe it tried on top is not repeated


def test_a_technique_that_fails_added_to_another_is_tried_alone_before_it_is_judged_failed() -> None:
    strategies = _strategies("batch_size", "precision")
    screening = Screening(strategies, _space(strategies), "train", {"train": ["train_time"]})
    base, batch = _base(), _probe(1, 64, 5.0)
    on_top = TrialRecord(2, TrialState.FAIL, role="screen", over=batch.number, fingerprint="bf16-on-64",
                         config={**batch.settings, "precision.dtype": "bf16"}, failure_kind="error",
                         reason="precision.dtype=bf16: RuntimeError: fake tensor call")
    records = [base, batch, on_top]
    verdict = screening.verdicts(records, base)["precision"]
    assert verdict.status == "pending" and "on top of trial 1" in verdict.reason and "tried alone" in verdict.reason
    nxt = screening.next_probe(records, base, {}, "train")
    assert nxt is not None and nxt[0].name == "precision" and nxt[1] == {"precision.dtype": "bf16"} and nxt[2]
    stages = Stages(strategies, _space(strategies), "train", {"train": ["train_time"]}, ("train",))
    stages.screening.proposed |= screening.proposed
    proposal = stages.next(records, base)
    assert proposal.role == "screen" and proposal.over is None and proposal.config == {"precision.dtype": "bf16"}
    # Alone it works and helps: the pair's failure is named, not the technique's.
    alone = TrialRecord(3, TrialState.COMPLETE, role="screen", config={"precision.dtype": "bf16"}, fingerprint="bf16",
                        constraint=-0.01, metrics={"accuracy": 0.9, "train_time": 4.0})
    screening.proposed.update(repr(sorted(p.items())) for p in screening.probes["precision"])
    helps = screening.verdicts([*records, alone], base)["precision"]
    assert helps.status == "helps" and helps.trial == 3 and "failed on top of trial 1" in helps.reason
    # Alone it fails too: now it is the technique's own failure.
    lone_failure = TrialRecord(3, TrialState.FAIL, role="screen", config={"precision.dtype": "bf16"}, fingerprint="bf16",
                               failure_kind="unsupported", reason="bf16 is not supported here")
    failed = screening.verdicts([*records, lone_failure], base)["precision"]
    assert failed.status == "failed" and "bf16 is not supported here" in failed.reason and failed.trial == 3


def _short_stages(short: bool) -> Any:
    strategies = _strategies("batch_size", "precision")
    stages = Stages(strategies, _space(strategies), "train", {"train": ["train_time"]}, ("train",))
    stages.short = short
    return stages


def test_a_short_run_screens_the_next_technique_on_top_of_the_best_so_far() -> None:
    base = _base()
    batch = TrialRecord(1, TrialState.COMPLETE, role="screen", config={"batch_size.size": 64, "batch_size.lr_scaling": "sqrt"},
                        fingerprint="b64", constraint=-0.01, metrics={"accuracy": 0.9, "train_time": 5.0})
    stages = _short_stages(short=True)
    stages.screening.proposed.add(repr(sorted({"batch_size.size": 64, "batch_size.lr_scaling": "sqrt"}.items())))
    # The batch run of wins goes on first (batch 128), then precision comes on top of batch 64.
    proposals = [stages.next([base, batch], base) for _ in range(2)]
    on_top = next(p for p in proposals if p.strategy.name == "precision")
    assert on_top.role == "screen" and on_top.over == 1
    assert on_top.config["batch_size.size"] == 64 and on_top.config["precision.dtype"] != "fp32"
    # With trials to spare, training techniques go on top all the same (each is a training run); serving ones
    # are screened alone against the user's recipe, an evaluation each, unless the run is short.
    stages = _short_stages(short=False)
    stages.screening.proposed.add(repr(sorted({"batch_size.size": 64, "batch_size.lr_scaling": "sqrt"}.items())))
    trained = next(p for p in (stages.next([base, batch], base) for _ in range(2)) if p.strategy.name == "precision")
    assert trained.over == 1 and trained.config["batch_size.size"] == 64
    for short in (False, True):
        strategies = _strategies("quantization", "runtime")
        stages = Stages(strategies, _space(strategies), "inference", {"serve": ["latency"]}, ("serve",))
        stages.short = short
        quantized = TrialRecord(1, TrialState.COMPLETE, role="screen", config={"quantization.method": "dynamic_int8"},
                                fingerprint="q", constraint=-0.01, metrics={"accuracy": 0.9, "latency": 0.5},
                                ci95={"latency": [0.49, 0.51]})
        stages.screening.proposed.update(repr(sorted(p.items())) for p in stages.screening.probes["quantization"])
        served = next(p for p in (stages.next([base, quantized], base) for _ in range(3)) if p.strategy.name == "runtime")
        assert (served.over == 1) is short, (short, served.config)


def test_a_training_run_that_cannot_beat_the_fastest_recipe_so_far_is_stopped_early(replay: Any, ours: Any) -> None:
    from autoaccel.search._policy import STOP_SLOWER

    records = _records(ours)
    base = records[0]
    fastest = min((r for r in records if r.measured and r.feasible and r.goal in ("train", "baseline")),
                  key=lambda r: r.metrics["train_time"])
    assert fastest.metrics["train_time"] < base.metrics["train_time"]
    bar = ours.search.executor.speed_bar(ours.study, "train", "screen")
    assert bar == pytest.approx(fastest.metrics["train_time"] * STOP_SLOWER)
    # serving trials and the finish's own trials are never stopped
    assert ours.search.executor.speed_bar(ours.study, "serve", "screen") is None
    assert ours.search.executor.speed_bar(ours.study, "train", "ablation") is None
    # a row slower than the bar is stopped after a tenth of its training, and charged that much
    table = replay.Table(str(TABLE))
    slow = next(r for r in table.rows.values() if r.get("goal") == "train" and "metrics" in r
                and r["metrics"]["train_time"] > bar)
    run = replay.Replay(table)
    runner = replay.TableRunner(table, run)
    plan = ours.search.plans.build({**ours.search.setup.defaults, **slow["params"]})[1]
    with pytest.raises(TrialFailure) as stopped:
        runner.run(plan, 0, 0.1, guards=Guards(slower_than=bar))
    assert stopped.value.kind == "too_slow" and run.cost == pytest.approx(replay.STOPPED_AT * slow["train_seconds"])


def test_batch_size_is_probed_two_doublings_up_first_then_upward_then_one_doubling() -> None:
    strategy = _strategies("batch_size")[0]
    space = {"size": Categorical((16, 32, 64, 128, 256), 16), "lr_scaling": Categorical(("none", "linear", "sqrt"), "none")}
    assert [p["size"] for p in strategy.probes(space)] == [64, 128, 256, 32]
    assert {p["lr_scaling"] for p in strategy.probes(space)} == {"sqrt"}
    one = {**space, "size": Categorical((16, 32), 16)}
    assert [p["size"] for p in strategy.probes(one)] == [32]


def test_a_win_over_the_accuracy_budget_is_kept_but_not_followed() -> None:
    screening, base = _batch_screening(), _base()
    within = _probe(1, 64, 5.0)
    over = _probe(2, 128, 4.0, accuracy=0.8)  # faster still, but over the budget: a larger batch would lose more
    verdict = screening.verdicts([base, within, over], base)["batch_size"]
    assert verdict.status == "helps" and verdict.trial == 2 and "over the accuracy budget" in verdict.reason


def test_a_technique_whose_every_setting_was_stopped_early_is_not_said_to_have_failed() -> None:
    strategies = _strategies("precision")
    screening = Screening(strategies, _space(strategies), "train", {"train": ["train_time"]})
    base = _base()
    stopped = [TrialRecord(i, TrialState.FAIL, role="screen", config={"precision.dtype": p["precision.dtype"]},
                           fingerprint=f"p{i}", failure_kind="too_slow",
                           reason="stopped early after 20 of 400 steps: on course for 30.00 s of training")
               for i, p in enumerate(screening.probes["precision"], start=1)]
    verdict = screening.verdicts([base, *stopped], base)["precision"]
    assert verdict.status == "no gain" and "failed" not in verdict.reason
    assert "on course to train slower than the best recipe so far" in verdict.reason and "30.00 s" in verdict.reason
