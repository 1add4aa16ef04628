"""Landmark conventions: the 68-point iBUG layout, its 81-point extension, and flipping.

Indices 0..67 are iBUG-68 (jaw 0..16, brows 17..26, nose 27..35, eyes 36..47, mouth 48..67).
Indices 68..80 are 13 forehead points along an arc that runs in order from the side of jaw point 0
(image left for a frontal face) over the top of the head to the side of jaw point 16; this is the
order SBI obtains from the dlib-81 model with its re-indexing ``[77,75,76,68,69,70,71,80,72,73,79,74,78]``.
"""

from __future__ import annotations

import numpy as np

N68 = 68
N81 = 81
# SBI's re-order of the dlib-81 forehead points so that 68..80 run along the arc.
DLIB81_FOREHEAD_ORDER = (77, 75, 76, 68, 69, 70, 71, 80, 72, 73, 79, 74, 78)

JAW = tuple(range(0, 17))
BROWS = tuple(range(17, 27))
NOSE = tuple(range(27, 36))
RIGHT_EYE = tuple(range(36, 42))  # subject's right eye = image left
LEFT_EYE = tuple(range(42, 48))
MOUTH = tuple(range(48, 68))
FOREHEAD = tuple(range(68, 81))

# interpretation: forehead height above the brows as a fraction of the brow-to-chin distance; the
# arc is the upper half of an ellipse through the jaw ends (points 0 and 16).
FOREHEAD_HEIGHT = 0.42


def _flip_permutation_68() -> np.ndarray:
    perm = np.arange(N68)
    pairs = []
    pairs += [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lips
    pairs += [(60, 64), (61, 63), (67, 65)]  # inner lips
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


FLIP_PERMUTATION_68 = _flip_permutation_68()
FLIP_PERMUTATION_81 = np.concatenate([FLIP_PERMUTATION_68, 68 + np.arange(12, -1, -1)])


def flip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Mirror landmarks for an image of ``width`` pixels flipped left-right.

    Pixel centres map as x -> width - 1 - x, and the points are re-indexed so that, for example,
    index 36 is still the outer corner of the eye on the image's left.
    """
    pts = np.asarray(landmarks, dtype=np.float32).copy()
    n = len(pts)
    if n == N81:
        perm = FLIP_PERMUTATION_81
    elif n == N68:
        perm = FLIP_PERMUTATION_68
    else:
        raise ValueError(f"cannot flip {n} landmarks; expected 68 or 81")
    pts[:, 0] = width - 1 - pts[:, 0]
    return pts[perm]


def flip_keypoints(keypoints: np.ndarray, width: int) -> np.ndarray:
    """Mirror the five detector keypoints (left/right eye and mouth corners swap)."""
    pts = np.asarray(keypoints, dtype=np.float32).copy()
    pts[:, 0] = width - 1 - pts[:, 0]
    return pts[[1, 0, 2, 4, 3]]


def extend_to_81(landmarks68: np.ndarray, forehead_height: float = FOREHEAD_HEIGHT) -> np.ndarray:
    """Extrapolate the 13 forehead points from 68 landmarks.

    interpretation: with no 81-point model, the forehead is the upper half of an ellipse centred
    between jaw points 0 and 16, whose horizontal semi-axis is half their distance and whose top
    lies ``forehead_height`` x (brow-to-chin distance) above the brows' mean, along the face's own
    vertical axis (so tilted faces get a tilted forehead).
    """
    pts = np.asarray(landmarks68, dtype=np.float32)
    if pts.shape != (N68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
    jaw_left, jaw_right = pts[0], pts[16]
    centre = (jaw_left + jaw_right) / 2.0
    across = jaw_right - jaw_left
    half_width = float(np.linalg.norm(across)) / 2.0
    if half_width < 1e-6:
        raise ValueError("degenerate landmarks: jaw points 0 and 16 coincide")
    right_dir = across / (2.0 * half_width)
    up_dir = np.array([right_dir[1], -right_dir[0]], dtype=np.float32)  # perpendicular, pointing up
    brow_mid = pts[list(BROWS)].mean(axis=0)
    chin = pts[8]
    face_height = float(np.linalg.norm(brow_mid - chin))
    top = float(np.dot(brow_mid - centre, up_dir)) + forehead_height * face_height
    top = max(top, 0.25 * half_width)
    angles = np.linspace(np.pi, 0.0, 13)  # from the point-0 side over the top to the point-16 side
    forehead = (
        centre[None, :]
        + np.cos(angles)[:, None] * half_width * right_dir[None, :]
        + np.sin(angles)[:, None] * top * up_dir[None, :]
    )
    return np.concatenate([pts, forehead.astype(np.float32)], axis=0)


def from_dlib81(points81: np.ndarray) -> np.ndarray:
    """Re-order a dlib-81 prediction so that 68..80 run along the forehead arc (SBI's order)."""
    pts = np.asarray(points81, dtype=np.float32)
    if pts.shape != (N81, 2):
        raise ValueError(f"expected (81, 2) landmarks, got {pts.shape}")
    out = pts.copy()
    out[68:] = pts[list(DLIB81_FOREHEAD_ORDER)]
    return out


def keypoints_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Five keypoints (eye centres, nose tip, mouth corners) from 68/81 landmarks, image order."""
    pts = np.asarray(landmarks, dtype=np.float32)
    return np.stack(
        [
            pts[list(RIGHT_EYE)].mean(axis=0),  # eye on the image's left
            pts[list(LEFT_EYE)].mean(axis=0),
            pts[30],
            pts[48],
            pts[54],
        ]
    ).astype(np.float32)
