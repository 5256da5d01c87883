"""Learning-rate schedules: a linear warmup, then cosine, linear or constant, counted in optimizer steps.

    scheduler = build_scheduler(optimizer, cfg.optim, cfg.max_steps)
    ...; optimizer.step(); scheduler.step()     # once per optimizer step, not per micro-batch

The multiplier at optimizer step ``s`` (0-based, the step about to be taken) is

* warmup, ``s < warmup_steps``: ``(s + 1) / warmup_steps``;
* then, with ``t = (s - warmup_steps) / max(1, max_steps - warmup_steps)`` clipped to [0, 1]:
  cosine ``r + (1 - r) (1 + cos(pi t)) / 2``, linear ``1 - (1 - r) t``, constant ``1``,
  where ``r = min_lr_ratio`` is the final fraction of the base learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("cosine", "linear", "constant")


def lr_multiplier(step: int, *, warmup_steps: int, max_steps: int, schedule: str = "cosine",
                  min_lr_ratio: float = 0.1) -> float:
    """The factor on the base learning rate for optimizer step ``step`` (see the module docstring)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    t = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    r = min_lr_ratio
    if schedule == "linear":
        return 1.0 - (1.0 - r) * t
    return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Mapping[str, Any], max_steps: int) -> LambdaLR:
    """A :class:`LambdaLR` over :func:`lr_multiplier`; ``optim_cfg`` has ``schedule``, ``warmup_steps``
    and ``min_lr_ratio``. Step it once per optimizer step."""
    f = partial(lr_multiplier, warmup_steps=int(optim_cfg["warmup_steps"]), max_steps=int(max_steps),
                schedule=str(optim_cfg["schedule"]), min_lr_ratio=float(optim_cfg["min_lr_ratio"]))
    f(0)  # an unknown schedule name fails here, not at the first step
    return LambdaLR(optimizer, f)
