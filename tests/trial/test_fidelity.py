"""Fidelity: compressed schedules, projected training time, divergence stops, the budget's plan and evidence."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from optuna.trial import TrialState

from autoaccel.errors import AutoaccelError, TrialFailure
from autoaccel.finish import _evidence as evidence
from autoaccel.options import Options, parse_fidelity
from autoaccel.plugin._contexts import Guards
from autoaccel.search import _sanity as sanity
from autoaccel.trial import _fidelity as fidelity
from autoaccel.trial._course import Course
from autoaccel.trial._curve import RecipeCurve, key
from autoaccel.trial._record import TrialRecord
from autoaccel.trial._run import run_trial
from autoaccel.trial._train import setup_for, train
from tiny_digits import base_plan, make_mlp, make_task, with_params


def _lrs(task, plan) -> tuple[list[float], object]:
    """Learning rates at every optimizer step of a run of ``plan``, and its stats."""
    seen: list[float] = []
    model = make_mlp()

    class Spy(torch.optim.SGD):
        def step(self, closure=None):  # type: ignore[override]
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    task = make_task(**{**task, "optimizer": lambda params, lr: Spy(params, lr=lr)})
    stats = train(model, task, plan(task), seed=0)
    return seen, stats


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_a_compressed_run_steps_the_whole_schedule_in_a_share_of_the_steps(interval: str) -> None:
    # StepLR halves the LR 4 times over the recipe (per epoch: each of 4 epochs; per step: every 45 steps).
    step = 1 if interval == "epoch" else 45
    recipe = {"epochs": 4, "scheduler": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step, gamma=0.5),
              "scheduler_interval": interval}
    full, full_stats = _lrs(recipe, lambda t: base_plan(t))
    quarter, stats = _lrs(recipe, lambda t: base_plan(t).replace(fraction=0.25))
    assert full_stats.steps == 180 and stats.steps == 45 and stats.full_steps == 180
    # Compressed, never truncated: the last steps run at the schedule's last LR, as the whole recipe's do.
    assert quarter[0] == pytest.approx(full[0]) == pytest.approx(0.1)
    assert quarter[-1] == pytest.approx(full[-1]) == pytest.approx(0.1 * 0.5**3)
    assert sorted(set(quarter), reverse=True) == sorted(set(full), reverse=True)


def test_a_whole_run_steps_its_schedule_as_before() -> None:
    recipe = {"epochs": 2, "scheduler": lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)}
    lrs, stats = _lrs(recipe, lambda t: base_plan(t))
    assert stats.steps == stats.full_steps == 90
    assert lrs[:45] == [pytest.approx(0.1)] * 45 and lrs[45:] == [pytest.approx(0.05)] * 45
    assert stats.projected_s == stats.seconds  # nothing left out, nothing projected


def test_a_compressed_run_projects_the_whole_recipes_time_from_its_steady_steps() -> None:
    task = make_task(epochs=8)
    stats = train(make_mlp(), task, base_plan(task).replace(fraction=1 / 8), seed=0)
    assert stats.steps == 45 and stats.full_steps == 360 and stats.steady_steps >= 40
    # Its own run plus the 315 steps it left out, at its steady step time: the left-out steps are charged at a
    # per-step rate between the run's fastest and slowest steady step.
    per_step = (stats.projected_s - stats.seconds) / 315
    assert math.isfinite(per_step) and per_step > 0
    assert stats.projected_s > stats.seconds


def test_a_run_diverging_from_the_baselines_loss_is_stopped_saying_where() -> None:
    task = make_task(epochs=2)
    plan = base_plan(task)
    setup = setup_for(make_mlp(), task, plan, seed=0)
    reference = ((0.05, 2.3), (0.5, 0.4), (1.0, 0.2))
    course = Course(setup, Guards(reference_loss=reference))
    course.observe(5, 2.2)  # early in the run: never judged
    course.observe(45, 0.9)  # slower than the baseline, but learning: fine
    with pytest.raises(TrialFailure, match=r"diverged: loss .* at 5\d% of the schedule, where your recipe's was 0\.4"):
        for step in range(46, 60):
            course.observe(step, 9.0)


def test_a_nan_loss_stops_a_run_at_once() -> None:
    def exploding(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(outputs, targets) * float("nan")

    task = make_task(epochs=1, loss=exploding)
    with pytest.raises(TrialFailure, match="training diverged: loss became nan at step 1$"):
        train(make_mlp(), task, base_plan(task).replace(fraction=0.5), seed=0)


def test_the_budget_plans_the_rungs_from_one_trainings_cost() -> None:
    # About the ResNet: 71 s a training, 720 steps, 3.5 min searching, 1.5 min finishing.
    plan = fidelity.plan(71.0, 720, 0.1, 210.0, 90.0, techniques=7)
    assert (plan.search, plan.answer) == (1 / 16, 1 / 4)
    assert "takes about 71 s here (720 steps)" in plan.header() and "1/16 of your schedule" in plan.header()
    assert "its curve is measured from 1/16 of your schedule up to 1/4, and candidates are promoted there" in plan.header()
    # Five times longer: a lower rung, never below MIN_STEPS steps.
    long = fidelity.plan(355.0, 3600, 0.1, 210.0, 90.0, techniques=7)
    assert long.search == 1 / 64 and long.search * 3600 >= fidelity.MIN_STEPS
    # The digits example: whole trainings are affordable, nothing is compressed.
    assert fidelity.plan(2.0, 720, 0.003, 210.0, 90.0, techniques=7).search == 1.0
    # No time budget (a fixed --trials): whole trainings.
    assert fidelity.plan(71.0, 720, 0.1, None, None, techniques=7).search == 1.0


def test_fidelity_flag_takes_a_share_and_refuses_anything_else() -> None:
    assert parse_fidelity("1/16") == 1 / 16 and parse_fidelity("auto") is None and parse_fidelity(0.5) == 0.5
    Options(fidelity="1/4").validate()
    for bad in ("0", "2", "half", "1/0", "-1"):
        with pytest.raises(AutoaccelError, match=r"--fidelity: must be auto or a share of your schedule in \(0, 1\]"):
            Options(fidelity=bad).validate()


def test_evidence_says_what_stands_behind_each_claim() -> None:
    sliced = evidence.speed_slice(512, 32, 7)
    assert sliced == {"kind": "slice", "samples": 512, "steps": 16, "rounds": 7}
    curve = RecipeCurve(0.01, {key(1 / 16): 0.21, key(0.25): 0.98, key(1.0): 0.99}, full_from="--baseline-metric")
    at_quarter = curve.evidence(0.25)
    train = evidence.of("train", sliced, at_quarter, 1 / 16)
    assert train["speed"] == sliced and train["quality"]["informative"] is True
    assert train["quality"]["fraction"] == 0.25 and train["quality"]["recipe_value"] == 0.98
    assert evidence.words(train, "train") == ("training speed from 7 paired 16-step slices; quality at 1/4 of your "
                                              "schedule, where your recipe reaches 0.9800 of its full-length 0.9900; not "
                                              "yet at full length (autoaccel confirm)")
    early = evidence.of("train", sliced, curve.evidence(1 / 16), 1 / 16)
    assert early["quality"]["informative"] is False and early["quality"].get("basis") is None
    assert "quality not judged: at 1/16 of your schedule your recipe reaches only 0.2100" in evidence.words(early, "train")
    full = evidence.of("train", None, {"fraction": 1.0}, 1 / 16, confirmed={"rounds": 1, "ratio": 1.5, "recipe_value": 0.99})
    assert full["speed"]["kind"] == "full" and full["quality"]["fraction"] == 1.0 and full["quality"]["informative"]
    assert evidence.words(full, "train") == "training speed from one whole training each, back to back; quality at full length"
    known = evidence.of("train", None, {"fraction": 1.0}, 1 / 16, confirmed={"rounds": 1, "ratio": 1.5, "baseline": "projected"})
    assert evidence.words(known, "train") == ("training speed from its whole training against your recipe's projected "
                                              "time; quality at full length")
    assert evidence.words(evidence.of("serve", None, {"fraction": 1.0}, 1.0), "serve") == "quality at full length"


def test_loss_gap_is_the_mean_relative_gap_past_the_first_tenth() -> None:
    reference = [(0.05, 9.0), (0.5, 1.0), (1.0, 0.5)]
    assert sanity.loss_gap([(0.05, 1.0), (0.5, 1.1), (1.0, 0.5)], reference) == pytest.approx(0.05)
    assert sanity.loss_gap([], reference) == math.inf


def test_speed_only_sections_keep_the_math_key_and_math_changes_do_not() -> None:
    task = make_task()
    base = base_plan(task)
    assert base.speed_only_tolerance() is None
    workers = with_params(base, {"dataloader.num_workers": 1})
    assert workers.math_key() == base.math_key() and workers.speed_only_tolerance() == 0.25
    # A cache freezes each item once (random augmentation drawn once): other data, other math.
    assert with_params(base, {"dataloader.cache": True}).math_key() != base.math_key()
    assert with_params(base, {"precision.dtype": "bf16"}).math_key() != base.math_key()
    assert with_params(base, {"precision.dtype": "bf16", "dataloader.num_workers": 1}).math_key() == \
        with_params(base, {"precision.dtype": "bf16"}).math_key()


def test_a_speed_only_change_takes_the_same_maths_quality_once_its_loss_agrees() -> None:
    task = make_task(epochs=2)
    base = base_plan(task).replace(fraction=0.5)
    workers = with_params(base, {"dataloader.num_workers": 1})
    measured = run_trial(task, base, seed=0, timing_budget_s=0.02)
    source = TrialRecord(0, TrialState.COMPLETE, role="baseline", goal="baseline", metrics=measured.metrics,
                         ci95={k: list(v) for k, v in measured.ci95.items()}, details=measured.details,
                         math={"key": base.math_key(), "tolerance": None}, fraction=0.5)
    me = TrialRecord(1, TrialState.RUNNING, role="screen", goal="train", fraction=0.5,
                     math={"key": workers.math_key(), "tolerance": workers.speed_only_tolerance()})
    assert sanity.twin([source, me], me) is source
    # Another share of the schedule, or a serving trial, never takes it.
    assert sanity.twin([dataclasses.replace(source, fraction=0.25), me], me) is None
    assert sanity.twin([source, dataclasses.replace(me, goal="serve")], dataclasses.replace(me, goal="serve")) is None

    result = run_trial(task, workers, seed=0, timing_budget_s=0.02)
    own = result.metrics["accuracy"]
    # The same batches in the same order from a worker process: the loss agrees, the recipe's quality is taken.
    assert sanity.inherit(result.metrics, result.ci95, result.details, source, 0.25)
    assert result.metrics["accuracy"] == measured.metrics["accuracy"]
    assert result.details["quality"] == {"against": 0, "loss_gap": pytest.approx(0.0, abs=0.02), "tolerance": 0.25,
                                         "measured": own, "from": 0, "sanity": "passed"}
    assert result.details["correct"] == measured.details["correct"]  # paired intervals of the drop still hold

    # A loss that drifts from the same math's fails the check: its own quality stands, and the check says why.
    drifted = run_trial(task, workers, seed=0, timing_budget_s=0.02)
    drifted.details["fidelity"]["loss_curve"] = [[p, 2 * v] for p, v in drifted.details["fidelity"]["loss_curve"]]
    kept = drifted.metrics["accuracy"]
    assert not sanity.inherit(drifted.metrics, drifted.ci95, drifted.details, source, 0.25)
    assert drifted.metrics["accuracy"] == kept and drifted.details["quality"]["sanity"] == "failed"
    assert drifted.details["quality"]["loss_gap"] > 0.9


def test_at_a_low_rung_only_a_drop_over_budget_beyond_noise_rules_a_trial_out() -> None:
    from autoaccel.finish._summary import over_budget

    noisy = {"value": 0.011, "ci95": [-0.02, 0.042]}  # a point over a 0.01 budget, well within noise
    clear = {"value": 0.139, "ci95": [0.10, 0.18]}
    assert over_budget(noisy, 0.01, 1 / 16) < 0 < over_budget(clear, 0.01, 1 / 16)
    # At full length (and the answer's own rung, judged by the finish) the value decides.
    assert over_budget(noisy, 0.01, None) > 0 and over_budget(noisy, 0.01, 1.0) > 0


def test_the_promotion_takes_the_highest_rung_the_rest_of_the_budget_affords() -> None:
    from autoaccel.trial._fidelity import affordable

    # One full training of 37 s, the baseline's 1/8 trial 8 s of wall time: two trainings at 1/2 need 2 x 19 s.
    assert affordable(1 / 8, 1 / 2, 37.0, 8.0, 60.0) == 0.5
    assert affordable(1 / 8, 1 / 2, 37.0, 8.0, 30.0) == 0.25
    assert affordable(1 / 8, 1 / 2, 37.0, 8.0, 10.0) is None
    assert affordable(1 / 8, 1 / 2, 37.0, 8.0, None) == 0.5  # no budget: the planned rung


def test_few_dear_steps_are_screened_on_slices_whatever_the_epoch_count() -> None:
    # The timm ResNet-18: 3 epochs of 69 steps, 34 s a training here; the search affords under four whole
    # trainings for six training techniques: 17-step slices (after warm-up), not whole trainings.
    plan = fidelity.plan(34.0, 69, 0.45, 210.0, 90.0, techniques=6)
    assert plan.search == 1 / 4 and plan.search * 69 >= fidelity.MIN_SLICE_STEPS
    assert "steps are few and dear" in plan.how and "3.7 whole trainings for 6 training techniques" in plan.how
    assert "17-step runs" in plan.header()
    # Its recipe climbs to full length (1.5 trainings in the ladder's share): serving is judged on a learned model.
    assert plan.answer == 1.0 and "up to full length" in plan.header()
    # The same schedule on a fast machine affords a whole training per technique: whole trainings, as before.
    assert fidelity.plan(3.0, 69, 0.04, 210.0, 90.0, techniques=6).search == 1.0
