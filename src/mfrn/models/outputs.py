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
    embedding: torch.Tensor | None = None  # (B, C): the features the classifier reads (the temporal head's input)


@dataclass
class ClipOutput:
    """A clip detector's output: clip logits (what ``fake_probability`` reads) and every frame's output."""

    logits: torch.Tensor  # (B, 2): real, fake, per clip
    frames: DetectorOutput  # the frame detector's output on the B * T frames, clip after clip
    length: int  # T
    frame_loss: bool = True  # False when the frame detector is frozen: its outputs carry no gradient

    @property
    def frame_logits(self) -> torch.Tensor:
        """(B, T, 2)."""
        return self.frames.logits.reshape(-1, self.length, self.frames.logits.shape[-1])


def fake_probability(output: DetectorOutput | ClipOutput) -> torch.Tensor:
    """P(fake) per sample (frame, or clip), shape (B,): softmax over the two logits, column 1."""
    return torch.softmax(output.logits.float(), dim=1)[:, 1]
