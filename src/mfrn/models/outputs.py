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


def map_probability(map_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A region or boundary map as probabilities at ``size`` (H, W): bilinear up-sampling of the
    1/4-resolution logits, then the sigmoid; (B, 1, h, w) -> (B, H, W). Inference and calibration
    read the maps through this one function."""
    up = torch.nn.functional.interpolate(map_logits.float(), size=size, mode="bilinear", align_corners=False)
    return torch.sigmoid(up)[:, 0]
