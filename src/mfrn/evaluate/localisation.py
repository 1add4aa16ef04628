"""Localisation: pixel-level AUC / IoU of predicted region maps against ground-truth masks (the
overlays that draw the maps are in ``mfrn.inference.overlays``).

Metrics are accumulated frame by frame into fixed-size histograms (memory does not grow with the
number of frames). The AUC treats scores in one histogram bin as ties, so it equals scikit-learn's
exactly for scores on the bin grid ``k / (n_bins - 1)`` and is within ~1/n_bins otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def binarize_mask(mask: np.ndarray, threshold: int = 128) -> np.ndarray:
    """A ground-truth mask frame (FF++ mask videos: white = manipulated; gray or RGB) -> bool HxW."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.dtype == bool:
        return mask
    return mask >= threshold if mask.dtype == np.uint8 else mask >= 0.5


class LocalisationAccumulator:
    """Feed ``update(region_map, gt_mask)`` per frame, read ``compute()`` at the end."""

    def __init__(self, n_bins: int = 1001) -> None:
        if n_bins < 2:
            raise ValueError("n_bins must be >= 2")
        self.n_bins = n_bins
        self.positive_hist = np.zeros(n_bins, dtype=np.int64)
        self.negative_hist = np.zeros(n_bins, dtype=np.int64)
        self.intersection_05 = 0
        self.union_05 = 0
        self.frame_ious: list[float] = []  # one float per frame: small next to the frames themselves
        self.n_frames = 0

    def update(self, region_map: np.ndarray, gt_mask: np.ndarray) -> None:
        """``region_map``: predicted scores in [0, 1] (resized to the mask if sizes differ); ``gt_mask``: bool."""
        gt = binarize_mask(gt_mask)
        pred = np.asarray(region_map, dtype=np.float32)
        if pred.ndim != 2 or gt.ndim != 2:
            raise ValueError(f"expected 2-D maps, got region {pred.shape} and mask {gt.shape}")
        if pred.shape != gt.shape:
            pred = resize_map(pred, gt.shape)
        pred = np.clip(pred, 0.0, 1.0)
        bins = np.rint(pred * (self.n_bins - 1)).astype(np.int64)
        self.positive_hist += np.bincount(bins[gt], minlength=self.n_bins)
        self.negative_hist += np.bincount(bins[~gt], minlength=self.n_bins)
        flagged = pred >= 0.5
        intersection = int(np.count_nonzero(flagged & gt))
        union = int(np.count_nonzero(flagged | gt))
        self.intersection_05 += intersection
        self.union_05 += union
        if union:
            self.frame_ious.append(intersection / union)
        self.n_frames += 1

    def compute(self) -> LocalisationMetrics:
        pos, neg = self.positive_hist, self.negative_hist
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        nan = float("nan")
        # cumulative counts of pixels flagged at threshold bin t (score bin >= t), t from high to low
        tp = np.cumsum(pos[::-1])[::-1]
        fp = np.cumsum(neg[::-1])[::-1]
        if n_pos and n_neg:
            tpr = np.r_[0, np.cumsum(pos[::-1])] / n_pos  # thresholds from the top bin down
            fpr = np.r_[0, np.cumsum(neg[::-1])] / n_neg
            auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
        else:
            auc = nan
        denom = tp + fp + (n_pos - tp)
        ious = np.divide(tp, denom, out=np.zeros(self.n_bins), where=denom > 0)
        best = int(np.argmax(ious))
        return LocalisationMetrics(
            pixel_auc=auc,
            iou_at_05=self.intersection_05 / self.union_05 if self.union_05 else nan,
            best_iou=float(ious[best]) if n_pos else nan,
            best_threshold=best / (self.n_bins - 1),
            mean_frame_iou_at_05=float(np.mean(self.frame_ious)) if self.frame_ious else nan,
            n_frames=self.n_frames, n_pixels=n_pos + n_neg, n_positive=n_pos,
        )
