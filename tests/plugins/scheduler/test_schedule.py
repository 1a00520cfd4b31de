"""The scheduler plugin: the shape of each LR schedule (torch.optim.lr_scheduler), as a multiplier of the peak LR
per step."""

from __future__ import annotations

import pytest
import torch

from autoaccel.plugins.scheduler import FINAL, scheduler

TOTAL = 100


def curve(kind: str, warmup: float = 0.0, total: int = TOTAL) -> list[float]:
    """The LR before each of ``total`` optimizer steps and after the last, for a peak LR of 1."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = scheduler(opt, kind, warmup, total)
    lrs = []
    for step in range(total + 1):
        lrs.append(opt.param_groups[0]["lr"])
        if step < total:
            opt.step()
            sched.step()
    return lrs


def test_constant_is_one_everywhere() -> None:
    assert curve("constant") == [1.0] * (TOTAL + 1)


def test_step_decays_tenfold_at_one_half_and_three_quarters() -> None:
    c = curve("step")
    assert c[0] == c[49] == 1.0
    assert c[50] == pytest.approx(0.1) and c[74] == pytest.approx(0.1)
    assert c[75] == pytest.approx(0.01) and c[TOTAL] == pytest.approx(0.01)


def test_cosine_starts_at_one_passes_half_midway_and_ends_near_zero() -> None:
    c = curve("cosine")
    assert c[0] == pytest.approx(1.0)
    assert c[TOTAL // 2] == pytest.approx(0.5, abs=1e-3)
    assert c[TOTAL] == pytest.approx(FINAL) and c[TOTAL] < 1e-3
    assert c[TOTAL - 1] < 0.01
    assert all(a >= b for a, b in zip(c, c[1:])), "cosine must decrease monotonically"


def test_onecycle_starts_at_one_25th_peaks_at_30_percent_and_anneals() -> None:
    c = curve("onecycle")
    assert c[0] == pytest.approx(1 / 25)
    peak = max(range(len(c)), key=c.__getitem__)
    # The ramp is the first 30% of the steps (0..29, torch's OneCycleLR): the peak is its last step.
    assert peak == 29 and c[peak] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(c[:30], c[1:30])), "ramp up first"
    assert all(a >= b for a, b in zip(c[29:TOTAL], c[30:TOTAL])), "then anneal"
    assert c[TOTAL - 1] == pytest.approx(FINAL) and c[TOTAL] < 1e-3


def test_warmup_ramps_linearly_to_the_peak() -> None:
    c = curve("constant", warmup=0.1)  # 10 warm-up steps
    assert c[0] == pytest.approx(1 / 10)
    steps = [b - a for a, b in zip(c[:11], c[1:11])]
    assert steps == pytest.approx([steps[0]] * 10) and steps[0] > 0, "linear, rising"
    assert c[10:] == pytest.approx([1.0] * (TOTAL + 1 - 10))


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_warmup_ramps_up_to_the_schedule_which_then_runs_over_the_remaining_steps(kind: str) -> None:
    plain, warmed = curve(kind), curve(kind, warmup=0.05)
    assert warmed[0] == pytest.approx(plain[0] / 5)
    assert all(a < b for a, b in zip(warmed[:5], warmed[1:6])), "the ramp rises to the peak"
    assert warmed[5:] == pytest.approx(curve(kind, total=TOTAL - 5), abs=1e-9)


def test_onecycle_with_warmup_uses_the_warmup_as_its_ramp() -> None:
    c = curve("onecycle", warmup=0.1)
    assert c[0] == pytest.approx(1 / 25)  # one-cycle's own start, ramping over the warm-up instead of 30%
    assert max(range(len(c)), key=c.__getitem__) == 9 and c[9] > 0.95  # peak where the warm-up ends
    assert all(a >= b for a, b in zip(c[9:TOTAL], c[10:TOTAL]))


def test_onecycle_with_a_one_step_warmup_starts_at_the_peak() -> None:
    # 5% of 20 steps is one warm-up step: a ramp that ends where it starts (OneCycleLR alone divides by zero).
    c = curve("onecycle", warmup=0.05, total=20)
    assert c[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(c[:20], c[1:20])), "anneals from the first step"
    assert c[19] == pytest.approx(FINAL, abs=1e-6)


def test_unknown_kind_is_refused() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    with pytest.raises(ValueError, match=r"schedule kind must be one of .* but got 'linear'"):
        scheduler(opt, "linear", 0.0, 10)


def test_zero_steps_do_not_divide_by_zero() -> None:
    assert curve("cosine", warmup=0.1, total=0) == [pytest.approx(1.0)]


def test_the_scheduler_sets_the_optimizers_lr() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.5)
    sched = scheduler(opt, "step", 0.0, 4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 0.5, 0.05, 0.005])
