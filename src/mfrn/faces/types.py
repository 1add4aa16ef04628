"""Typed results of face analysis. Coordinates are pixels (x, y) in the image they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Order of the five detector keypoints everywhere in mfrn (RetinaFace / MTCNN / SimSwap order),
# as seen in the image: the eye on the image's left first.
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class FaceDetection:
    """One detected face: box ``(x1, y1, x2, y2)``, confidence, five keypoints ``(5, 2)``."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(5, 2)
        self.score = float(self.score)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def keypoint(self, name: str) -> np.ndarray:
        if self.keypoints is None:
            raise ValueError("this detection has no keypoints")
        return self.keypoints[KEYPOINT_NAMES.index(name)]


@dataclass
class Face:
    """A detected face with its landmarks: 81 points (68 iBUG + 13 forehead, see landmarks.py)."""

    detection: FaceDetection
    landmarks: np.ndarray  # (81, 2) float32
    forehead_source: str = "extrapolated"  # "dlib81" when a real 81-point model gave them
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        if self.landmarks.shape != (81, 2):
            raise ValueError(f"expected (81, 2) landmarks, got {self.landmarks.shape}")

    @property
    def box(self) -> np.ndarray:
        return self.detection.box

    @property
    def keypoints(self) -> np.ndarray:
        if self.detection.keypoints is None:
            raise ValueError("face has no keypoints")
        return self.detection.keypoints
