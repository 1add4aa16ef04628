"""What every detector returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DetectorOutput:
    """Logits, never probabilities. Maps are at 1/4 of the input resolution, or None."""

    logits: torch.Tensor  # (B, 2): real, fake
    region_logits: torch.Tensor | None = None  # (B, 1, ceil(H/4), ceil(W/4))
    boundary_logits: torch.Tensor | None = None  # (B, 1, ceil(H/4), ceil(W/4))


def fake_probability(output: DetectorOutput) -> torch.Tensor:
    """P(fake) per sample, shape (B,): softmax over the two logits, column 1."""
    return torch.softmax(output.logits.float(), dim=1)[:, 1]
