"""Learning-rate schedules: values at given steps, warmup, SAM, resuming from a state dict."""

from __future__ import annotations

import math

import pytest
import torch

from mfrn.train.sam import SAM
from mfrn.train.schedules import ScheduleConfig, build_scheduler, build_scheduler_from_config


def _optimizer(lr: float = 0.001) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9)


def _lrs(scheduler, optimizer, steps: int) -> list[float]:
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_sbi_schedule_is_constant_then_linear_to_zero():
    optimizer = _optimizer(0.001)
    scheduler = build_scheduler(optimizer, "sbi", total_steps=100)
    lrs = _lrs(scheduler, optimizer, 101)
    assert lrs[0] == pytest.approx(0.001) and lrs[74] == pytest.approx(0.001)
    assert lrs[75] == pytest.approx(0.001)  # decay starts at 75 % ...
    assert lrs[80] == pytest.approx(0.001 * 20 / 25)
    assert lrs[90] == pytest.approx(0.001 * 10 / 25)
    assert lrs[99] == pytest.approx(0.001 * 1 / 25)
    assert lrs[100] == pytest.approx(0.0)  # ... and reaches 0 at total_steps
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_cosine_schedule_with_warmup_and_floor():
    optimizer = _optimizer(1.0)
    scheduler = build_scheduler(optimizer, "cosine", total_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    lrs = _lrs(scheduler, optimizer, 111)
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.5) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5)
    assert lrs[35] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lrs[110] == pytest.approx(0.1)


def test_constant_schedule_stays_put_after_warmup():
    optimizer = _optimizer(0.5)
    lrs = _lrs(build_scheduler(optimizer, "constant", total_steps=20, warmup_steps=4), optimizer, 20)
    assert lrs[:4] == pytest.approx([0.125, 0.25, 0.375, 0.5])
    assert set(lrs[4:]) == {0.5}


def test_sam_is_scheduled_through_its_base_optimizer():
    parameter = torch.nn.Parameter(torch.zeros(2))
    sam = SAM(torch.optim.SGD([parameter], lr=0.01), rho=0.05)
    scheduler = build_scheduler(sam, "sbi", total_steps=8)
    assert scheduler.optimizer is sam.base_optimizer
    seen = []
    for _ in range(8):
        seen.append(sam.param_groups[0]["lr"])
        parameter.grad = torch.ones(2)
        sam.first_step()
        parameter.grad = torch.ones(2)
        sam.second_step()
        scheduler.step()
    assert seen[0] == pytest.approx(0.01) and seen[-1] < seen[0]  # the lr demonstrably changes
    assert sam.param_groups[0]["lr"] == pytest.approx(0.0)


def test_scheduler_state_dict_resumes_exactly():
    optimizer = _optimizer(1.0)
    scheduler = build_scheduler(optimizer, "cosine", total_steps=50, warmup_steps=5)
    _lrs(scheduler, optimizer, 30)
    state, optimizer_state = scheduler.state_dict(), optimizer.state_dict()
    expected = _lrs(scheduler, optimizer, 10)

    resumed_optimizer = _optimizer(1.0)
    resumed = build_scheduler(resumed_optimizer, "sbi", total_steps=999)  # settings come from the state
    resumed.load_state_dict(state)
    resumed_optimizer.load_state_dict(optimizer_state)  # a checkpoint restores both
    assert _lrs(resumed, resumed_optimizer, 10) == pytest.approx(expected)


def test_config_builder_and_invalid_arguments():
    optimizer = _optimizer()
    assert ScheduleConfig().name == "sbi" and ScheduleConfig().decay_start == 0.75
    scheduler = build_scheduler_from_config(optimizer, ScheduleConfig(name="cosine"), total_steps=10)
    assert scheduler.lr_lambdas[0].name == "cosine"
    with pytest.raises(ValueError, match="unknown schedule"):
        build_scheduler(optimizer, "step", total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler(optimizer, "sbi", total_steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        build_scheduler(optimizer, "sbi", total_steps=10, warmup_steps=10)
    with pytest.raises(TypeError, match="optimizer"):
        build_scheduler(object(), "sbi", total_steps=10)
