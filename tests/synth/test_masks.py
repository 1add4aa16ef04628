"""Face X-ray hull masks, affine / elastic deformation, the two-stage blur and the boundary map."""

from __future__ import annotations

import numpy as np
import pytest

from mfrn.synth import masks


@pytest.fixture(scope="module")
def face_crop(astronaut, astronaut_face):
    """A 200x200 crop around the astronaut's face and its landmarks in that crop."""
    x0, y0 = 120, 20
    return astronaut[y0 : y0 + 200, x0 : x0 + 200].copy(), astronaut_face.landmarks - np.array([x0, y0], np.float32)


@pytest.mark.parametrize("mask_type", masks.MASK_TYPES)
def test_hull_masks_are_binary_and_cover_the_face(face_crop, mask_type):
    image, landmarks = face_crop
    mask = masks.hull_mask(landmarks, image.shape, mask_type)
    assert mask.dtype == np.float32 and mask.shape == image.shape[:2]
    assert set(np.unique(mask)) == {0.0, 1.0}
    nose = np.round(landmarks[30]).astype(int) if mask_type != "components" else np.round(landmarks[33]).astype(int)
    assert mask[nose[1], nose[0]] == 1.0
    assert mask[0, 0] == 0.0


def test_hull_variants_differ_as_described(face_crop):
    image, landmarks = face_crop
    area = {t: masks.hull_mask(landmarks, image.shape, t).sum() for t in masks.MASK_TYPES}
    assert area["components"] < area["dfl_full"] < area["extended"]
    assert area["dfl_full"] < area["facehull"]  # the forehead points add to the full hull
    hull68 = masks.hull_mask(landmarks[:68], image.shape, "facehull").sum()
    assert hull68 < area["facehull"]


def test_degenerate_hull_raises():
    line = np.stack([np.linspace(10, 90, 81), np.linspace(10, 90, 81)], axis=1).astype(np.float32)
    with pytest.raises(masks.SynthesisError, match="degenerate"):
        masks.hull_mask(line, (100, 100), "facehull")
    with pytest.raises(masks.SynthesisError, match="unknown mask type"):
        masks.hull_mask(line, (100, 100), "oval")


def test_soft_mask_range_core_and_edge(face_crop, rng):
    image, landmarks = face_crop
    hull = masks.hull_mask(landmarks, image.shape, "dfl_full")
    soft = masks.soft_mask(hull, rng)
    assert soft.dtype == np.float32 and soft.shape == hull.shape
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    x, y = np.round(landmarks[30]).astype(int)
    assert soft[y, x] == pytest.approx(1.0, abs=1e-4)  # the inner core stays 1
    assert soft[0, 0] == 0.0 and soft[-1, -1] < 1e-3
    # soft edge: intermediate values exist around the hull boundary
    assert np.count_nonzero((soft > 0.1) & (soft < 0.9)) > 100


def test_soft_mask_of_empty_mask_raises(rng):
    with pytest.raises(masks.SynthesisError, match="vanished"):
        masks.soft_mask(np.zeros((64, 64), np.float32), rng)


def test_boundary_map_values(face_crop, rng):
    np.testing.assert_allclose(masks.boundary_map(np.array([0.0, 0.5, 1.0, 0.25])), [0.0, 1.0, 0.0, 0.75])
    image, landmarks = face_crop
    soft = masks.soft_mask(masks.hull_mask(landmarks, image.shape, "dfl_full"), rng)
    boundary = masks.boundary_map(soft)
    x, y = np.round(landmarks[30]).astype(int)
    assert boundary[y, x] < 1e-3  # deep inside
    assert boundary[0, 0] == 0.0  # far outside
    assert 0.95 < boundary.max() <= 1.0  # M~ crosses 0.5 somewhere on the edge
    assert boundary[np.abs(soft - 0.5) < 0.02].min() > 0.99


def test_random_affine_moves_source_and_mask_together(face_crop):
    image, landmarks = face_crop
    mask = masks.hull_mask(landmarks, image.shape, "dfl_full")
    marked = np.repeat((mask * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    cfg = masks.MaskConfig(translate_x=0.1, translate_y=0.1, scale_range=(0.8, 1.2))
    for seed in range(3):
        warped_src, warped_mask = masks.random_affine(marked, mask, np.random.default_rng(seed), cfg)
        src_centroid = np.argwhere(warped_src[:, :, 0] > 127).mean(axis=0)
        mask_centroid = np.argwhere(warped_mask > 0.5).mean(axis=0)
        np.testing.assert_allclose(src_centroid, mask_centroid, atol=1.0)
    moved = np.argwhere(warped_mask > 0.5).mean(axis=0) - np.argwhere(mask > 0.5).mean(axis=0)
    assert np.abs(moved).max() > 1.0
    identity = masks.MaskConfig(translate_x=0.0, translate_y=0.0, scale_range=(1.0, 1.0))
    same_src, same_mask = masks.random_affine(image, mask, np.random.default_rng(0), identity)
    np.testing.assert_array_equal(same_src, image)
    np.testing.assert_array_equal(same_mask, mask)


def test_elastic_deformation(face_crop, rng):
    image, landmarks = face_crop
    mask = masks.hull_mask(landmarks, image.shape, "facehull")
    np.testing.assert_array_equal(masks.elastic_deform(mask, rng, alpha=0.0, sigma=7.0), mask)
    deformed = masks.elastic_deform(mask, rng, alpha=50.0, sigma=7.0)
    assert not np.array_equal(deformed, mask)
    assert deformed.min() >= 0.0 and deformed.max() <= 1.0
    assert abs(deformed.sum() - mask.sum()) < 0.05 * mask.sum()


def test_validate_landmarks_reasons(face_crop):
    image, landmarks = face_crop
    np.testing.assert_array_equal(masks.validate_landmarks(landmarks, image.shape), landmarks)
    bad = landmarks.copy()
    bad[5] = np.nan
    with pytest.raises(masks.SynthesisError, match="NaN or infinite"):
        masks.validate_landmarks(bad, image.shape)
    with pytest.raises(masks.SynthesisError, match="outside"):
        masks.validate_landmarks(landmarks + 150.0, image.shape)
    tiny = (landmarks - landmarks.mean(axis=0)) * 0.2 + 100.0
    with pytest.raises(masks.SynthesisError, match="too small"):
        masks.validate_landmarks(tiny, image.shape)
    with pytest.raises(masks.SynthesisError, match="too small"):
        masks.validate_landmarks(landmarks, image.shape, masks.MaskConfig(min_face_size=500))
    line = np.stack([np.linspace(20, 180, 81), np.linspace(20, 180, 81)], axis=1).astype(np.float32)
    with pytest.raises(masks.SynthesisError, match="collinear"):
        masks.validate_landmarks(line, image.shape)
    with pytest.raises(masks.SynthesisError, match=r"\(68, 2\) or \(81, 2\)"):
        masks.validate_landmarks(landmarks[:5], image.shape)
