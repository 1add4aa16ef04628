"""Five-point face alignment to a generator's template, and SimSwap-style paste-back.

Keypoints are in mfrn's order (``mfrn.faces.types.KEYPOINT_NAMES``): left eye, right eye, nose,
left mouth corner, right mouth corner, as seen in the image. Matrices are OpenCV 2x3 affine
matrices mapping image pixels to crop pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# InsightFace's five arcface pose templates at 112 px (left profile, left, frontal, right,
# right profile); SimSwap's 224 model scales them by crop/112 and keeps the best fit.
ARCFACE_POSE_TEMPLATES_112 = np.array(
    [
        [[51.642, 50.115], [57.617, 49.990], [35.740, 69.007], [51.157, 89.050], [57.025, 89.702]],
        [[45.031, 50.118], [65.568, 50.872], [39.677, 68.111], [45.177, 86.190], [64.246, 86.758]],
        [[39.730, 51.138], [72.270, 51.138], [56.000, 68.493], [42.463, 87.010], [69.537, 87.010]],
        [[46.845, 50.872], [67.382, 50.118], [72.737, 68.111], [48.167, 86.758], [67.236, 86.190]],
        [[54.796, 49.990], [60.771, 50.115], [76.673, 69.007], [55.388, 89.702], [61.257, 89.050]],
    ],
    dtype=np.float64,
)
FRONTAL_TEMPLATE_INDEX = 2

# FFHQ-style template at 512 px (SimSwap's 512 model).
FFHQ_TEMPLATE_512 = np.array(
    [[192.98, 239.95], [318.90, 240.19], [256.63, 314.02], [201.26, 371.41], [313.09, 371.15]],
    dtype=np.float64,
)


class AlignmentError(ValueError):
    """The keypoints cannot define a usable similarity transform."""


def arcface_templates(crop_size: int, frontal_only: bool = False) -> np.ndarray:
    """The arcface pose templates, (T, 5, 2), scaled from 112 px to ``crop_size``."""
    templates = ARCFACE_POSE_TEMPLATES_112[FRONTAL_TEMPLATE_INDEX : FRONTAL_TEMPLATE_INDEX + 1] if frontal_only else ARCFACE_POSE_TEMPLATES_112
    return templates * (crop_size / 112.0)


def ffhq_templates(crop_size: int) -> np.ndarray:
    """The FFHQ template, (1, 5, 2), scaled from 512 px to ``crop_size``."""
    return FFHQ_TEMPLATE_512[None] * (crop_size / 512.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` to ``dst``.

    Umeyama's closed form; returns a 2x3 matrix. Raises ``AlignmentError`` if ``src`` is degenerate.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise AlignmentError(f"keypoints {src.shape} and template {dst.shape} must both be (N, 2)")
    if not np.all(np.isfinite(src)):
        raise AlignmentError("keypoints contain NaN or infinite values")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-6:
        raise AlignmentError("keypoints are (nearly) all at one point; no transform can be fitted")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    if np.linalg.matrix_rank(cov) < 1:
        raise AlignmentError("keypoints are degenerate (rank 0 covariance)")
    scale = float((s * d).sum() / src_var)
    if not np.isfinite(scale) or scale <= 0:
        raise AlignmentError(f"degenerate transform (scale {scale})")
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix)[:, 2]


@dataclass
class AlignedFace:
    """A face warped to a generator's template."""

    crop: np.ndarray  # (S, S, 3) uint8 RGB
    matrix: np.ndarray  # (2, 3) image pixels -> crop pixels
    crop_size: int
    template_index: int  # which pose template fitted best
    error: float  # mean distance (crop pixels) between the warped keypoints and the template

    @property
    def inverse_matrix(self) -> np.ndarray:
        return invert_affine(self.matrix)


def best_template_transform(keypoints5: np.ndarray, templates: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Fit every template; return (matrix, index, mean error) of the lowest-error one."""
    keypoints5 = np.asarray(keypoints5, dtype=np.float64)
    if keypoints5.shape != (5, 2):
        raise AlignmentError(f"expected five (x, y) keypoints, got shape {keypoints5.shape}")
    best: tuple[np.ndarray, int, float] | None = None
    for index, template in enumerate(templates):
        matrix = similarity_transform(keypoints5, template)
        error = float(np.linalg.norm(transform_points(matrix, keypoints5) - template, axis=1).mean())
        if best is None or error < best[2]:
            best = (matrix, index, error)
    assert best is not None
    return best


def align_face(image: np.ndarray, keypoints5: np.ndarray | None, templates: np.ndarray, crop_size: int) -> AlignedFace:
    """Warp ``image`` so that ``keypoints5`` land on the best of ``templates`` (crop pixels)."""
    import cv2

    if keypoints5 is None:
        raise AlignmentError("no keypoints were given for this face")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise AlignmentError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    matrix, index, error = best_template_transform(keypoints5, templates)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    # a face that would be magnified more than 50x or shrunk below 1/50 is a keypoint failure
    if not 0.02 < scale < 50.0:
        raise AlignmentError(f"degenerate alignment: scale {scale:.4g} from keypoints to the {crop_size} px template")
    crop = cv2.warpAffine(image, matrix, (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return AlignedFace(crop=crop, matrix=matrix, crop_size=crop_size, template_index=index, error=error)


def _odd(value: float) -> int:
    k = max(1, int(round(value)))
    return k if k % 2 == 1 else k + 1


def paste_back(
    image: np.ndarray,
    face: np.ndarray,
    matrix: np.ndarray,
    erode_px: int = 40,
    blur_px: int = 41,
    reference_size: int = 224,
    mask_threshold: float = 20.0 / 255.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``face`` (crop, uint8 or float [0,1]) back into ``image`` and alpha-blend it.

    SimSwap's recipe: warp a white crop-sized mask with the inverse transform, threshold it, erode it
    (40 px) and Gaussian-blur it (41 px), then blend. Returns (blended uint8 image, mask float32 HxW).
    """
    import cv2

    height, width = image.shape[:2]
    crop_size = face.shape[0]
    face_f = face.astype(np.float32) / 255.0 if face.dtype == np.uint8 else face.astype(np.float32)
    inverse = invert_affine(matrix)
    warped_face = cv2.warpAffine(face_f, inverse, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0.0, 0.0, 0.0))
    white = np.ones((crop_size, crop_size), dtype=np.float32)
    warped_mask = cv2.warpAffine(white, inverse, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)
    inside = warped_mask > mask_threshold
    # interpretation: SimSwap's 40/41 px kernels belong to a 224 px crop shown at its own scale; they
    # are scaled by the face's size in the image (crop size x inverse scale) over 224 px
    face_extent = crop_size * float(np.sqrt(abs(np.linalg.det(inverse[:, :2]))))
    factor = face_extent / reference_size
    erode_k = max(1, int(round(erode_px * factor)))
    blur_k = _odd(blur_px * factor)
    mask = cv2.erode(inside.astype(np.float32), np.ones((erode_k, erode_k), np.uint8), iterations=1)
    if blur_k > 1:
        mask = cv2.GaussianBlur(mask, (blur_k, blur_k), 0)
    # the blur never reaches outside the warped crop: pixels there stay exactly as they were
    mask = (mask * inside).astype(np.float32)
    base = image.astype(np.float32) / 255.0
    blended = mask[..., None] * warped_face + (1.0 - mask[..., None]) * base
    out = np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)
    out[~inside] = image[~inside]
    return out, mask
