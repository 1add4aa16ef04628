"""Blending masks for SBI / RBI (method.md section 2, steps 2, 4, 5, and section 4).

* ``hull_mask``: Face X-ray's four hull variants as float32 0/1 masks.
* ``random_affine``: the same random affine on the source image and the mask.
* ``elastic_deform``: elastic deformation of the mask only.
* ``soft_mask``: the two-stage blur that turns the hull into M~ (1 inside, soft edge, in [0, 1]).
* ``boundary_map``: Face X-ray's blending boundary 4 * M~ * (1 - M~).

All randomness comes from a ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mfrn.faces.landmarks import BROWS, JAW, LEFT_EYE, MOUTH, N68, NOSE, RIGHT_EYE

MASK_TYPES = ("dfl_full", "extended", "components", "facehull")


class SynthesisError(ValueError):
    """A sample cannot be synthesised; the message says why."""


@dataclass
class MaskConfig:
    """Geometry and blur of the blending mask (defaults: method.md section 2)."""

    # interpretation: Face X-ray's "extended" hull lifts the brow points along the face's up axis by
    # this fraction of the brow-to-chin distance.
    extended_lift: float = 0.2
    # step 4: random affine of source and mask
    translate_x: float = 0.03  # fraction of the width, +-
    translate_y: float = 0.015  # fraction of the height, +-
    scale_range: tuple[float, float] = (0.95, 1 / 0.95)
    # step 4: elastic deformation of the mask only
    elastic_alpha: float = 50.0
    elastic_sigma: float = 7.0
    # interpretation: for speed the elastic field is drawn at a grid of at most this many pixels a side
    # (near step 5's 192..256), with sigma and alpha rescaled so displacements keep their size in image
    # pixels; 0 deforms at full resolution.
    elastic_work_size: int = 256
    # step 5: two-stage blur
    blur_size_range: tuple[int, int] = (192, 256)  # random (w, h) the mask is resized to, inclusive
    blur_kernel1_range: tuple[int, int] = (5, 25)  # odd kernel sizes, inclusive
    blur_kernel2_range: tuple[int, int] = (5, 25)
    blur_sigma2_range: tuple[float, float] = (5.0, 45.0)
    # input checks
    min_face_size: float = 32.0  # smallest side of the 68-point box, pixels
    landmark_tolerance: float = 0.1  # how far (fraction of the face size) the 68 points may lie outside the image
    forehead_tolerance: float = 1.0  # the same for the 13 forehead points, which may leave a loose crop legitimately


def validate_landmarks(
    landmarks: np.ndarray, image_shape: tuple[int, ...], cfg: MaskConfig | None = None
) -> np.ndarray:
    """Check landmarks against the image; return them as float32 or raise ``SynthesisError``."""
    cfg = cfg or MaskConfig()
    pts = np.asarray(landmarks, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] not in (68, 81):
        raise SynthesisError(f"landmarks must be (68, 2) or (81, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise SynthesisError("landmarks contain NaN or infinite values")
    core = pts[:N68]
    size = core.max(axis=0) - core.min(axis=0)
    if float(size.min()) < cfg.min_face_size:
        raise SynthesisError(
            f"face too small: the 68-point box is {size[0]:.1f}x{size[1]:.1f} px, "
            f"the minimum side is {cfg.min_face_size:g} px"
        )
    if cv2.contourArea(cv2.convexHull(core)) < 1.0:
        raise SynthesisError("degenerate landmarks: the 68 points are collinear (their hull has zero area)")
    height, width = image_shape[:2]
    face = float(size.max())
    for name, group, tol in (("68", core, cfg.landmark_tolerance), ("forehead", pts[N68:], cfg.forehead_tolerance)):
        if len(group) == 0:
            continue
        slack = tol * face
        outside = (
            (group[:, 0] < -slack)
            | (group[:, 0] > width - 1 + slack)
            | (group[:, 1] < -slack)
            | (group[:, 1] > height - 1 + slack)
        )
        if outside.any():
            worst = group[outside][0]
            raise SynthesisError(
                f"{int(outside.sum())} {name} landmark(s) lie outside the {width}x{height} image by more than "
                f"{slack:.1f} px (e.g. at ({worst[0]:.1f}, {worst[1]:.1f})): are they in this image's coordinates?"
            )
    return pts


def _extended_points(pts: np.ndarray, lift: float) -> np.ndarray:
    jaw = pts[list(JAW)]
    brows = pts[list(BROWS)].copy()
    across = pts[16] - pts[0]
    norm = float(np.linalg.norm(across))
    if norm < 1e-6:
        raise SynthesisError("degenerate landmarks: jaw points 0 and 16 coincide")
    right = across / norm
    up = np.array([right[1], -right[0]], dtype=np.float32)
    face_height = float(np.linalg.norm(brows.mean(axis=0) - pts[8]))
    brows += lift * face_height * up[None, :]
    return np.concatenate([jaw, brows])


def hull_groups(landmarks: np.ndarray, mask_type: str, extended_lift: float = 0.2) -> list[np.ndarray]:
    """Point sets whose filled convex hulls make up the mask of ``mask_type``."""
    pts = np.asarray(landmarks, dtype=np.float32)
    if mask_type == "dfl_full":
        return [pts[list(JAW) + list(BROWS)]]
    if mask_type == "extended":
        return [_extended_points(pts, extended_lift)]
    if mask_type == "components":
        # interpretation: four parts, each eye with its brow, the nose, the outer mouth.
        return [
            pts[list(range(17, 22)) + list(RIGHT_EYE)],
            pts[list(range(22, 27)) + list(LEFT_EYE)],
            pts[list(NOSE)],
            pts[list(MOUTH[:12])],
        ]
    if mask_type == "facehull":
        return [pts]
    raise SynthesisError(f"unknown mask type {mask_type!r}; known: {', '.join(MASK_TYPES)}")


def hull_mask(
    landmarks: np.ndarray, shape: tuple[int, ...], mask_type: str, extended_lift: float = 0.2
) -> np.ndarray:
    """A float32 (H, W) mask, 1 inside the hull(s) of ``mask_type``, 0 outside."""
    mask = np.zeros(shape[:2], dtype=np.float32)
    total_area = 0.0
    for group in hull_groups(landmarks, mask_type, extended_lift):
        hull = cv2.convexHull(np.round(group).astype(np.int32))
        total_area += cv2.contourArea(hull)
        cv2.fillConvexPoly(mask, hull, 1.0)
    if total_area < 1.0 or not mask.any():
        raise SynthesisError(f"degenerate {mask_type} hull: zero area (collinear or coincident landmarks)")
    return mask


def random_affine(
    source: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: MaskConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The same random translation + scale (about the centre) of the source image and its mask."""
    cfg = cfg or MaskConfig()
    height, width = mask.shape[:2]
    tx = rng.uniform(-cfg.translate_x, cfg.translate_x) * width
    ty = rng.uniform(-cfg.translate_y, cfg.translate_y) * height
    s = rng.uniform(*cfg.scale_range)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    matrix = np.array([[s, 0.0, cx - s * cx + tx], [0.0, s, cy - s * cy + ty]], dtype=np.float64)
    size = (width, height)
    warped_source = cv2.warpAffine(source, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    warped_mask = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return warped_source, warped_mask


def elastic_deform(mask: np.ndarray, rng: np.random.Generator, alpha: float = 50.0, sigma: float = 7.0) -> np.ndarray:
    """Elastic deformation: displacement = alpha * Gaussian(sigma)-smoothed U(-1, 1) noise, per axis."""
    height, width = mask.shape[:2]
    noise = rng.random((2, height, width), dtype=np.float32) * 2.0 - 1.0
    dx = cv2.GaussianBlur(noise[0], (0, 0), sigma) * alpha
    dy = cv2.GaussianBlur(noise[1], (0, 0), sigma) * alpha
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(mask, grid_x + dx, grid_y + dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def deform_mask(mask: np.ndarray, rng: np.random.Generator, cfg: MaskConfig | None = None) -> np.ndarray:
    """Step 4's elastic deformation of the mask, on a grid of at most ``cfg.elastic_work_size`` a side.

    Returns the deformed mask at that (possibly smaller) size; ``soft_mask`` resizes it anyway.
    """
    cfg = cfg or MaskConfig()
    height, width = mask.shape[:2]
    factor = max(height, width) / cfg.elastic_work_size if cfg.elastic_work_size > 0 else 1.0
    if factor <= 1.0:
        return elastic_deform(mask, rng, cfg.elastic_alpha, cfg.elastic_sigma)
    small = cv2.resize(
        mask, (max(round(width / factor), 1), max(round(height / factor), 1)), interpolation=cv2.INTER_AREA
    )
    # white noise smoothed by sigma / f has f times the amplitude of noise smoothed by sigma, and a
    # displacement of d image pixels is d / f grid pixels: hence alpha / f^2
    return elastic_deform(small, rng, cfg.elastic_alpha / factor**2, cfg.elastic_sigma / factor)


def _odd_kernel(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    low, high = int(bounds[0]), int(bounds[1])
    choices = np.arange(low + (1 - low % 2), high + 1, 2)
    if len(choices) == 0:
        raise ValueError(f"no odd kernel size in {bounds}")
    return int(rng.choice(choices))


def soft_mask(
    mask: np.ndarray,
    rng: np.random.Generator,
    cfg: MaskConfig | None = None,
    out_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Step 5: M~ in [0, 1] from a (deformed) hull mask: 1 in the inner core, soft edge outside.

    The result has ``out_shape`` (H, W) when given, else the mask's own shape.
    """
    cfg = cfg or MaskConfig()
    height, width = (out_shape or mask.shape)[:2]
    low, high = cfg.blur_size_range
    small_w, small_h = int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))
    k1 = _odd_kernel(rng, cfg.blur_kernel1_range)
    k2 = _odd_kernel(rng, cfg.blur_kernel2_range)
    sigma2 = float(rng.uniform(*cfg.blur_sigma2_range))
    small = cv2.resize(mask.astype(np.float32, copy=False), (small_w, small_h), interpolation=cv2.INTER_LINEAR)
    small = cv2.GaussianBlur(small, (k1, k1), 0)
    peak = float(small.max())
    if peak <= 0.0:
        raise SynthesisError("the blending mask vanished (it moved out of the image or is too thin)")
    small /= peak
    # interpretation: "every value < 1" with a float32 tolerance, so rounding cannot punch holes in the core.
    small[small < 1.0 - 1e-5] = 0.0
    small = cv2.GaussianBlur(small, (k2, k2), sigma2)
    small /= float(small.max())
    out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0, out=out)


def boundary_map(mask_tilde: np.ndarray) -> np.ndarray:
    """Face X-ray's blending boundary B = 4 * M~ * (1 - M~): 1 where M~ = 0.5, 0 where M~ is 0 or 1."""
    m = np.asarray(mask_tilde, dtype=np.float32)
    return 4.0 * m * (1.0 - m)
