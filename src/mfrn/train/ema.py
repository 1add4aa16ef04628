"""An exponential moving average of the training weights (``train.ema_decay``), off by default.

After every optimizer step each floating-point parameter and buffer of the average moves towards the
model's: ``avg <- d * avg + (1 - d) * w`` with ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates
(the usual warm-up: the first updates follow the weights closely instead of averaging in the random
start). Integer buffers (BatchNorm's batch counter) are copied. When it is on, validation, checkpoint
selection, calibration and the checkpoints' ``model`` weights are the average's; the raw weights travel in
the checkpoint as ``train_model`` so that a resumed run continues bit for bit.

Not in SBI's or the paper's recipe: a switch for short schedules, where the last epochs' val AUC moves by
a few points from one epoch to the next.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """The moving average of ``model``'s weights, kept in a frozen copy of it (``module``)."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) to average (0 turns it off), got {decay}")
        self.decay = decay
        self.updates = updates
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        for average, value in zip(self.module.state_dict().values(), model.state_dict().values()):
            if average.is_floating_point():
                average.lerp_(value.detach().to(average.dtype), 1.0 - d)
            else:
                average.copy_(value)
        self.updates += 1
