"""schedule.py: the shape of each LR schedule, as a multiplier of the peak LR per step."""

from __future__ import annotations

import pytest
import torch

from autoaccel.pipeline import SchedulePlan
from autoaccel.schedule import FINAL, ONECYCLE_START, lr_multiplier

TOTAL = 100


def curve(kind: str, warmup: float = 0.0, total: int = TOTAL) -> list[float]:
    f = lr_multiplier(SchedulePlan(kind=kind, warmup=warmup), total)
    return [f(step) for step in range(total + 1)]


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
    assert c[0] == pytest.approx(1 / 25) and ONECYCLE_START == pytest.approx(1 / 25)
    peak = max(range(len(c)), key=c.__getitem__)
    assert peak == 30 and c[peak] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(c[:31], c[1:31])), "ramp up first"
    assert all(a >= b for a, b in zip(c[30:], c[31:])), "then anneal"
    assert c[TOTAL] < 1e-3


def test_warmup_ramps_linearly_to_the_peak() -> None:
    c = curve("constant", warmup=0.1)  # 10 warm-up steps
    assert c[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert c[10:] == [1.0] * (TOTAL + 1 - 10)


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_warmup_multiplies_the_schedule_and_leaves_its_tail_alone(kind: str) -> None:
    plain, warmed = curve(kind), curve(kind, warmup=0.05)
    assert warmed[0] == pytest.approx(plain[0] / 5)
    assert warmed[4] == pytest.approx(plain[4])
    assert warmed[5:] == plain[5:]


def test_onecycle_with_warmup_uses_the_warmup_as_its_ramp() -> None:
    c = curve("onecycle", warmup=0.1)
    assert c[0] == pytest.approx(0.1)  # the warm-up ramp, not 1/25 of it
    assert max(range(len(c)), key=c.__getitem__) == 9 and c[9] > 0.95  # peak where the warm-up ends
    assert all(a >= b for a, b in zip(c[9:], c[10:]))


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"schedule kind must be one of .* but got 'linear'"):
        lr_multiplier(SchedulePlan(kind="linear"), 10)


def test_zero_steps_do_not_divide_by_zero() -> None:
    assert lr_multiplier(SchedulePlan(kind="cosine", warmup=0.1), 0)(0) == pytest.approx(1.0)


def test_lambda_lr_applies_the_multiplier_to_the_optimizer() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(SchedulePlan(kind="step"), 4))
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 0.5, 0.05, 0.005])
