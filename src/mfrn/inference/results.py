"""What the inference core returns, and the one result schema every writer and the server emit.

A file is ``ok`` (scored) or ``failed`` (could not be read, with the reason). An ``ok`` file's
verdict is one of ``real | fake | no_face``: a file in which no sampled frame shows a face has no
score (``None``) and the label ``no_face``; it is never counted as fake. (The evaluation protocol's
no-face score, 0.5 by default, is kept separately in ``protocol_score`` for AUCs.)

``result_record(result)`` is the only function that turns a result into JSON: per file, per frame,
per face, with ``schema`` and ``schema_version`` fields. Bump ``RESULT_SCHEMA_VERSION`` with any
change a reader of the JSON would notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

RESULT_SCHEMA = "mfrn-media-result"
RESULT_SCHEMA_VERSION = 2  # 2: "temporal" (a temporal checkpoint's clip scores, else null) and "timeline" (a plot)

REAL, FAKE, NO_FACE = "real", "fake", "no_face"
LABELS = (REAL, FAKE, NO_FACE)
OK, FAILED = "ok", "failed"


def verdict(score: float | None, threshold: float) -> str:
    """``no_face`` without a score, else ``fake`` when ``score >= threshold``, else ``real``."""
    if score is None:
        return NO_FACE
    return FAKE if score >= threshold else REAL


@dataclass
class FaceScore:
    box: list[float]  # x0, y0, x1, y1 of the detector box in the frame
    score: float  # P(fake), temperature-scaled when the checkpoint's calibration has a temperature
    region_map: np.ndarray | None = None  # (S, S) probabilities on the face crop, or None
    boundary_map: np.ndarray | None = None
    crop_window: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of the crop in the frame


@dataclass
class FrameResult:
    index: int  # the frame's index in the video (0 for an image)
    faces: list[FaceScore] = field(default_factory=list)
    time: float | None = None  # seconds from the start, where the container says
    score: float | None = None  # the protocol's face aggregation over ``faces``; None: no face (set by aggregation)


@dataclass
class MediaResult:
    """A verdict for one image or video: P(fake), per frame and per face (or why it failed)."""

    path: str
    kind: str | None  # "image" | "video"; None when the file could not be opened
    score: float | None  # P(fake) of the file by the protocol; None when no face was found or it failed
    frames: list[FrameResult]
    n_frames: int  # sampled frames that decoded
    n_frames_with_face: int
    threshold: float  # the verdict threshold the label uses
    protocol: str  # the protocol's one-line description
    threshold_rule: str = ""
    status: str = OK
    error: str | None = None  # why a failed file failed
    warning: str | None = None  # a scored file's caveat (for example: only part of a video decoded)
    protocol_score: float | None = None  # what the evaluation protocol counts (no face -> its no-face score)
    overlay: str | None = None  # the overlay file written for it, if any
    temporal: Any = None  # a temporal checkpoint's ``TemporalResult`` (clips and their scores), else None
    timeline: str | None = None  # the timeline plot written for a video (frame scores, clip scores), if any

    @classmethod
    def failed(cls, path: str, reason: str, threshold: float, protocol: str, threshold_rule: str = "",
               kind: str | None = None) -> "MediaResult":
        return cls(path=path, kind=kind, score=None, frames=[], n_frames=0, n_frames_with_face=0,
                   threshold=threshold, protocol=protocol, threshold_rule=threshold_rule, status=FAILED, error=reason)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def no_face(self) -> bool:
        return self.ok and self.n_frames_with_face == 0

    @property
    def label(self) -> str | None:
        """``real | fake | no_face``; None for a failed file."""
        return verdict(self.score, self.threshold) if self.ok else None

    def to_json(self) -> dict[str, Any]:
        return result_record(self)


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def result_record(result: MediaResult) -> dict[str, Any]:
    """The result JSON of one file (schema ``mfrn-media-result``, version ``RESULT_SCHEMA_VERSION``)."""
    threshold = float(result.threshold)
    return {
        "schema": RESULT_SCHEMA,
        "schema_version": RESULT_SCHEMA_VERSION,
        "path": result.path,
        "kind": result.kind,
        "status": result.status,
        "label": result.label,
        "score": _number(result.score),
        "threshold": threshold,
        "threshold_rule": result.threshold_rule,
        "no_face": result.no_face,
        "n_frames": int(result.n_frames),
        "n_frames_with_face": int(result.n_frames_with_face),
        "warning": result.warning,
        "error": result.error,
        "protocol": result.protocol,
        "overlay": result.overlay,
        "temporal": result.temporal.to_json() if result.temporal is not None else None,
        "timeline": result.timeline,
        "frames": [
            {
                "index": int(frame.index),
                "time": _number(frame.time),
                "score": _number(frame.score),
                "label": verdict(frame.score, threshold),
                "faces": [
                    {"box": [float(v) for v in face.box], "score": float(face.score),
                     "label": verdict(face.score, threshold)}
                    for face in frame.faces
                ],
            }
            for frame in result.frames
        ],
    }
