"""Temporally consistent training fakes: drawn once per clip, drifting smoothly, one implementation with SBI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mfrn.faces.crop import CropConfig
from mfrn.synth.clips import ClipBlender, ClipConfig, drift_walk
from mfrn.synth.masks import SynthesisError
from mfrn.synth.sbi import SBIConfig, SelfBlender

SIZE = 64
LENGTH = 6


@pytest.fixture(scope="module")
def moving_clip(astronaut, astronaut_face):
    """The astronaut's face moving right 2 px and down 1 px per frame (a camera pan), LENGTH frames."""
    images, landmarks, boxes = [], [], []
    for t in range(LENGTH):
        dx, dy = 2 * t, t
        images.append(np.roll(astronaut, (dy, dx), axis=(0, 1)))
        landmarks.append(astronaut_face.landmarks + np.float32([dx, dy]))
        boxes.append(astronaut_face.box + np.float32([dx, dy, dx, dy]))
    return images, landmarks, boxes


def sbi_config(**changes) -> SBIConfig:
    return dataclasses.replace(SBIConfig(crop=CropConfig(size=SIZE)), **changes)


def make_clip(moving_clip, seed=0, sbi=None, clip=None, **kwargs):
    images, landmarks, boxes = moving_clip
    return ClipBlender(sbi or sbi_config(), clip)(images, landmarks, boxes, np.random.default_rng(seed), **kwargs)


def test_clip_shapes_and_the_first_frame_is_sbi_itself(moving_clip):
    clip = make_clip(moving_clip, seed=4)
    assert len(clip) == LENGTH
    assert clip.real.shape == clip.fake.shape == (LENGTH, SIZE, SIZE, 3)
    assert clip.region_map.shape == clip.boundary_map.shape == (LENGTH, SIZE, SIZE)
    assert clip.region_map.dtype == np.float32
    images, landmarks, boxes = moving_clip
    single = SelfBlender(sbi_config())(images[0], landmarks[0], boxes[0], np.random.default_rng(4))
    for name in ("real", "fake", "region_map", "boundary_map"):  # one implementation: frame 0 is SBI's pair
        np.testing.assert_array_equal(getattr(clip.frames[0], name), getattr(single, name))


def test_choices_are_drawn_once_per_clip(moving_clip):
    for seed in range(4):
        clip = make_clip(moving_clip, seed=seed)
        first = clip.params[0]
        for params, pair in zip(clip.params, clip.frames):
            assert params.flipped == first.flipped == pair.flipped
            assert params.post_seed == first.post_seed
            np.testing.assert_array_equal(params.margin_scales, first.margin_scales)
            blend = params.blend
            for name in ("used_68_only", "mask_type", "source_transformed", "source_seed", "blur", "ratio"):
                assert getattr(blend, name) == getattr(first.blend, name)
            assert pair.mask_type == first.blend.mask_type and pair.blend_ratio == first.blend.ratio
            assert pair.region_map.max() == pytest.approx(first.blend.ratio, abs=1e-4)


def test_mask_parameters_drift_smoothly_within_bounds(moving_clip):
    cfg = ClipConfig(translate_step=0.004, scale_step=0.004, drift_max_step=2.0, elastic_step=0.25)
    mask = SBIConfig().mask
    moved = 0.0
    for seed in range(6):
        clip = make_clip(moving_clip, seed=seed, clip=cfg)
        affine = np.array([p.blend.affine for p in clip.params])  # (T, 4): tx, ty, sx, sy
        steps = np.abs(np.diff(affine, axis=0))
        assert steps.max() <= cfg.drift_max_step * 0.004 + 1e-12  # no frame jumps
        moved += steps.sum()
        assert (np.abs(affine[:, 0]) <= mask.translate_x).all() and (np.abs(affine[:, 1]) <= mask.translate_y).all()
        assert (affine[:, 2:] >= mask.scale_range[0]).all() and (affine[:, 2:] <= mask.scale_range[1]).all()
        phases = [p.blend.elastic.phase for p in clip.params]
        np.testing.assert_allclose(np.diff(phases), cfg.elastic_step)
        assert all(p.blend.elastic.noise is clip.params[0].blend.elastic.noise for p in clip.params)
        # the boundary moves a little from frame to frame: far less than between two independent fakes
        region = clip.region_map / clip.params[0].blend.ratio
        change = np.abs(np.diff(region, axis=0)).mean(axis=(1, 2))
        assert (change > 0).all()
    assert moved > 0
    independent = [SelfBlender(sbi_config(blend_ratios=(1.0,)))(*[x[0] for x in moving_clip], np.random.default_rng(s))
                   for s in (1, 2)]
    smooth = make_clip(moving_clip, seed=1, sbi=sbi_config(blend_ratios=(1.0,)), clip=cfg).region_map
    assert np.abs(np.diff(smooth, axis=0)).mean() < 0.5 * np.abs(independent[0].region_map - independent[1].region_map).mean()


def test_drift_walk_is_bounded_smooth_and_switchable():
    rng = np.random.default_rng(0)
    walk = drift_walk(rng, 200, 0.01, smoothness=0.9, max_step=2.0)
    assert walk[0] == 0.0 and np.abs(np.diff(walk)).max() <= 0.02 + 1e-12
    rough = drift_walk(np.random.default_rng(0), 200, 0.01, smoothness=0.0, max_step=2.0)
    # correlated steps: successive steps differ less than those of a plain random walk
    assert np.abs(np.diff(walk, 2)).mean() < 0.6 * np.abs(np.diff(rough, 2)).mean()
    assert not drift_walk(rng, 5, 0.0).any()
    with pytest.raises(ValueError, match="drift_smoothness"):
        ClipConfig(drift_smoothness=1.0)


def test_no_drift_gives_one_mask_following_the_face(moving_clip):
    still = ClipConfig(translate_step=0.0, scale_step=0.0, elastic_step=0.0)
    clip = make_clip(moving_clip, seed=2, sbi=sbi_config(p_flip=0.0), clip=still)
    assert len({p.blend.affine for p in clip.params}) == 1
    # the face moved by whole pixels and the crops follow it: without drift, the maps are (nearly) one map
    np.testing.assert_allclose(clip.region_map[1:], clip.region_map[:1].repeat(LENGTH - 1, 0), atol=0.08)


def test_real_clip_and_fake_clip_share_every_frames_window(moving_clip):
    images = moving_clip[0]
    for p_flip in (0.0, 1.0):
        clip = make_clip(moving_clip, seed=3, sbi=sbi_config(p_flip=p_flip, post_transform_enabled=False,
                                                             p_transform_source=1.0))
        windows = [pair.window for pair in clip.frames]
        assert len(set(windows)) > 1  # the crop follows the moving face ...
        for pair, image in zip(clip.frames, images):
            flipped = image[:, ::-1] if pair.flipped else image
            np.testing.assert_array_equal(pair.real, pair.window.image(np.ascontiguousarray(flipped)))
            outside = pair.region_map == 0  # ... and the fake is the real wherever nothing was blended
            np.testing.assert_array_equal(pair.fake[outside], pair.real[outside])


def test_same_seed_same_clip_and_per_frame_sources(moving_clip):
    a, b, c = (make_clip(moving_clip, seed=s) for s in (5, 5, 6))
    for name in ("real", "fake", "region_map", "boundary_map"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.fake, c.fake)
    images = moving_clip[0]
    # RBI: one reconstruction per frame (here: each frame a different solid colour) is blended into its frame
    sources = [np.full_like(image, 40 * t) for t, image in enumerate(images)]
    rbi = make_clip(moving_clip, seed=5, sbi=sbi_config(source_transform_enabled=False, post_transform_enabled=False,
                                                        blend_ratios=(1.0,)), sources=sources)
    for t, pair in enumerate(rbi.frames):
        inside = pair.region_map > 0.999
        assert inside.any() and (np.abs(pair.fake[inside].astype(int) - 40 * t) <= 1).all()
    with pytest.raises(SynthesisError, match="every frame"):
        make_clip(moving_clip, sources=[sources[0]] + [None] * (LENGTH - 1))
    with pytest.raises(SynthesisError, match="as many"):
        ClipBlender(sbi_config())(images, moving_clip[1][:2], moving_clip[2], np.random.default_rng(0))
