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
    nose = np.round(landmarks[30]).astype(int)
    assert mask[nose[1], nose[0]] == 1.0
    assert mask[0, 0] == 0.0


def test_hull_variants_differ_as_described(face_crop):
    image, landmarks = face_crop
    area = {t: masks.hull_mask(landmarks[:68], image.shape, t).sum() for t in masks.MASK_TYPES}
    assert area["components"] <= area["dfl_full"] < area["extended"]
    assert area["dfl_full"] <= area["facehull"]
    hull81 = masks.hull_mask(landmarks, image.shape, "facehull").sum()
    assert area["facehull"] < hull81  # the forehead points add to the full hull


def test_dfl_full_reads_68_points_unless_the_forehead_is_switched_on(face_crop):
    image, landmarks = face_crop
    with_forehead = masks.hull_mask(landmarks, image.shape, "dfl_full", masks.MaskConfig(dfl_full_forehead=True))
    without = masks.hull_mask(landmarks, image.shape, "dfl_full")  # Face X-ray's definition: 68 points only
    assert np.array_equal(without, masks.hull_mask(landmarks[:68], image.shape, "dfl_full"))
    assert with_forehead.sum() > 1.1 * without.sum()
    assert np.all(with_forehead >= without)
    top = int(np.floor(landmarks[68:, 1].min())) + 2  # rows above the brows belong to the mask only with the forehead
    brows_top = int(np.floor(landmarks[17:27, 1].min()))
    assert with_forehead[top:brows_top].any() and not without[top:brows_top - 2].any()


def _real_faces(prepared_faces, count: int = 8) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """(crop shape, 81 landmarks) of real prepared faces, one per frame, from every prepared item."""
    from mfrn.data.manifest import Manifest

    faces, seen = [], set()
    for sample in Manifest(prepared_faces).faces():
        if sample.record.key in seen:
            continue
        seen.add(sample.record.key)
        x1, y1, x2, y2 = sample.face.crop_box
        faces.append(((y2 - y1, x2 - x1), sample.face.local()[2]))
    assert len(faces) >= 4
    return faces[:count]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a > 0, b > 0).sum() / np.logical_or(a > 0, b > 0).sum())


def test_components_is_the_union_of_eight_hulls_through_the_chin(prepared_faces):
    """method.md section 2: eight hulls that all contain the chin point, united: almost the whole face."""
    for shape, landmarks in _real_faces(prepared_faces):
        groups = masks.hull_groups(landmarks, "components")
        assert len(groups) == 8
        chin = np.trunc(landmarks[8])
        assert all((group == chin).all(axis=1).any() for group in groups)  # every hull is closed by the chin
        mask = masks.hull_mask(landmarks, shape, "components")
        # the union: every hull's own area lies in the mask
        for group in groups:
            one = masks.hull_mask(np.asarray(group), shape, "facehull")
            assert (mask[one > 0] == 1.0).all()
        # it covers the face from the brows down: eyes, nose, mouth and cheeks, like dfl_full
        assert _iou(mask, masks.hull_mask(landmarks[:68], shape, "dfl_full")) > 0.97
        inner = np.trunc(landmarks[36:68]).astype(int)
        assert mask[inner[:, 1], inner[:, 0]].all()
        # the former separate parts are still a switch, and are far from the definition
        parts = masks.hull_mask(landmarks, shape, "components", masks.MaskConfig(components_style="parts"))
        assert _iou(parts, mask) < 0.6


def test_extended_lifts_each_brow_by_half_its_distance_to_the_eyelid(prepared_faces):
    for shape, landmarks in _real_faces(prepared_faces, 4):
        pts = np.trunc(landmarks)
        lifted = masks.hull_groups(landmarks, "extended")[0][17:]  # the jaw (17 points), then the 10 brows
        brows = pts[17:27]
        eyelids = {18: 36, 19: 37, 20: 38, 21: 39, 22: 42, 23: 43, 24: 44, 25: 45}  # brow index -> its eyelid point
        for brow, lid in eyelids.items():
            expected = pts[brow] + 0.5 * (pts[brow] - pts[lid])
            np.testing.assert_allclose(lifted[brow - 17], expected, atol=1e-4)
        assert (lifted[:, 1] < brows[:, 1]).all()  # every brow point moved up
        # about half the brow-to-eye gap, far less than the former 0.2 x the brow-to-chin distance
        rise = float(np.mean(brows[:, 1] - lifted[:, 1]))
        gap = float(np.mean(pts[[37, 38, 43, 44], 1]) - np.mean(pts[[19, 20, 23, 24], 1]))
        assert 0.3 * gap < rise < 0.8 * gap
        former = masks.MaskConfig(extended_reference="chin", extended_lift=0.2)
        former_rise = float(np.mean(brows[:, 1] - masks.hull_groups(landmarks, "extended", former)[0][17:, 1]))
        assert former_rise > 1.5 * rise
        mask = masks.hull_mask(landmarks, shape, "extended")
        assert mask.sum() > masks.hull_mask(landmarks, shape, "dfl_full").sum()


def test_hull_coordinates_are_truncated(face_crop):
    image, landmarks = face_crop
    shifted = np.floor(landmarks) + 0.9  # truncation keeps the integer part; rounding would move up
    np.testing.assert_array_equal(masks.hull_mask(shifted, image.shape, "facehull"),
                                  masks.hull_mask(np.floor(landmarks), image.shape, "facehull"))
    rounded = masks.hull_mask(shifted, image.shape, "facehull", masks.MaskConfig(truncate_coordinates=False))
    assert not np.array_equal(rounded, masks.hull_mask(shifted, image.shape, "facehull"))


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


def test_affine_scales_x_and_y_independently():
    """SBI's affine draws the x and y scales independently; isotropic_scale draws one for both."""
    mask = np.zeros((400, 400), np.float32)
    mask[100:300, 100:300] = 1.0
    source = np.zeros((400, 400, 3), np.uint8)

    def scales(cfg: masks.MaskConfig, seed: int) -> tuple[float, float]:
        _, warped = masks.random_affine(source, mask, np.random.default_rng(seed), cfg)
        rows, cols = np.flatnonzero(warped.any(axis=1)), np.flatnonzero(warped.any(axis=0))
        return (cols[-1] - cols[0] + 1) / 200.0, (rows[-1] - rows[0] + 1) / 200.0

    free = masks.MaskConfig(translate_x=0.0, translate_y=0.0, scale_range=(0.8, 1.25))
    ratios = [sx / sy for sx, sy in (scales(free, seed) for seed in range(6))]
    assert max(abs(r - 1.0) for r in ratios) > 0.05  # the aspect ratio changes
    assert masks.MaskConfig().isotropic_scale is False  # SBI's default
    tied = masks.MaskConfig(translate_x=0.0, translate_y=0.0, scale_range=(0.8, 1.25), isotropic_scale=True)
    for seed in range(6):
        sx, sy = scales(tied, seed)
        assert abs(sx - sy) <= 1.5 / 200.0


def test_elastic_deformation(face_crop, rng):
    image, landmarks = face_crop
    mask = masks.hull_mask(landmarks, image.shape, "facehull")
    np.testing.assert_array_equal(masks.elastic_deform(mask, rng, alpha=0.0, sigma=7.0), mask)
    deformed = masks.elastic_deform(mask, rng, alpha=50.0, sigma=7.0)
    assert not np.array_equal(deformed, mask)
    assert deformed.min() >= 0.0 and deformed.max() <= 1.0
    assert abs(deformed.sum() - mask.sum()) < 0.05 * mask.sum()


def test_elastic_field_on_a_coarse_grid_keeps_the_statistics():
    """The smooth displacement field drawn every 3 px and interpolated has the full-resolution field's
    amplitude and correlation length (alpha 50, sigma 7: std about 1.2 px, correlation exp(-d^2 / 4 sigma^2))."""
    stats = {}
    for step in (1, 3):
        rng = np.random.default_rng(0)
        dx = np.stack([masks.elastic_field((200, 180), rng, 50.0, 7.0, step)[0] for _ in range(60)])
        var = float(np.mean(dx * dx))
        stats[step] = (np.sqrt(var), float(np.mean(dx[:, :, :-7] * dx[:, :, 7:])) / var)
    assert stats[3][0] == pytest.approx(stats[1][0], rel=0.1)
    assert stats[3][1] == pytest.approx(np.exp(-0.25), abs=0.05) and stats[1][1] == pytest.approx(np.exp(-0.25), abs=0.05)
    assert masks.MaskConfig().elastic_field_step == 0  # auto: sigma // 2


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
