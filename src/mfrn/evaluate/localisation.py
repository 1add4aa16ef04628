"""Localisation: pixel-level AUC / IoU of predicted region maps against ground-truth masks (the
overlays that draw the maps are in ``mfrn.inference.overlays``).

Metrics are accumulated frame by frame into fixed-size histograms (memory does not grow with the
number of frames). The AUC treats scores in one histogram bin as ties, so it equals scikit-learn's
exactly for scores on the bin grid ``k / (n_bins - 1)`` and is within ~1/n_bins otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfrn.calibration import PixelHistogram
from mfrn.inference.overlays import resize_map


@dataclass
class LocalisationMetrics:
    pixel_auc: float
    iou_at_05: float  # dataset-level: all frames' pixels pooled
    best_iou: float  # dataset-level IoU at the best threshold (an oracle upper bound)
    best_threshold: float
    mean_frame_iou_at_05: float  # mean over frames whose mask or prediction is non-empty
    n_frames: int
    n_pixels: int
    n_positive: int
    # the checkpoint's calibrated pixel threshold (learned on validation fakes) and the pooled IoU at it
    pixel_threshold: float | None = None
    iou_at_pixel_threshold: float | None = None

    def format(self) -> str:
        text = f"pixel AUC {self.pixel_auc:.4f}, IoU@0.5 {self.iou_at_05:.4f}"
        if self.pixel_threshold is not None:
            text += f", IoU {self.iou_at_pixel_threshold:.4f} at the calibrated pixel threshold {self.pixel_threshold:.3g}"
        else:
            text += " (the checkpoint stores no pixel threshold)"
        return (f"{text}; oracle (best threshold on these frames, {self.best_threshold:.3g}): IoU {self.best_iou:.4f}; "
                f"{self.n_frames} frames")


def binarize_mask(mask: np.ndarray, threshold: int = 128) -> np.ndarray:
    """A ground-truth mask frame (FF++ mask videos: white = manipulated; gray or RGB) -> bool HxW."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.dtype == bool:
        return mask
    return mask >= threshold if mask.dtype == np.uint8 else mask >= 0.5


class LocalisationAccumulator:
    """Feed ``update(region_map, gt_mask)`` per frame, read ``compute()`` at the end.

    ``pixel_threshold``: the checkpoint's calibrated region threshold, reported beside 0.5."""

    def __init__(self, n_bins: int = 1001, pixel_threshold: float | None = None) -> None:
        self.histogram = PixelHistogram(n_bins)
        self.pixel_threshold = pixel_threshold
        self.intersection_05 = 0
        self.union_05 = 0
        self.frame_ious: list[float] = []  # one float per frame: small next to the frames themselves
        self.n_frames = 0

    @property
    def n_bins(self) -> int:
        return self.histogram.n_bins

    @property
    def positive_hist(self) -> np.ndarray:
        return self.histogram.positive

    @property
    def negative_hist(self) -> np.ndarray:
        return self.histogram.negative

    def update(self, region_map: np.ndarray, gt_mask: np.ndarray) -> None:
        """``region_map``: predicted scores in [0, 1] (resized to the mask if sizes differ); ``gt_mask``: bool."""
        gt = binarize_mask(gt_mask)
        pred = np.asarray(region_map, dtype=np.float32)
        if pred.ndim != 2 or gt.ndim != 2:
            raise ValueError(f"expected 2-D maps, got region {pred.shape} and mask {gt.shape}")
        if pred.shape != gt.shape:
            pred = resize_map(pred, gt.shape)
        pred = np.clip(pred, 0.0, 1.0)
        self.histogram.update(pred, gt)
        flagged = pred >= 0.5
        intersection = int(np.count_nonzero(flagged & gt))
        union = int(np.count_nonzero(flagged | gt))
        self.intersection_05 += intersection
        self.union_05 += union
        if union:
            self.frame_ious.append(intersection / union)
        self.n_frames += 1

    def compute(self) -> LocalisationMetrics:
        histogram = self.histogram
        nan = float("nan")
        best_threshold, best_iou = histogram.best("iou")
        at_calibrated = None
        if self.pixel_threshold is not None:
            at_calibrated = histogram.iou_at(self.pixel_threshold)
        return LocalisationMetrics(
            pixel_auc=histogram.auc(),
            iou_at_05=self.intersection_05 / self.union_05 if self.union_05 else nan,
            best_iou=best_iou,
            best_threshold=0.0 if np.isnan(best_threshold) else best_threshold,
            mean_frame_iou_at_05=float(np.mean(self.frame_ious)) if self.frame_ious else nan,
            n_frames=self.n_frames, n_pixels=histogram.n_pixels, n_positive=histogram.n_positive,
            pixel_threshold=self.pixel_threshold, iou_at_pixel_threshold=at_calibrated,
        )
