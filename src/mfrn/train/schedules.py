"""Learning-rate schedules as ``torch.optim.lr_scheduler.LambdaLR`` (state dicts resume).

Stepped once per optimizer step (``total_steps`` = epochs * steps per epoch). With SAM the base
optimizer's param_groups are scheduled (SAM shares them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("sbi", "cosine", "constant")


@dataclass
class ScheduleConfig:
    """method.md §6: constant for the first 75 % of training, then linear decay to 0."""

    name: str = "sbi"  # "sbi" | "cosine" | "constant"
    warmup_steps: int = 0
    # interpretation: SBI decays per epoch; here per step, from decay_start * total_steps to 0
    decay_start: float = 0.75
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of the base lr


@dataclass
class LrFactor:
    """lr multiplier at a step; a callable object so LambdaLR's state dict stores its settings."""

    name: str
    total_steps: int
    warmup_steps: int = 0
    decay_start: float = 0.75
    min_lr_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "constant":
            return 1.0
        if self.name == "sbi":
            start = max(self.warmup_steps, int(round(self.decay_start * self.total_steps)))
            if step < start:
                return 1.0
            return max(0.0, (self.total_steps - step) / max(1, self.total_steps - start))
        if self.name == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine
        raise ValueError(f"unknown schedule {self.name!r}; known: {', '.join(SCHEDULES)}")


def build_scheduler(
    optimizer: Any,
    name: str,
    total_steps: int,
    warmup_steps: int = 0,
    decay_start: float = 0.75,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A per-step scheduler; ``optimizer`` is a torch optimizer or a SAM (its base is scheduled)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps), got {warmup_steps} of {total_steps}")
    if not 0.0 <= decay_start <= 1.0:
        raise ValueError(f"decay_start must be in [0, 1], got {decay_start}")
    base = getattr(optimizer, "base_optimizer", optimizer)
    if not isinstance(base, torch.optim.Optimizer):
        raise TypeError(f"build_scheduler needs a torch optimizer or a SAM, got {type(optimizer).__name__}")
    factor = LrFactor(name, total_steps, warmup_steps, decay_start, min_lr_ratio)
    return LambdaLR(base, lr_lambda=factor)


def build_scheduler_from_config(optimizer: Any, cfg: ScheduleConfig, total_steps: int) -> LambdaLR:
    return build_scheduler(optimizer, cfg.name, total_steps, cfg.warmup_steps, cfg.decay_start, cfg.min_lr_ratio)
