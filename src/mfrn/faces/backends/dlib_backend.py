"""dlib backend: HOG face detector + 68-point shape predictor (from ``face-recognition-models``,
CC0), extended to 81 points by extrapolation, or a user's 81-point predictor file.

The HOG detector runs on a copy of the image down-scaled to ``max_side`` pixels (the working size:
far faster on large frames, and a frame of that size loses none of its faces). When that pass finds
no face in a larger image, the search goes on at twice the scale, and twice again, up to the full
resolution (or ``search_side``): a face that is small in a large photo is found at the scale where
it is large enough. Boxes are scaled back to the full image, and the landmarks are always predicted
on the full-resolution image.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from mfrn.faces.base import DETECTORS, LANDMARKERS, FaceDetector, Landmarker
from mfrn.faces.landmarks import extend_to_81, from_dlib81, keypoints_from_landmarks
from mfrn.faces.types import FaceDetection


def _dlib():
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a core dependency
        raise ImportError("the dlib backend needs dlib: pip install dlib-bin") from exc
    return dlib


@functools.lru_cache(maxsize=4)
def _shape_predictor(path: str):
    """One loaded predictor per file and process (the 68-point file is 100 MB: about 1.5 s to load);
    the detector's keypoints and the landmarker share it."""
    return _dlib().shape_predictor(path)


def find_model_file(filename: str) -> Path:
    """Path of a model file shipped in the ``face-recognition-models`` package.

    The package is located with ``importlib.util.find_spec``, never imported (its ``__init__``
    needs ``pkg_resources``, which current setuptools no longer ships).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{filename}: the package face-recognition-models is not installed "
            "(pip install face-recognition-models)"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / filename
        if path.is_file():
            return path
    raise FileNotFoundError(f"{filename} is not in the installed face-recognition-models package")


def _to_rect(dlib, box: np.ndarray):
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x1, y1, x2, y2)


def _shape_to_array(shape) -> np.ndarray:
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


@DETECTORS.register("dlib")
class DlibHogDetector(FaceDetector):
    """dlib's HOG + linear SVM frontal face detector (CPU, no weights to fetch)."""

    name = "dlib"
    working_size_option = "max_side"

    # dlib's HOG window is 80 x 80 px: at upsample 0 it finds faces of about that width and larger
    WINDOW = 80

    def __init__(self, max_side: int = 640, upsample: int | str = "auto", threshold: float = 0.3,
                 model_path: str | Path | None = None, search_side: int | None = None) -> None:
        self._detector = _dlib().get_frontal_face_detector()
        if int(max_side) < 0:
            raise ValueError(f"dlib detector: max_side must be >= 0 (0: full resolution), got {max_side!r}")
        self.max_side = int(max_side)
        # the 68-point predictor behind the 5 keypoints (default: face-recognition-models' file)
        self.model_path = Path(model_path) if model_path else None
        if self.model_path is not None and not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: shape predictor file not found")
        if upsample != "auto" and not (isinstance(upsample, int) and upsample >= 0):
            raise ValueError(f"dlib detector: upsample must be 'auto' or an integer >= 0, got {upsample!r}")
        self.upsample = upsample
        self.threshold = float(threshold)
        if search_side is not None and int(search_side) < 0:
            raise ValueError(f"dlib detector: search_side must be >= 0 or null (full resolution), got {search_side!r}")
        self.search_side = None if search_side is None else int(search_side)
        self._keypoint_predictor = None

    def _run(self, small: np.ndarray):
        if self.upsample != "auto":
            return self._detector.run(small, self.upsample, self.threshold)
        # interpretation: "auto" scans at upsample 0 (4x faster) and again at upsample 1 only when the
        # largest face found is narrower than sqrt(2) windows: then a face with half its area (SBI's
        # keep rule) could be below the window and missed; otherwise nothing kept is lost
        rects, scores, kinds = self._detector.run(small, 0, self.threshold)
        widest = max((r.width() for r in rects), default=0)
        if widest < self.WINDOW * np.sqrt(2.0):
            rects, scores, kinds = self._detector.run(small, 1, self.threshold)
        return rects, scores, kinds

    def search_scales(self, height: int, width: int) -> list[float]:
        """Scales tried in turn until one finds a face: the working size, then x2 steps up to the search limit
        (the full resolution unless ``search_side`` caps it); one scale when the image is within the working size."""
        side = max(height, width)
        first = min(1.0, self.max_side / side) if self.max_side > 0 else 1.0
        limit = 1.0 if self.search_side is None or self.search_side == 0 else min(1.0, self.search_side / side)
        scales = [first]
        # interpretation: x2 steps, the last one snapped to the limit when it would come within sqrt(2) of it
        while scales[-1] * np.sqrt(2.0) < limit:
            scales.append(min(limit, 2.0 * scales[-1]) if 2.0 * scales[-1] * np.sqrt(2.0) < limit else limit)
        return scales

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        height, width = image.shape[:2]
        for level, scale in enumerate(self.search_scales(height, width)):
            small = image if scale == 1.0 else cv2.resize(
                image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
            small = np.ascontiguousarray(small)
            # the larger scales exist to resolve small faces: upsample 0 there (the next scale doubles anyway)
            rects, scores, _ = self._run(small) if level == 0 else self._detector.run(small, 0, self.threshold)
            detections = self._to_detections(image, rects, scores, scale)
            if detections:
                return detections
        return []

    def _to_detections(self, image: np.ndarray, rects, scores, scale: float) -> list[FaceDetection]:
        height, width = image.shape[:2]
        detections = []
        for rect, score in zip(rects, scores):
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float32) / scale
            box[[0, 2]] = np.clip(box[[0, 2]], 0, width - 1)
            box[[1, 3]] = np.clip(box[[1, 3]], 0, height - 1)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            detections.append(FaceDetection(box, float(score), self._keypoints(image, box)))
        return sorted(detections, key=lambda d: d.score, reverse=True)

    def _keypoints(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        # dlib's 5-point model gives eye corners + nose base; we want eye centres, nose, mouth corners,
        # so the 68-point model is used (the same one the landmarker uses; loaded once).
        if self._keypoint_predictor is None:
            path = self.model_path or find_model_file("shape_predictor_68_face_landmarks.dat")
            self._keypoint_predictor = _shape_predictor(str(path))
        shape = self._keypoint_predictor(image, _to_rect(_dlib(), box))
        return keypoints_from_landmarks(_shape_to_array(shape))


@LANDMARKERS.register("dlib")
class DlibLandmarker(Landmarker):
    """68 points from dlib's shape predictor, extended to 81 (see ``landmarks.extend_to_81``)."""

    name = "dlib"
    forehead_source = "extrapolated"

    def __init__(self, model_path: str | Path | None = None) -> None:
        path = Path(model_path) if model_path else find_model_file("shape_predictor_68_face_landmarks.dat")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shape predictor file not found")
        self._predictor = _shape_predictor(str(path))

    def predict(self, image: np.ndarray, detection: FaceDetection) -> np.ndarray:
        shape = self._predictor(image, _to_rect(_dlib(), detection.box))
        points = _shape_to_array(shape)
        if len(points) != 68:
            raise ValueError(f"the shape predictor gave {len(points)} points; the 'dlib' landmarker needs a 68-point model")
        return extend_to_81(points)


@LANDMARKERS.register("dlib81")
class Dlib81Landmarker(Landmarker):
    """A user's 81-point dlib predictor (``shape_predictor_81_face_landmarks.dat``), SBI's order."""

    name = "dlib81"
    forehead_source = "dlib81"

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: 81-point shape predictor file not found")
        self._predictor = _dlib().shape_predictor(str(path))

    def predict(self, image: np.ndarray, detection: FaceDetection) -> np.ndarray:
        points = _shape_to_array(self._predictor(image, _to_rect(_dlib(), detection.box)))
        if len(points) != 81:
            raise ValueError(f"the shape predictor gave {len(points)} points; expected 81")
        return from_dlib81(points)
