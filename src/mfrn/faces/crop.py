"""Face crops shared by training and test (method.md section 1).

Two crops, as in SBI:

* the **landmark crop** around the 68-point box (margins w/2 left and right, h on top, 0.4h at the
  bottom) on which self-blending happens, and
* the **final crop** around the face-detector box, margins w/4 and h/4 per side, each multiplied by
  U(0.2, 0.8) independently in training and by 0.5 at test, resized to ``size`` x ``size``.

A ``CropWindow`` is applied identically to an image, to float maps and to landmarks / boxes, so a
real image and the fake made from it (and the fake's maps) share one window.

Coordinate conventions: landmarks are pixel centres (as in ``mfrn.faces.landmarks``: a left-right
flip maps x -> W - 1 - x); boxes are pixel edges (a flip maps x -> W - x); a window spans the
pixels ``[x0, x1) x [y0, y1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mfrn.faces.landmarks import N68, flip_landmarks


@dataclass
class CropConfig:
    """Margins of SBI's two crops and the output size."""

    size: int = 380
    # landmark crop margins as fractions of the 68-point box's width / height
    landmark_margin_left: float = 0.5
    landmark_margin_right: float = 0.5
    landmark_margin_top: float = 1.0
    landmark_margin_bottom: float = 0.4
    # final crop: base margins per side as fractions of the detector box's width / height ...
    box_margin_x: float = 0.25
    box_margin_y: float = 0.25
    # ... each multiplied by U(train_margin_range) independently per side in training, by test_margin_scale at test
    train_margin_range: tuple[float, float] = (0.2, 0.8)
    test_margin_scale: float = 0.5


@dataclass(frozen=True)
class CropWindow:
    """The pixels ``[x0, x1) x [y0, y1)`` of an image, optionally resized to ``out_width x out_height``."""

    x0: int
    y0: int
    x1: int
    y1: int
    out_width: int | None = None
    out_height: int | None = None

    def __post_init__(self) -> None:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError(f"empty crop window {self}")

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def scale(self) -> tuple[float, float]:
        """Output pixels per input pixel along x and y."""
        sx = (self.out_width or self.width) / self.width
        sy = (self.out_height or self.height) / self.height
        return sx, sy

    def resized(self, size: int | tuple[int, int]) -> "CropWindow":
        """The same pixels resized to ``size`` (int for a square, or (width, height))."""
        w, h = (size, size) if isinstance(size, int) else size
        return CropWindow(self.x0, self.y0, self.x1, self.y1, int(w), int(h))

    def offset(self, dx: int, dy: int) -> "CropWindow":
        """This window expressed in an image whose origin is at (-dx, -dy) of the current one."""
        return CropWindow(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy, self.out_width, self.out_height)

    def image(self, array: np.ndarray) -> np.ndarray:
        """Crop (and resize, bilinear) an image (H, W, C) or a map (H, W) of any dtype."""
        height, width = array.shape[:2]
        if self.x0 < 0 or self.y0 < 0 or self.x1 > width or self.y1 > height:
            raise ValueError(f"crop window {self} exceeds the {width}x{height} array")
        out = array[self.y0 : self.y1, self.x0 : self.x1]
        if self.out_width is not None and self.out_height is not None:
            if (self.out_width, self.out_height) != (self.width, self.height):
                out = cv2.resize(out, (self.out_width, self.out_height), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(out)

    def points(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) pixel-centre points (landmarks, keypoints) into the output."""
        pts = np.asarray(points, dtype=np.float32)
        sx, sy = self.scale
        out = np.empty_like(pts)
        out[:, 0] = (pts[:, 0] - self.x0 + 0.5) * sx - 0.5
        out[:, 1] = (pts[:, 1] - self.y0 + 0.5) * sy - 0.5
        return out

    def box(self, box: np.ndarray) -> np.ndarray:
        """Map an edge-coordinate box ``(x1, y1, x2, y2)`` into the output."""
        b = np.asarray(box, dtype=np.float32).reshape(4)
        sx, sy = self.scale
        return np.array(
            [(b[0] - self.x0) * sx, (b[1] - self.y0) * sy, (b[2] - self.x0) * sx, (b[3] - self.y0) * sy],
            dtype=np.float32,
        )


def _clipped_window(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> CropWindow:
    # interpretation: margins are rounded to whole pixels (floor for the start, ceil for the end), then clipped.
    left = max(int(np.floor(x0)), 0)
    top = max(int(np.floor(y0)), 0)
    right = min(int(np.ceil(x1)), width)
    bottom = min(int(np.ceil(y1)), height)
    if right <= left or bottom <= top:
        raise ValueError(
            f"crop ({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}) lies outside the {width}x{height} image"
        )
    return CropWindow(left, top, right, bottom)


def landmark_crop_window(
    image_shape: tuple[int, ...], landmarks: np.ndarray, cfg: CropConfig | None = None
) -> CropWindow:
    """SBI's landmark crop: the 68-point box with margins w/2 left/right, h top, 0.4h bottom (clipped)."""
    cfg = cfg or CropConfig()
    pts = np.asarray(landmarks, dtype=np.float32)[:N68]
    x_min, y_min = pts.min(axis=0)
    x_max, y_max = pts.max(axis=0)
    w, h = float(x_max - x_min), float(y_max - y_min)
    return _clipped_window(
        x_min - cfg.landmark_margin_left * w,
        y_min - cfg.landmark_margin_top * h,
        x_max + cfg.landmark_margin_right * w,
        y_max + cfg.landmark_margin_bottom * h,
        image_shape[1],
        image_shape[0],
    )


def draw_margin_scales(rng: np.random.Generator, cfg: CropConfig | None = None) -> np.ndarray:
    """The training crop's four margin factors (left, top, right, bottom), each U(train_margin_range)."""
    low, high = (cfg or CropConfig()).train_margin_range
    return rng.uniform(low, high, size=4)


def final_crop_window(
    image_shape: tuple[int, ...],
    box: np.ndarray,
    cfg: CropConfig | None = None,
    rng: np.random.Generator | None = None,
    scales: np.ndarray | None = None,
) -> CropWindow:
    """SBI's final crop around the detector box, resized to ``cfg.size``.

    With ``rng`` (training) each of the four margins is scaled by its own U(train_margin_range)
    (``draw_margin_scales``); ``scales`` gives those four factors instead (one draw for every frame
    of a clip); with neither (test) all are scaled by ``test_margin_scale``.
    """
    cfg = cfg or CropConfig()
    b = np.asarray(box, dtype=np.float32).reshape(4)
    if not np.all(np.isfinite(b)):
        raise ValueError(f"non-finite face box {b.tolist()}")
    w, h = float(b[2] - b[0]), float(b[3] - b[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"empty face box {b.tolist()}")
    if scales is None:
        scales = np.full(4, cfg.test_margin_scale) if rng is None else draw_margin_scales(rng, cfg)
    mx, my = cfg.box_margin_x * w, cfg.box_margin_y * h
    window = _clipped_window(
        b[0] - mx * scales[0],
        b[1] - my * scales[1],
        b[2] + mx * scales[2],
        b[3] + my * scales[3],
        image_shape[1],
        image_shape[0],
    )
    return window.resized(cfg.size)


def box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """The edge-coordinate box around the 68 iBUG points."""
    pts = np.asarray(landmarks, dtype=np.float32)[:N68]
    x_min, y_min = pts.min(axis=0)
    x_max, y_max = pts.max(axis=0)
    return np.array([x_min, y_min, x_max + 1.0, y_max + 1.0], dtype=np.float32)


def test_crop(
    image: np.ndarray,
    box: np.ndarray | None,
    landmarks: np.ndarray | None = None,
    size: int = 380,
    cfg: CropConfig | None = None,
) -> tuple[np.ndarray, CropWindow]:
    """The evaluation crop of a full frame: detector box with margins w/8, h/8 per side, resized.

    ``box`` is the detector box (x1, y1, x2, y2); when it is None the box around the 68 landmarks is
    used instead. Returns the crop (size x size) and its window (``window.points(landmarks)`` maps
    landmarks into the crop).
    """
    if box is None:
        if landmarks is None:
            raise ValueError("test_crop needs a face box or landmarks")
        box = box_from_landmarks(landmarks)
    base = cfg or CropConfig()
    cfg = CropConfig(**{**base.__dict__, "size": size})
    window = final_crop_window(image.shape, box, cfg, rng=None)
    return window.image(image), window


test_crop.__test__ = False  # a library function, not a pytest test


def hflip(array: np.ndarray) -> np.ndarray:
    """Mirror an image (H, W, C) or a map (H, W) left-right."""
    return np.ascontiguousarray(array[:, ::-1])


def flip_box(box: np.ndarray, width: int) -> np.ndarray:
    """Mirror an edge-coordinate box for an image of ``width`` pixels: x -> width - x."""
    b = np.asarray(box, dtype=np.float32).reshape(4)
    return np.array([width - b[2], b[1], width - b[0], b[3]], dtype=np.float32)


def flip_face(
    image: np.ndarray, landmarks: np.ndarray, box: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror an image with its landmarks (index permutation included) and its box."""
    width = image.shape[1]
    return hflip(image), flip_landmarks(landmarks, width), flip_box(box, width)
