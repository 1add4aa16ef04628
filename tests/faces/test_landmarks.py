import numpy as np
import pytest

from mfrn.faces.landmarks import (
    FLIP_PERMUTATION_81,
    extend_to_81,
    flip_keypoints,
    flip_landmarks,
    from_dlib81,
    keypoints_from_landmarks,
)


def test_flip_permutation_is_an_involution():
    assert sorted(FLIP_PERMUTATION_81) == list(range(81))
    assert np.array_equal(FLIP_PERMUTATION_81[FLIP_PERMUTATION_81], np.arange(81))


def test_flip_twice_is_identity(astronaut_face):
    width = 512
    once = flip_landmarks(astronaut_face.landmarks, width)
    assert np.allclose(flip_landmarks(once, width), astronaut_face.landmarks)
    kp = astronaut_face.keypoints
    assert np.allclose(flip_keypoints(flip_keypoints(kp, width), width), kp)


def test_flip_matches_landmarks_of_flipped_image(astronaut, face_analyzer, astronaut_face):
    """The detector on the mirrored photo finds the mirrored landmarks, in the same index order."""
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    faces = face_analyzer(mirrored)
    assert faces
    detected = max(faces, key=lambda f: f.detection.score).landmarks[:68]
    expected = flip_landmarks(astronaut_face.landmarks, astronaut.shape[1])[:68]
    error = np.linalg.norm(detected - expected, axis=1)
    assert np.median(error) < 3.0, error
    # index 36 (outer corner of the image-left eye) stays on the image's left after the flip
    assert expected[36, 0] < expected[45, 0]


def test_landmarks_lie_in_the_detector_box(astronaut_face):
    x1, y1, x2, y2 = astronaut_face.box
    w, h = x2 - x1, y2 - y1
    inner = astronaut_face.landmarks[:68]
    assert np.all(inner[:, 0] > x1 - 0.2 * w) and np.all(inner[:, 0] < x2 + 0.2 * w)
    assert np.all(inner[:, 1] > y1 - 0.2 * h) and np.all(inner[:, 1] < y2 + 0.3 * h)
    # anatomy: brows above eyes above nose tip above mouth above chin
    lm = astronaut_face.landmarks
    assert lm[17:27, 1].mean() < lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]
    # the forehead arc lies above the brows and runs from the jaw-0 side to the jaw-16 side
    assert lm[68:81, 1].min() < lm[17:27, 1].min()
    assert lm[68, 0] < lm[74, 0] < lm[80, 0]


def test_extend_to_81_follows_a_rotated_face(astronaut_face):
    lm68 = astronaut_face.landmarks[:68]
    centre = lm68.mean(axis=0)
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32)
    rotated = (lm68 - centre) @ rot.T + centre
    expected = (extend_to_81(lm68)[68:] - centre) @ rot.T + centre
    assert np.allclose(extend_to_81(rotated)[68:], expected, atol=1e-3)


def test_extend_to_81_rejects_degenerate_input():
    with pytest.raises(ValueError, match="degenerate"):
        extend_to_81(np.zeros((68, 2), np.float32))
    with pytest.raises(ValueError, match="68"):
        extend_to_81(np.zeros((5, 2), np.float32))


def test_from_dlib81_reorders_forehead():
    pts = np.stack([np.arange(81), np.zeros(81)], axis=1).astype(np.float32)
    out = from_dlib81(pts)
    assert np.array_equal(out[:68], pts[:68])
    assert out[68:, 0].tolist() == [77, 75, 76, 68, 69, 70, 71, 80, 72, 73, 79, 74, 78]


def test_keypoints_from_landmarks_order(astronaut_face):
    kp = keypoints_from_landmarks(astronaut_face.landmarks)
    assert kp[0, 0] < kp[1, 0]  # eye on the image's left first
    assert kp[3, 0] < kp[4, 0]
    assert max(kp[0, 1], kp[1, 1]) < kp[2, 1] < min(kp[3, 1], kp[4, 1]) + 5
