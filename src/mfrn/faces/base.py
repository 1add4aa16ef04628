"""One interface for face analysis: detector -> boxes, scores, 5 keypoints; landmarker -> 81 points.

Backends register themselves by name; ``build_detector(name)`` / ``build_landmarker(name)`` import
the backend module lazily, so an optional backend (mtcnn, retinaface) never breaks the core; the
registries know every name before its module is imported.
Images are RGB ``uint8`` arrays of shape (H, W, 3) everywhere in mfrn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from mfrn.faces.types import Face, FaceDetection
from mfrn.registry import Registry

# optional backends register themselves when their module is imported, on the first use of their name
DETECTORS: Registry["FaceDetector"] = Registry("face detector", lazy={
    "dlib": "mfrn.faces.backends.dlib_backend",
    "mtcnn": "mfrn.faces.backends.mtcnn",
    "retinaface": "mfrn.faces.backends.retinaface",
})
LANDMARKERS: Registry["Landmarker"] = Registry("landmarker", lazy={
    "dlib": "mfrn.faces.backends.dlib_backend",
    "dlib81": "mfrn.faces.backends.dlib_backend",
})


class FaceDetector(ABC):
    """Finds faces: boxes, scores and (where the backend has them) five keypoints."""

    name: str = "detector"
    # the constructor option that sets the long side of the copy the detector looks at (None: no such size)
    working_size_option: str | None = None

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in one RGB uint8 image, highest score first."""

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """Faces in several images; batched backends override this."""
        return [self.detect(image) for image in images]


class Landmarker(ABC):
    """Predicts 81 landmarks (see ``mfrn.faces.landmarks``) for a detected face."""

    name: str = "landmarker"
    forehead_source: str = "extrapolated"

    @abstractmethod
    def predict(self, image: np.ndarray, detection: FaceDetection) -> np.ndarray:
        """(81, 2) float32 landmarks in image pixels."""


def build_detector(name: str, **kwargs) -> FaceDetector:
    return _build(DETECTORS, name, kwargs)


def build_landmarker(name: str, **kwargs) -> Landmarker:
    return _build(LANDMARKERS, name, kwargs)


def detector_options(name: str) -> list[str]:
    """The keyword options the detector backend ``name`` takes (its constructor's parameters)."""
    return _options(DETECTORS.get(name))


def _options(factory) -> list[str]:
    import inspect

    parameters = inspect.signature(factory).parameters.values()
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _build(registry: Registry, name: str, kwargs: dict):
    """Build a backend; an option it does not take is a one-line ``ValueError`` that lists the ones it does."""
    factory = registry.get(name)
    accepted = _options(factory)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{registry.kind} {name!r} takes no option {', '.join(map(repr, unknown))} "
                         f"(its options: {', '.join(accepted) or 'none'})")
    return factory(**kwargs)


def keep_large_faces(detections: list[FaceDetection], min_area_ratio: float = 0.5) -> list[FaceDetection]:
    """SBI's rule: keep faces whose box area is at least ``min_area_ratio`` of the largest one."""
    if not detections:
        return []
    largest = max(d.area for d in detections)
    kept = [d for d in detections if d.area >= min_area_ratio * largest]
    return sorted(kept, key=lambda d: d.area, reverse=True)


class FaceAnalyzer:
    """Detector + landmarker + SBI's keep rule: image -> list of ``Face``."""

    def __init__(self, detector: FaceDetector, landmarker: Landmarker, min_area_ratio: float = 0.5) -> None:
        self.detector = detector
        self.landmarker = landmarker
        self.min_area_ratio = min_area_ratio

    @classmethod
    def from_names(
        cls,
        detector: str = "dlib",
        landmarker: str = "dlib",
        min_area_ratio: float = 0.5,
        detector_kwargs: dict | None = None,
        landmarker_kwargs: dict | None = None,
    ) -> "FaceAnalyzer":
        return cls(
            build_detector(detector, **(detector_kwargs or {})),
            build_landmarker(landmarker, **(landmarker_kwargs or {})),
            min_area_ratio,
        )

    def _faces(self, image: np.ndarray, detections: list[FaceDetection]) -> list[Face]:
        faces = []
        for det in keep_large_faces(detections, self.min_area_ratio):
            landmarks = self.landmarker.predict(image, det)
            if det.keypoints is None:
                from mfrn.faces.landmarks import keypoints_from_landmarks

                det = FaceDetection(det.box, det.score, keypoints_from_landmarks(landmarks))
            faces.append(Face(det, landmarks, forehead_source=self.landmarker.forehead_source))
        return faces

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self._faces(image, self.detector.detect(image))

    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        batches = self.detector.detect_batch(images)
        return [self._faces(image, dets) for image, dets in zip(images, batches)]
