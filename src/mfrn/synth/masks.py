"""Blending masks for SBI / RBI (method.md section 2, steps 2, 4, 5, and section 4).

* ``hull_mask``: Face X-ray's four hull variants as float32 0/1 masks.
* ``random_affine``: the same random affine on the source image and the mask.
* ``elastic_deform``: elastic deformation of the mask only.
* ``soft_mask``: the two-stage blur that turns the hull into M~ (1 inside, soft edge, in [0, 1]).
* ``boundary_map``: Face X-ray's blending boundary 4 * M~ * (1 - M~).

All randomness comes from a ``numpy.random.Generator`` passed in. Each random step is split into a
``draw_*`` function (the random parameters, as a small dataclass) and an ``apply_*`` one (no
randomness), so one face's parameters can be drawn once and then moved a little from frame to frame
of a clip (``mfrn.synth.clips``); ``random_affine``, ``deform_mask`` and ``soft_mask`` are draw + apply
and consume the generator exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from mfrn.faces.landmarks import BROWS, JAW, LEFT_EYE, MOUTH, N68, NOSE, RIGHT_EYE

MASK_TYPES = ("dfl_full", "extended", "components", "facehull")


class SynthesisError(ValueError):
    """A sample cannot be synthesised; the message says why."""


@dataclass
class MaskConfig:
    """Geometry and blur of the blending mask (defaults: method.md section 2)."""

    # step 2, "extended": each brow point moves away from its matching upper-eyelid point by this
    # fraction of their distance (Face X-ray / SBI: half); extended_reference "chin" is the project's
    # former rule instead: along the face's up axis by this fraction of the brow-to-chin distance (0.2).
    extended_lift: float = 0.5
    extended_reference: str = "eyelid"  # "eyelid" (SBI) | "chin"
    # step 2, "components": "union8" = Face X-ray's union of eight hulls through the chin (SBI);
    # "parts" = the project's former separate eye+brow / nose / mouth parts.
    components_style: str = "union8"
    # step 2: landmark coordinates are truncated to integers before filling (SBI); False rounds them
    truncate_coordinates: bool = True
    # step 2: Face X-ray's dfl_full reads only the 68 points (jaw, mouth, brows), so SBI's forehead reaches
    # its masks through facehull; True adds the 13 forehead points to dfl_full when 81 are given
    # (interpretation: method.md's "+ forehead" wording; the library's definition is the default)
    dfl_full_forehead: bool = False
    # step 4: random affine of source and mask
    translate_x: float = 0.03  # fraction of the width, +-
    translate_y: float = 0.015  # fraction of the height, +-
    scale_range: tuple[float, float] = (0.95, 1 / 0.95)
    # SBI draws the x and y scales independently (the aspect ratio changes too); True draws one for both
    isotropic_scale: bool = False
    # step 4: elastic deformation of the mask only
    elastic_alpha: float = 50.0
    elastic_sigma: float = 7.0
    # interpretation: for speed the elastic field is drawn at a grid of at most this many pixels a side
    # (near step 5's 192..256), with sigma and alpha rescaled so displacements keep their size in image
    # pixels; 0 deforms at full resolution.
    elastic_work_size: int = 256
    # interpretation: for speed the smooth displacement field is drawn every `step` pixels and
    # interpolated (same statistics, see elastic_field); 0 = auto (sigma // 2 at the working grid), 1 = every pixel
    elastic_field_step: int = 0
    # step 5: two-stage blur
    blur_size_range: tuple[int, int] = (192, 256)  # random (w, h) the mask is resized to, inclusive
    blur_kernel1_range: tuple[int, int] = (5, 25)  # odd kernel sizes, inclusive
    blur_kernel2_range: tuple[int, int] = (5, 25)
    blur_sigma2_range: tuple[float, float] = (5.0, 45.0)
    # input checks
    min_face_size: float = 32.0  # smallest side of the 68-point box, pixels
    landmark_tolerance: float = 0.1  # how far (fraction of the face size) the 68 points may lie outside the image
    forehead_tolerance: float = 1.0  # the same for the 13 forehead points, which may leave a loose crop legitimately

    def __post_init__(self) -> None:
        if self.extended_reference not in ("eyelid", "chin"):
            raise ValueError(f"mask.extended_reference must be eyelid or chin, got {self.extended_reference!r}")
        if self.components_style not in ("union8", "parts"):
            raise ValueError(f"mask.components_style must be union8 or parts, got {self.components_style!r}")


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


def _lift_along_face_axis(pts: np.ndarray, lift: float) -> np.ndarray:
    """The former rule: brows moved along the face's up axis by ``lift`` x the brow-to-chin distance."""
    brows = pts[list(BROWS)].copy()
    across = pts[16] - pts[0]
    norm = float(np.linalg.norm(across))
    if norm < 1e-6:
        raise SynthesisError("degenerate landmarks: jaw points 0 and 16 coincide")
    right = across / norm
    up = np.array([right[1], -right[0]], dtype=np.float32)
    face_height = float(np.linalg.norm(brows.mean(axis=0) - pts[8]))
    return brows + lift * face_height * up[None, :]


def _lift_from_eyelids(pts: np.ndarray, lift: float) -> np.ndarray:
    """Face X-ray's "extended": each brow point moved away from its upper-eyelid partner by ``lift`` x
    their distance. A side has five brow points and four eyelid points (corner, two upper-lid points,
    corner); the outermost brow point pairs with a point a quarter of the way from the outer eye
    corner to the jaw end (interpretation of the partner that the eye itself does not provide)."""
    right_outer = pts[36] + 0.25 * (pts[0] - pts[36])
    left_outer = pts[45] + 0.25 * (pts[16] - pts[45])
    # brows 17..21 (image left, outer to inner) and 22..26 (inner to outer)
    partners = np.stack([right_outer, pts[36], pts[37], pts[38], pts[39], pts[42], pts[43], pts[44], pts[45], left_outer])
    brows = pts[list(BROWS)]
    return brows + lift * (brows - partners)


# Face X-ray's "components" mask: eight point groups, each closed by the chin (point 8), so their
# union covers the whole face from the brows down (method.md section 2).
_COMPONENT_GROUPS: tuple[tuple[int, ...], ...] = (
    tuple(range(0, 9)) + (17,),  # right jaw half (image left) up to its brow end
    tuple(range(8, 17)) + (26,),  # left jaw half
    (17, 18, 19, 8),  # right cheek
    (24, 25, 26, 8),  # left cheek
    tuple(range(19, 25)) + (8,),  # nose ridge: the inner brows down to the chin
    tuple(range(17, 22)) + (27, 31, 32, 33, 34, 35, 8),  # right eye region with the nose
    tuple(range(22, 27)) + (27, 31, 32, 33, 34, 35, 8),  # left eye region with the nose
    tuple(NOSE) + (8,),  # the nose
)
_PARTS_GROUPS: tuple[tuple[int, ...], ...] = (
    tuple(range(17, 22)) + tuple(RIGHT_EYE),
    tuple(range(22, 27)) + tuple(LEFT_EYE),
    tuple(NOSE),
    tuple(MOUTH[:12]),
)


def hull_groups(landmarks: np.ndarray, mask_type: str, cfg: MaskConfig | None = None) -> list[np.ndarray]:
    """Point sets whose filled convex hulls, united, make up the mask of ``mask_type``."""
    cfg = cfg or MaskConfig()
    pts = np.asarray(landmarks, dtype=np.float32)
    if cfg.truncate_coordinates:
        pts = np.trunc(pts)
    if mask_type == "dfl_full":
        forehead = list(range(N68, len(pts))) if cfg.dfl_full_forehead else []
        return [pts[list(JAW) + list(BROWS) + forehead]]
    if mask_type == "extended":
        if cfg.extended_reference == "eyelid":
            brows = _lift_from_eyelids(pts, cfg.extended_lift)
        else:
            brows = _lift_along_face_axis(pts, cfg.extended_lift)
        return [np.concatenate([pts[list(JAW)], brows])]
    if mask_type == "components":
        groups = _COMPONENT_GROUPS if cfg.components_style == "union8" else _PARTS_GROUPS
        return [pts[list(group)] for group in groups]
    if mask_type == "facehull":
        return [pts]
    raise SynthesisError(f"unknown mask type {mask_type!r}; known: {', '.join(MASK_TYPES)}")


def hull_mask(
    landmarks: np.ndarray, shape: tuple[int, ...], mask_type: str, cfg: MaskConfig | None = None
) -> np.ndarray:
    """A float32 (H, W) mask, 1 inside the hull(s) of ``mask_type``, 0 outside."""
    cfg = cfg or MaskConfig()
    mask = np.zeros(shape[:2], dtype=np.float32)
    total_area = 0.0
    for group in hull_groups(landmarks, mask_type, cfg):
        integer = np.floor(group) if cfg.truncate_coordinates else np.round(group)
        hull = cv2.convexHull(integer.astype(np.int32))
        total_area += cv2.contourArea(hull)
        cv2.fillConvexPoly(mask, hull, 1.0)
    if total_area < 1.0 or not mask.any():
        raise SynthesisError(f"degenerate {mask_type} hull: zero area (collinear or coincident landmarks)")
    return mask


class AffineParams(NamedTuple):
    """Step 4's affine: translations as fractions of the width / height, scales about the centre."""

    translate_x: float
    translate_y: float
    scale_x: float
    scale_y: float


def draw_affine(rng: np.random.Generator, cfg: MaskConfig | None = None) -> AffineParams:
    """A random translation + scale (x and y scales drawn independently unless ``cfg.isotropic_scale``)."""
    cfg = cfg or MaskConfig()
    tx = rng.uniform(-cfg.translate_x, cfg.translate_x)
    ty = rng.uniform(-cfg.translate_y, cfg.translate_y)
    sx = rng.uniform(*cfg.scale_range)
    sy = sx if cfg.isotropic_scale else rng.uniform(*cfg.scale_range)
    return AffineParams(tx, ty, sx, sy)


def apply_affine(source: np.ndarray, mask: np.ndarray, params: AffineParams) -> tuple[np.ndarray, np.ndarray]:
    """The same translation + scale (about the centre) of the source image and its mask."""
    height, width = mask.shape[:2]
    tx, ty = params.translate_x * width, params.translate_y * height
    sx, sy = params.scale_x, params.scale_y
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    matrix = np.array([[sx, 0.0, cx - sx * cx + tx], [0.0, sy, cy - sy * cy + ty]], dtype=np.float64)
    size = (width, height)
    warped_source = cv2.warpAffine(source, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    warped_mask = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return warped_source, warped_mask


def random_affine(
    source: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: MaskConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The same random translation + scale (about the centre, x and y scales drawn independently unless
    ``cfg.isotropic_scale``) of the source image and its mask."""
    return apply_affine(source, mask, draw_affine(rng, cfg))


def _noise_grid(height: int, width: int, step: int) -> tuple[int, int]:
    if step <= 1:
        return height, width
    return max(round(height / step), 2), max(round(width / step), 2)


def smooth_displacement(
    noise: np.ndarray, height: int, width: int, alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy) at (height, width): alpha * Gaussian(sigma)-smoothed white noise, from ``noise`` (2, h, w).

    Noise at the full resolution is smoothed there; noise on a coarser grid (cells of fx x fy pixels)
    is smoothed by sigma / f with the amplitude alpha / sqrt(fx * fy) and interpolated (see ``elastic_field``).
    Smoothing is linear, so the field of a weighted sum of noises is that sum of their fields.
    """
    grid_h, grid_w = noise.shape[1:]
    if (grid_h, grid_w) == (height, width):
        return (cv2.GaussianBlur(noise[0], (0, 0), sigma) * alpha, cv2.GaussianBlur(noise[1], (0, 0), sigma) * alpha)
    fy, fx = height / grid_h, width / grid_w
    amplitude = alpha / float(np.sqrt(fx * fy))
    fields = []
    for plane in noise:
        smooth = cv2.GaussianBlur(plane, (0, 0), sigmaX=sigma / fx, sigmaY=sigma / fy) * amplitude
        fields.append(cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR))
    return fields[0], fields[1]


def _white_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.random((2, *shape), dtype=np.float32) * 2.0 - 1.0


def elastic_field(
    shape: tuple[int, ...], rng: np.random.Generator, alpha: float = 50.0, sigma: float = 7.0, step: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Displacements (dx, dy), each alpha * Gaussian(sigma)-smoothed U(-1, 1) white noise, (H, W) float32.

    With ``step > 1`` the same random field is drawn on a grid about ``step`` pixels apart and
    interpolated: a field smoothed by sigma holds nothing finer than a few sigma, so with step <=
    sigma / 2 the result has the full-resolution field's statistics (white noise on cells of area
    fx * fy, smoothed by sigma, has sqrt(fx * fy) times the amplitude: hence alpha / sqrt(fx * fy)).
    """
    height, width = shape[:2]
    return smooth_displacement(_white_noise(rng, _noise_grid(height, width, step)), height, width, alpha, sigma)


def warp_by_field(mask: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``mask`` resampled at (x + dx, y + dy), bilinear, zero outside."""
    height, width = mask.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(mask, grid_x + dx, grid_y + dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def elastic_deform(
    mask: np.ndarray, rng: np.random.Generator, alpha: float = 50.0, sigma: float = 7.0, step: int = 1
) -> np.ndarray:
    """Elastic deformation: displacement = alpha * Gaussian(sigma)-smoothed U(-1, 1) noise, per axis."""
    dx, dy = elastic_field(mask.shape, rng, alpha, sigma, step)
    return warp_by_field(mask, dx, dy)


def _field_step(cfg: MaskConfig, sigma: float) -> int:
    return cfg.elastic_field_step if cfg.elastic_field_step > 0 else max(1, int(sigma // 2))


@dataclass(frozen=True)
class ElasticGrid:
    """Where step 4's elastic field of a mask of one size lives: the working size, alpha and sigma
    there (rescaled from the config's, which are in image pixels), and the noise grid."""

    height: int
    width: int
    alpha: float
    sigma: float
    step: int
    factor: float  # image pixels per working pixel (1 = the mask's own size)

    @property
    def noise_shape(self) -> tuple[int, int]:
        return _noise_grid(self.height, self.width, self.step)


def elastic_grid(mask_shape: tuple[int, ...], cfg: MaskConfig | None = None) -> ElasticGrid:
    """The working grid of ``deform_mask`` for a mask of ``mask_shape``: at most ``cfg.elastic_work_size`` a side."""
    cfg = cfg or MaskConfig()
    height, width = mask_shape[:2]
    factor = max(height, width) / cfg.elastic_work_size if cfg.elastic_work_size > 0 else 1.0
    if factor <= 1.0:
        step = _field_step(cfg, cfg.elastic_sigma)
        return ElasticGrid(height, width, cfg.elastic_alpha, cfg.elastic_sigma, step, 1.0)
    # white noise smoothed by sigma / f has f times the amplitude of noise smoothed by sigma, and a
    # displacement of d image pixels is d / f grid pixels: hence alpha / f^2
    sigma = cfg.elastic_sigma / factor
    return ElasticGrid(max(round(height / factor), 1), max(round(width / factor), 1), cfg.elastic_alpha / factor**2,
                       sigma, _field_step(cfg, sigma), factor)


@dataclass
class ElasticParams:
    """The white noise behind step 4's elastic field.

    ``field = cos(phase) * field(noise) + sin(phase) * field(drift_noise)``: with two independent
    draws, a phase that moves a little from frame to frame turns the field smoothly from one to the
    other and keeps its statistics (cos^2 + sin^2 = 1); phase 0 is the single-image field.
    """

    noise: np.ndarray  # (2, h, w) float32 U(-1, 1) on the working grid's noise grid
    drift_noise: np.ndarray | None = None
    phase: float = 0.0


def draw_elastic(grid: ElasticGrid, rng: np.random.Generator) -> ElasticParams:
    return ElasticParams(_white_noise(rng, grid.noise_shape))


def elastic_displacement(params: ElasticParams, grid: ElasticGrid) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy) on ``grid`` (working pixels); noise drawn for a slightly different size is interpolated."""
    dx, dy = smooth_displacement(params.noise, grid.height, grid.width, grid.alpha, grid.sigma)
    if params.drift_noise is None or params.phase == 0.0:
        return dx, dy
    ex, ey = smooth_displacement(params.drift_noise, grid.height, grid.width, grid.alpha, grid.sigma)
    c, s = np.float32(np.cos(params.phase)), np.float32(np.sin(params.phase))
    return c * dx + s * ex, c * dy + s * ey


def apply_deform(mask: np.ndarray, params: ElasticParams, cfg: MaskConfig | None = None) -> np.ndarray:
    """Step 4's elastic deformation of the mask with drawn noise, on ``elastic_grid``'s working size.

    Returns the deformed mask at that (possibly smaller) size; ``soft_mask`` resizes it anyway.
    """
    grid = elastic_grid(mask.shape, cfg)
    if grid.factor > 1.0:
        mask = cv2.resize(mask, (grid.width, grid.height), interpolation=cv2.INTER_AREA)
    dx, dy = elastic_displacement(params, grid)
    return warp_by_field(mask, dx, dy)


def deform_mask(mask: np.ndarray, rng: np.random.Generator, cfg: MaskConfig | None = None) -> np.ndarray:
    """Step 4's elastic deformation of the mask, on a grid of at most ``cfg.elastic_work_size`` a side.

    Returns the deformed mask at that (possibly smaller) size; ``soft_mask`` resizes it anyway.
    """
    return apply_deform(mask, draw_elastic(elastic_grid(mask.shape, cfg), rng), cfg)


def _odd_kernel(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    low, high = int(bounds[0]), int(bounds[1])
    choices = np.arange(low + (1 - low % 2), high + 1, 2)
    if len(choices) == 0:
        raise ValueError(f"no odd kernel size in {bounds}")
    return int(rng.choice(choices))


class BlurParams(NamedTuple):
    """Step 5's random choices: the size the mask is blurred at, both odd kernels, the second sigma."""

    width: int
    height: int
    kernel1: int
    kernel2: int
    sigma2: float


def draw_blur(rng: np.random.Generator, cfg: MaskConfig | None = None) -> BlurParams:
    cfg = cfg or MaskConfig()
    low, high = cfg.blur_size_range
    small_w, small_h = int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))
    k1 = _odd_kernel(rng, cfg.blur_kernel1_range)
    k2 = _odd_kernel(rng, cfg.blur_kernel2_range)
    return BlurParams(small_w, small_h, k1, k2, float(rng.uniform(*cfg.blur_sigma2_range)))


def apply_soft_mask(mask: np.ndarray, params: BlurParams, out_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Step 5 with drawn parameters: M~ in [0, 1], 1 in the inner core, soft edge outside."""
    height, width = (out_shape or mask.shape)[:2]
    k1, k2 = params.kernel1, params.kernel2
    small = cv2.resize(mask.astype(np.float32, copy=False), (params.width, params.height),
                       interpolation=cv2.INTER_LINEAR)
    small = cv2.GaussianBlur(small, (k1, k1), 0)
    peak = float(small.max())
    if peak <= 0.0:
        raise SynthesisError("the blending mask vanished (it moved out of the image or is too thin)")
    small /= peak
    # interpretation: "every value < 1" with a float32 tolerance, so rounding cannot punch holes in the core.
    small[small < 1.0 - 1e-5] = 0.0
    small = cv2.GaussianBlur(small, (k2, k2), params.sigma2)
    small /= float(small.max())
    out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0, out=out)


def soft_mask(
    mask: np.ndarray,
    rng: np.random.Generator,
    cfg: MaskConfig | None = None,
    out_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Step 5: M~ in [0, 1] from a (deformed) hull mask: 1 in the inner core, soft edge outside.

    The result has ``out_shape`` (H, W) when given, else the mask's own shape.
    """
    return apply_soft_mask(mask, draw_blur(rng, cfg), out_shape)


def boundary_map(mask_tilde: np.ndarray) -> np.ndarray:
    """Face X-ray's blending boundary B = 4 * M~ * (1 - M~): 1 where M~ = 0.5, 0 where M~ is 0 or 1."""
    m = np.asarray(mask_tilde, dtype=np.float32)
    return 4.0 * m * (1.0 - m)
