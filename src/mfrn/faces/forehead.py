"""How far the extrapolated forehead (``landmarks.extend_to_81``) falls from an 81-point model's.

SBI takes the 13 forehead points from dlib's 81-point predictor; mfrn's offline default extrapolates
them from the 68 points. On one face, the 68 points of the 81-point prediction are extended by the
extrapolation and each of the 13 forehead points is compared with the model's own, as a distance in
units of the inter-ocular distance (outer eye corners, points 36 and 45, as in the 300-W benchmark).
The hull of jaw + brows + forehead (SBI's dfl_full mask with 81 points) is compared as an IoU, since
that is what the gap changes in training.
``benchmarks/bench_forehead.py`` runs this over media with a user's predictor file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mfrn.faces.landmarks import BROWS, FOREHEAD, JAW, N81, extend_to_81

HULL = JAW + BROWS + FOREHEAD


@dataclass
class FaceForeheadGap:
    distances: np.ndarray  # (13,) per forehead point, in inter-ocular distances
    inter_ocular: float  # pixels
    hull_iou: float  # jaw + brows + forehead hull, extrapolated vs model


@dataclass
class ForeheadGapReport:
    n_faces: int
    mean: float  # over every forehead point of every face, in inter-ocular distances
    max: float
    per_point_mean: list[float]  # 13 values, along the arc from the jaw-point-0 side
    mean_hull_iou: float
    min_hull_iou: float

    def format(self) -> str:
        if self.n_faces == 0:
            return "forehead gap: no face measured"
        points = " ".join(f"{v:.3f}" for v in self.per_point_mean)
        return (f"forehead gap over {self.n_faces} faces (extrapolated vs 81-point model, in inter-ocular distances): "
                f"mean {self.mean:.3f}, max {self.max:.3f}; per point {points}; hull IoU (jaw + brows + forehead) "
                f"mean {self.mean_hull_iou:.3f}, min {self.min_hull_iou:.3f}")


def _hull_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the filled convex hulls of two point sets (coordinates truncated, as SBI fills masks)."""
    points = np.concatenate([a, b])
    origin = np.floor(points.min(axis=0)) - 1
    size = np.ceil(points.max(axis=0) - origin).astype(int) + 2
    masks = []
    for pts in (a, b):
        mask = np.zeros((size[1], size[0]), np.uint8)
        hull = cv2.convexHull((pts - origin).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
        masks.append(mask.astype(bool))
    union = np.logical_or(*masks).sum()
    return float(np.logical_and(*masks).sum() / union) if union else 0.0


def forehead_gap(model81: np.ndarray) -> FaceForeheadGap:
    """Compare one 81-point prediction (mfrn/SBI order, ``landmarks.from_dlib81``) with the
    extrapolation from its own 68 points."""
    model81 = np.asarray(model81, dtype=np.float32)
    if model81.shape != (N81, 2):
        raise ValueError(f"expected (81, 2) landmarks from an 81-point model, got {model81.shape}")
    inter_ocular = float(np.linalg.norm(model81[45] - model81[36]))
    if inter_ocular < 1e-6:
        raise ValueError("degenerate landmarks: the outer eye corners (36, 45) coincide")
    extrapolated = extend_to_81(model81[:68])
    distances = np.linalg.norm(extrapolated[68:] - model81[68:], axis=1) / inter_ocular
    return FaceForeheadGap(distances, inter_ocular, _hull_iou(extrapolated[list(HULL)], model81[list(HULL)]))


def summarize_gaps(gaps: Sequence[FaceForeheadGap]) -> ForeheadGapReport:
    if not gaps:
        return ForeheadGapReport(0, float("nan"), float("nan"), [float("nan")] * len(FOREHEAD), float("nan"), float("nan"))
    distances = np.stack([g.distances for g in gaps])
    ious = np.array([g.hull_iou for g in gaps])
    return ForeheadGapReport(len(gaps), float(distances.mean()), float(distances.max()),
                             [float(v) for v in distances.mean(axis=0)], float(ious.mean()), float(ious.min()))
