"""The learning-rate schedule: exact values at the warmup, the middle and the end, per optimizer step."""

from __future__ import annotations

import math

import pytest
import torch

from fsqtok.training import build_scheduler, lr_multiplier


def mult(step, schedule="cosine", warmup=4, max_steps=20, r=0.1):
    return lr_multiplier(step, warmup_steps=warmup, max_steps=max_steps, schedule=schedule, min_lr_ratio=r)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_warmup_is_linear_from_one_step(schedule):
    assert [mult(s, schedule) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert mult(4, schedule) == 1.0  # the first step after warmup runs at the full rate


def test_cosine_and_linear_decay_to_min_ratio():
    # after warmup: t = (s - 4) / 16
    assert mult(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert mult(8) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert mult(12, "linear") == pytest.approx(1 - 0.9 * 0.5)
    for schedule in ("cosine", "linear"):
        assert mult(20, schedule) == pytest.approx(0.1)
        assert mult(50, schedule) == pytest.approx(0.1)  # clipped after max_steps
        values = [mult(s, schedule) for s in range(4, 21)]
        assert all(a > b for a, b in zip(values, values[1:]))
    assert [mult(s, "constant") for s in (5, 20, 50)] == [1.0, 1.0, 1.0]


def test_no_warmup_starts_at_full_rate():
    assert mult(0, warmup=0) == 1.0
    assert mult(0, "linear", warmup=0) == 1.0


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="schedule must be one of cosine, linear, constant"):
        mult(0, "step")
    with pytest.raises(ValueError, match="schedule"):
        build_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                        {"schedule": "exp", "warmup_steps": 0, "min_lr_ratio": 0.1}, 10)


def test_scheduler_sets_the_optimizer_lr_per_step_and_resumes():
    cfg = {"schedule": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.2}
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.5)
    sched = build_scheduler(opt, cfg, 10)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.5 * lr_multiplier(s, warmup_steps=2, max_steps=10, min_lr_ratio=0.2) for s in range(6)]
    assert seen == pytest.approx(expected)
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    sched2 = build_scheduler(opt2, cfg, 10)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.get_last_lr() == pytest.approx([0.5 * lr_multiplier(6, warmup_steps=2, max_steps=10, min_lr_ratio=0.2)])
