"""The video-level test protocol (method.md section 7): frames -> faces -> one score per video."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FACE_AGGREGATIONS = ("max", "mean")
FRAME_AGGREGATIONS = ("mean", "max", "median", "top_k_mean")


@dataclass
class ProtocolConfig:
    """How a video is scored. The defaults are SBI's protocol, which the paper follows."""

    n_frames: int = 32
    min_face_area_ratio: float = 0.5
    face_aggregation: str = "max"
    frame_aggregation: str = "mean"
    top_k: int = 8  # only used by frame_aggregation "top_k_mean"
    no_face_score: float = 0.5
    tta_flip: bool = False  # each face scored by the mean logits of it and its mirror image (calibration too)
    batch_size: int = 32
    # temporal checkpoints (model.temporal): clips of the checkpoint's clip.length frames per video, evenly spaced
    clips_per_video: int = 4

    def __post_init__(self) -> None:
        if self.face_aggregation not in FACE_AGGREGATIONS:
            raise ValueError(f"face_aggregation must be one of {FACE_AGGREGATIONS}, got {self.face_aggregation!r}")
        if self.frame_aggregation not in FRAME_AGGREGATIONS:
            raise ValueError(f"frame_aggregation must be one of {FRAME_AGGREGATIONS}, got {self.frame_aggregation!r}")
        if self.n_frames < 1 or self.top_k < 1 or self.batch_size < 1 or self.clips_per_video < 1:
            raise ValueError("n_frames, top_k, batch_size and clips_per_video must be >= 1")
        if not 0.0 <= self.min_face_area_ratio <= 1.0:
            raise ValueError(f"min_face_area_ratio must be in [0, 1], got {self.min_face_area_ratio}")

    def describe(self) -> str:
        """One line that goes with every reported number."""
        frame_rule = f"top-{self.top_k} mean" if self.frame_aggregation == "top_k_mean" else self.frame_aggregation
        return (
            f"protocol: {self.n_frames} evenly spaced frames/video; faces with area >= "
            f"{self.min_face_area_ratio:g} x largest; {self.face_aggregation} over faces per frame; "
            f"{frame_rule} over frames with a face; no-face video -> {self.no_face_score:g} (counted); "
            f"flip TTA {'on' if self.tta_flip else 'off'}"
        )


@dataclass
class VideoScore:
    """One video's score, and how many of its sampled frames had a face."""

    score: float
    n_frames: int
    n_frames_with_face: int
    no_face: bool
    frame_scores: list[float | None] = field(default_factory=list)  # per sampled frame, None = no face


def keep_large_faces(areas, min_area_ratio: float) -> np.ndarray:
    """Boolean mask of faces whose box area is at least ``min_area_ratio`` x the largest one."""
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if areas.size == 0:
        return np.zeros(0, dtype=bool)
    return areas >= min_area_ratio * areas.max()


def aggregate_faces(face_scores: list[float], cfg: ProtocolConfig) -> float | None:
    """One frame's score from its kept faces' scores; None when the frame has no face."""
    if len(face_scores) == 0:
        return None
    values = np.asarray(face_scores, dtype=np.float64)
    return float(values.max() if cfg.face_aggregation == "max" else values.mean())


def aggregate_frames(frame_scores: list[float], cfg: ProtocolConfig) -> float:
    """One video's score from the scores of its frames that had a face (at least one)."""
    values = np.asarray(frame_scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("aggregate_frames needs at least one frame score")
    if cfg.frame_aggregation == "mean":
        return float(values.mean())
    if cfg.frame_aggregation == "max":
        return float(values.max())
    if cfg.frame_aggregation == "median":
        return float(np.median(values))
    k = min(cfg.top_k, values.size)
    return float(np.sort(values)[-k:].mean())


def aggregate_video(frame_scores: list[list[float]], cfg: ProtocolConfig | None = None) -> VideoScore:
    """``frame_scores[i]`` holds the fake scores of the kept faces in sampled frame i (may be empty).

    Per frame the face aggregation (max by default), then the frame aggregation (mean by default)
    over the frames that had a face. A video without any face gets ``cfg.no_face_score`` and
    ``no_face=True`` so that reports can count it.
    """
    cfg = cfg or ProtocolConfig()
    per_frame = [aggregate_faces(list(faces), cfg) for faces in frame_scores]
    with_face = [s for s in per_frame if s is not None]
    if not with_face:
        return VideoScore(cfg.no_face_score, len(per_frame), 0, True, per_frame)
    return VideoScore(aggregate_frames(with_face, cfg), len(per_frame), len(with_face), False, per_frame)
