"""A classical graphics face swap (the kind of manipulation FF++'s FaceSwap method is), for test sets.

The source person's face is cut along its 68 landmarks into Delaunay triangles; each triangle is
mapped affinely onto the same triangle of the target's landmarks (a piecewise-affine warp, done as
one ``cv2.remap``); the warped face's colours are matched to the target's skin inside the face region
(mean and standard deviation per Lab channel); and the result is Poisson-blended into the target
frame with OpenCV's ``seamlessClone``. The face region is the convex hull of the target's jaw and
brow points, slightly eroded: pixels outside it are the target's, unchanged, and it is the
ground-truth mask written next to the fake video.

This is a *test-set* manipulation: ``mfrn.data.demo_benchmark`` writes FF++-layout fake videos with
it, and no training step uses it, so a detector judged on them has never seen one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mfrn.faces.landmarks import BROWS, JAW, N68
from mfrn.faces.types import Face

BLEND_MODES = ("seamless", "alpha")
# the face region: the convex hull of the jaw line and the brows (the region FF++'s FaceSwap replaces)
FACE_REGION = tuple(JAW) + tuple(BROWS)
_NO_TRIANGLE = np.iinfo(np.int32).max


class FaceSwapError(ValueError):
    """A swap cannot be made (landmarks missing or degenerate, a face too small or outside the frame)."""


@dataclass(frozen=True)
class FaceSwapConfig:
    blend: str = "seamless"  # "seamless": cv2.seamlessClone (NORMAL_CLONE); "alpha": a feathered paste
    colour_transfer: bool = True  # match the warped face's Lab mean/std to the target's inside the region
    # interpretation: the region is shrunk by this fraction of the face width so that the seam runs over
    # skin rather than over the background just outside the jaw line
    erode: float = 0.03
    min_face_size: float = 24.0  # smallest side of a face's 68-point box, pixels
    source_margin: float = 0.5  # the source image is cropped to its face box grown by this fraction per side


@dataclass
class SwapResult:
    image: np.ndarray  # (H, W, 3) uint8 RGB: the target frame with the source's face
    mask: np.ndarray  # (H, W) bool: the manipulated region; every pixel outside it equals the target's


def delaunay_triangles(points: np.ndarray) -> np.ndarray:
    """(T, 3) int32 vertex indices (sorted rows, sorted within rows) of the Delaunay triangulation."""
    points = np.asarray(points, dtype=np.float32)
    low = points.min(axis=0) - 2.0
    size = points.max(axis=0) - low + 4.0
    subdiv = cv2.Subdiv2D((float(low[0]), float(low[1]), float(size[0]), float(size[1])))
    for x, y in points:
        subdiv.insert((float(x), float(y)))
    triangles = []
    for corners in subdiv.getTriangleList().reshape(-1, 3, 2):
        # Subdiv2D answers in coordinates: map each corner back to its input point
        index = sorted(int(np.argmin(np.sum((points - corner) ** 2, axis=1))) for corner in corners)
        if len(set(index)) == 3:
            triangles.append(index)
    if not triangles:
        raise FaceSwapError("degenerate landmarks: their Delaunay triangulation has no triangle")
    return np.unique(np.asarray(triangles, dtype=np.int32), axis=0)


def face_region_mask(landmarks: np.ndarray, shape: tuple[int, ...], erode: float = 0.0) -> np.ndarray:
    """(H, W) uint8 mask, 255 inside the convex hull of the jaw and brow points, eroded by ``erode``
    times the face width."""
    points = np.asarray(landmarks, dtype=np.float32)[list(FACE_REGION)]
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 255)
    radius = int(round(erode * float(np.ptp(points[:, 0]))))
    if radius > 0:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    return mask


def _cross(u: np.ndarray, v: np.ndarray) -> float:
    """z of the cross product of two 2-D vectors (twice the signed triangle area)."""
    return float(u[0] * v[1] - u[1] * v[0])


def warp_piecewise_affine(
    source: np.ndarray, source_points: np.ndarray, target_points: np.ndarray, target_shape: tuple[int, ...],
    triangles: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``source`` so that each triangle of ``source_points`` lands on the same triangle of
    ``target_points``. Returns the warped (H, W, 3) uint8 image and the (H, W) uint8 mask (255) of the
    pixels the triangles cover; both are zero elsewhere."""
    height, width = target_shape[:2]
    src = np.asarray(source_points, dtype=np.float32)
    dst = np.asarray(target_points, dtype=np.float32)
    warped = np.zeros((height, width, 3), dtype=np.uint8)
    covered = np.zeros((height, width), dtype=np.uint8)
    used = dst[np.unique(triangles)]
    x0, y0 = np.maximum(np.floor(used.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(used.max(axis=0)).astype(int) + 1, (width, height))
    if x1 <= x0 or y1 <= y0:
        return warped, covered
    # which triangle each pixel of the face's box belongs to (edges drawn too, so no seam is left uncovered)
    owner = np.full((y1 - y0, x1 - x0), _NO_TRIANGLE, dtype=np.int32)
    inverse = np.zeros((len(triangles), 2, 3), dtype=np.float64)
    origin = np.array([x0, y0], dtype=np.float32)
    for k, tri in enumerate(triangles):
        d = dst[tri]
        if abs(_cross(d[1] - d[0], d[2] - d[0])) < 0.5:
            continue  # a collapsed triangle covers no pixel
        inverse[k] = cv2.getAffineTransform(d, src[tri])  # target pixel -> source pixel
        polygon = np.round((d - origin) * 16.0).astype(np.int32)  # 4 fractional bits
        cv2.fillConvexPoly(owner, polygon, k, cv2.LINE_8, 4)
        cv2.polylines(owner, [polygon], True, k, 1, cv2.LINE_8, 4)
    inside = owner != _NO_TRIANGLE
    if not inside.any():
        return warped, covered
    ys, xs = np.nonzero(inside)
    affine = inverse[owner[ys, xs]]
    px, py = xs + float(x0), ys + float(y0)
    map_x = np.full(owner.shape, -1.0, dtype=np.float32)
    map_y = np.full(owner.shape, -1.0, dtype=np.float32)
    map_x[ys, xs] = affine[:, 0, 0] * px + affine[:, 0, 1] * py + affine[:, 0, 2]
    map_y[ys, xs] = affine[:, 1, 0] * px + affine[:, 1, 1] * py + affine[:, 1, 2]
    patch = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    patch[~inside] = 0
    warped[y0:y1, x0:x1] = patch
    covered[y0:y1, x0:x1][inside] = 255
    return warped, covered


def transfer_colour(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``face`` with the per-channel Lab mean and standard deviation of ``target`` inside ``mask``
    (only the mask's bounding box is converted; the rest of ``face`` is returned as it was)."""
    if not mask.any():
        return face
    x, y, w, h = cv2.boundingRect(mask)
    inside = mask[y:y + h, x:x + w] > 0
    face_lab = cv2.cvtColor(face[y:y + h, x:x + w], cv2.COLOR_RGB2LAB).astype(np.float32)
    target_lab = cv2.cvtColor(target[y:y + h, x:x + w], cv2.COLOR_RGB2LAB).astype(np.float32)
    for channel in range(3):
        f, t = face_lab[..., channel][inside], target_lab[..., channel][inside]
        scale = min(float(t.std()) / max(float(f.std()), 1e-3), 3.0)
        face_lab[..., channel] = (face_lab[..., channel] - float(f.mean())) * scale + float(t.mean())
    out = face.copy()
    out[y:y + h, x:x + w] = cv2.cvtColor(np.clip(face_lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return out


def _check_face(landmarks: np.ndarray, shape: tuple[int, ...], min_size: float, who: str) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < N68:
        raise FaceSwapError(f"{who}: expected at least 68 landmarks, got an array of shape {points.shape}")
    points = points[:N68]
    if not np.isfinite(points).all():
        raise FaceSwapError(f"{who}: the landmarks are not finite")
    size = float(min(np.ptp(points[:, 0]), np.ptp(points[:, 1])))
    if size < min_size:
        raise FaceSwapError(f"{who}: face too small ({size:.0f} px < {min_size:.0f} px)")
    height, width = shape[:2]
    region = points[list(FACE_REGION)]
    if region[:, 0].max() < 0 or region[:, 1].max() < 0 or region[:, 0].min() >= width or region[:, 1].min() >= height:
        raise FaceSwapError(f"{who}: the face lies outside the image")
    return points


class FaceSwapper:
    """Puts one source face (an RGB image and its landmarks) onto target faces, frame after frame."""

    def __init__(self, source_image: np.ndarray, source_landmarks: np.ndarray,
                 config: FaceSwapConfig | None = None) -> None:
        self.config = config or FaceSwapConfig()
        if self.config.blend not in BLEND_MODES:
            raise ValueError(f"unknown blend {self.config.blend!r}; expected one of {BLEND_MODES}")
        image = np.ascontiguousarray(source_image, dtype=np.uint8)
        points = _check_face(source_landmarks, image.shape, self.config.min_face_size, "source")
        # keep only the face's surroundings: the warp then reads from a small image
        margin = self.config.source_margin * np.ptp(points, axis=0)
        x0, y0 = np.maximum(np.floor(points.min(axis=0) - margin).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(points.max(axis=0) + margin).astype(int) + 1, image.shape[1::-1])
        self.source = np.ascontiguousarray(image[y0:y1, x0:x1])
        self.source_points = points - np.array([x0, y0], dtype=np.float32)
        self.triangles = delaunay_triangles(self.source_points)

    def swap(self, target: np.ndarray, target_landmarks: np.ndarray) -> SwapResult:
        target = np.ascontiguousarray(target, dtype=np.uint8)
        points = _check_face(target_landmarks, target.shape, self.config.min_face_size, "target")
        region = face_region_mask(points, target.shape, self.config.erode)
        # seamlessClone ignores the frame's outermost pixels: leave them out of the region too
        region[0, :] = region[-1, :] = 0
        region[:, 0] = region[:, -1] = 0
        warped, covered = warp_piecewise_affine(self.source, self.source_points, points, target.shape, self.triangles)
        region &= covered
        if not region.any():
            raise FaceSwapError("target: the face region is empty inside the frame")
        if self.config.colour_transfer:
            warped = transfer_colour(warped, target, region)
        inside = region > 0
        if self.config.blend == "seamless":
            x, y, w, h = cv2.boundingRect(region)
            centre = (x + w // 2, y + h // 2)  # seamlessClone centres the mask's bounding box on this point
            # seamlessClone erodes the mask it is given in place: hand it a copy
            image = cv2.seamlessClone(warped, target, region.copy(), centre, cv2.NORMAL_CLONE)
            image[~inside] = target[~inside]  # the Poisson solve covers the mask's box: keep the rest exact
        else:
            sigma = max(1.0, 0.02 * float(np.ptp(points[:, 0])))
            weight = cv2.GaussianBlur(region.astype(np.float32) / 255.0, (0, 0), sigma)
            weight = np.where(inside, weight, 0.0)[..., None]
            image = np.clip(warped * weight + target * (1.0 - weight) + 0.5, 0, 255).astype(np.uint8)
        return SwapResult(image=image, mask=inside)


def pick_subject(faces: Iterable[Face], shape: tuple[int, ...]) -> Face | None:
    """The face whose box centre is nearest the frame centre (a clip's subject), or None."""
    height, width = shape[:2]
    centre = np.array([width / 2.0, height / 2.0], dtype=np.float32)
    best, best_distance = None, np.inf
    for face in faces:
        distance = float(np.linalg.norm((face.box[:2] + face.box[2:]) / 2.0 - centre))
        if distance < best_distance:
            best, best_distance = face, distance
    return best


def swap_frames(
    frames: Iterable[np.ndarray], swapper: FaceSwapper, analyze: Callable[[np.ndarray], Sequence[Face]],
) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
    """Swap the subject's face in each frame: yields ``(image, mask, swapped)``. A frame without a
    usable face comes back unchanged, with an empty mask and ``swapped=False``."""
    for frame in frames:
        subject = pick_subject(analyze(frame), frame.shape)
        if subject is not None:
            try:
                result = swapper.swap(frame, subject.landmarks)
            except FaceSwapError:
                pass
            else:
                yield result.image, result.mask, True
                continue
        yield frame, np.zeros(frame.shape[:2], dtype=bool), False
