"""MFRN's training loss (method.md §5): CE(cls) + lambda_map * BCE(region) + lambda_edge * boundary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mfrn.models.outputs import ClipOutput, DetectorOutput

BOUNDARY_LOSSES = ("bce", "bce+dice")


@dataclass
class LossConfig:
    # interpretation: the paper gives no weights; 1.0 each, plain BCE for the boundary
    lambda_map: float = 1.0
    lambda_edge: float = 1.0
    boundary_pos_weight: float = 1.0  # > 1 up-weights the sparse boundary pixels
    boundary_loss: str = "bce"  # "bce" | "bce+dice"
    label_smoothing: float = 0.0
    dice_smooth: float = 1.0
    # the temporal head (model.temporal): L = lambda_clip * CE(clip) + lambda_frame * (the frame loss above,
    # averaged over the clip's frames; kept when training end to end, skipped on a frozen frame detector)
    lambda_clip: float = 1.0
    lambda_frame: float = 1.0


@dataclass
class LossBreakdown:
    """Scalar tensors; ``total`` carries the graph, region/boundary are 0 when not computed."""

    total: torch.Tensor
    cls: torch.Tensor
    region: torch.Tensor
    boundary: torch.Tensor


def resize_target(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) float map -> (B, 1, *size): area when shrinking, else bilinear."""
    if target.dim() == 3:
        target = target[:, None]
    if target.dim() != 4 or target.shape[1] != 1:
        raise ValueError(f"a target map must be (B, H, W) or (B, 1, H, W), got {tuple(target.shape)}")
    target = target.float()
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    shrinking = target.shape[-2] >= size[0] and target.shape[-1] >= size[1]
    if shrinking:
        return F.interpolate(target, size=size, mode="area")
    return F.interpolate(target, size=size, mode="bilinear", align_corners=False).clamp(0.0, 1.0)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - Dice over the whole batch (sums over B, H, W).

    # interpretation: batch-wise Dice, so batches of reals (empty targets) stay well defined.
    """
    probability = torch.sigmoid(logits.float())
    intersection = (probability * target).sum()
    return 1.0 - (2.0 * intersection + smooth) / (probability.sum() + target.sum() + smooth)


class DetectionLoss:
    """``DetectionLoss(cfg)(output, labels, region_maps, boundary_maps) -> LossBreakdown``.

    ``labels``: (B,) long, 1 = fake. Maps: float (B, H, W) in [0, 1] at input resolution, zeros
    for reals; resized to the prediction's size. Map terms are skipped when the output has no
    maps (the baseline); maps predicted without targets are an error.
    """

    def __init__(self, cfg: LossConfig | None = None) -> None:
        self.cfg = cfg or LossConfig()
        if self.cfg.boundary_loss not in BOUNDARY_LOSSES:
            raise ValueError(f"unknown boundary_loss {self.cfg.boundary_loss!r}; known: {', '.join(BOUNDARY_LOSSES)}")

    def __call__(
        self,
        output: DetectorOutput,
        labels: torch.Tensor,
        region_maps: torch.Tensor | None = None,
        boundary_maps: torch.Tensor | None = None,
    ) -> LossBreakdown:
        cfg = self.cfg
        logits = output.logits.float()
        cls = F.cross_entropy(logits, labels.long(), label_smoothing=cfg.label_smoothing)
        zero = logits.new_zeros(())
        region, boundary = zero, zero
        if output.region_logits is not None:
            if region_maps is None:
                raise ValueError("the model predicts region maps but no region_maps were given")
            prediction = output.region_logits.float()
            target = resize_target(region_maps.to(prediction.device), prediction.shape[-2:])
            region = F.binary_cross_entropy_with_logits(prediction, target)
        if output.boundary_logits is not None:
            if boundary_maps is None:
                raise ValueError("the model predicts boundary maps but no boundary_maps were given")
            prediction = output.boundary_logits.float()
            target = resize_target(boundary_maps.to(prediction.device), prediction.shape[-2:])
            pos_weight = prediction.new_tensor(cfg.boundary_pos_weight)
            boundary = F.binary_cross_entropy_with_logits(prediction, target, pos_weight=pos_weight)
            if cfg.boundary_loss == "bce+dice":
                boundary = boundary + soft_dice_loss(prediction, target, cfg.dice_smooth)
        total = cls + cfg.lambda_map * region + cfg.lambda_edge * boundary
        return LossBreakdown(total=total, cls=cls, region=region, boundary=boundary)


class ClipLoss:
    """``ClipLoss(cfg)(output, labels, region_maps, boundary_maps) -> LossBreakdown`` for clips.

    ``labels``: (B,) per clip; maps (B, T, H, W). ``cls`` is the clip term; ``region`` and ``boundary``
    the frame detector's map terms (0 on a frozen frame detector). The frame term is ``DetectionLoss``
    on the B * T frames, each frame labelled as its clip.
    """

    def __init__(self, cfg: LossConfig | None = None) -> None:
        self.cfg = cfg or LossConfig()
        self.frame_loss = DetectionLoss(self.cfg)

    def __call__(
        self,
        output: ClipOutput,
        labels: torch.Tensor,
        region_maps: torch.Tensor | None = None,
        boundary_maps: torch.Tensor | None = None,
    ) -> LossBreakdown:
        if not isinstance(output, ClipOutput):
            raise TypeError(f"ClipLoss needs a ClipOutput (a temporal model), got {type(output).__name__}")
        cfg = self.cfg
        logits = output.logits.float()
        clip = F.cross_entropy(logits, labels.long(), label_smoothing=cfg.label_smoothing)
        zero = logits.new_zeros(())
        if not output.frame_loss or cfg.lambda_frame == 0:
            return LossBreakdown(total=cfg.lambda_clip * clip, cls=clip, region=zero, boundary=zero)
        flat = [None if maps is None else maps.flatten(0, 1) for maps in (region_maps, boundary_maps)]
        frame = self.frame_loss(output.frames, labels.repeat_interleave(output.length), *flat)
        return LossBreakdown(total=cfg.lambda_clip * clip + cfg.lambda_frame * frame.total, cls=clip,
                             region=frame.region, boundary=frame.boundary)


def build_criterion(cfg: LossConfig, temporal: bool):
    """The loss of a frame detector (``DetectionLoss``) or of a clip detector (``ClipLoss``)."""
    return ClipLoss(cfg) if temporal else DetectionLoss(cfg)
