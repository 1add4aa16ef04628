"""The reconstructor interface: alignment, latent noise, paste-back, errors (tiny built-in generator)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mfrn.synth.reconstructors import RBINoiseConfig, ReconstructionError, build_reconstructor
from mfrn.synth.reconstructors.align import (
    arcface_templates,
    ffhq_templates,
    invert_affine,
    similarity_transform,
    transform_points,
)
from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig, BuiltinReconstructor
from mfrn.synth.reconstructors.noise import add_latent_noise

TINY = BuiltinGeneratorConfig(crop_size=64, base_channels=8, max_channels=32, n_downsample=2, n_blocks=2, identity_dim=64, identity_channels=8, identity_input_size=32)


@pytest.fixture(scope="module")
def tiny() -> BuiltinReconstructor:
    torch.manual_seed(0)
    return BuiltinReconstructor(TINY).eval()


def test_encode_decode_shapes(tiny):
    with torch.no_grad():
        identity, background = tiny.encode(torch.rand(3, 3, 64, 64))
        out = tiny.decode(identity, background)
    assert identity.shape == (3, 64)
    assert torch.allclose(identity.norm(dim=1), torch.ones(3), atol=1e-5)
    assert background.shape == (3, 32, 16, 16)
    assert out.shape == (3, 3, 64, 64) and out.min() >= 0 and out.max() <= 1


def test_noise_switches_do_what_they_say(tiny, astronaut, astronaut_face):
    crop = tiny.align(astronaut, astronaut_face.keypoints).crop
    clean, draws = tiny.reconstruct_aligned([crop], None, np.random.default_rng(0))
    assert draws[0].background_sigma == 0 and draws[0].identity_sigma == 0
    for off in (RBINoiseConfig(sigma_background=0.0), RBINoiseConfig(p_background=0.0)):
        same, draws = tiny.reconstruct_aligned([crop], off, np.random.default_rng(1))
        assert np.array_equal(same[0], clean[0]) and draws[0].background_sigma == 0
    noisy, draws = tiny.reconstruct_aligned([crop], RBINoiseConfig(p_background=1.0, sigma_background=0.5), np.random.default_rng(1))
    assert draws[0].background_sigma > 0
    assert not np.array_equal(noisy[0], clean[0])
    # same seed, same noise: reproducible
    again, _ = tiny.reconstruct_aligned([crop], RBINoiseConfig(p_background=1.0, sigma_background=0.5), np.random.default_rng(1))
    assert np.array_equal(again[0], noisy[0])


def test_identity_noise_keeps_unit_norm():
    identity = torch.nn.functional.normalize(torch.randn(4, 512), dim=1)
    background = torch.randn(4, 8, 4, 4)
    cfg = RBINoiseConfig(p_background=0.0, p_identity=1.0, sigma_identity=0.05)
    new_id, new_bg, draws = add_latent_noise(identity, background, cfg, np.random.default_rng(0))
    assert torch.equal(new_bg, background)
    assert torch.allclose(new_id.norm(dim=1), torch.ones(4), atol=1e-5)
    assert (new_id - identity).abs().max() > 1e-3
    assert all(d.identity_sigma == 0.05 and d.background_sigma == 0 for d in draws)
    assert torch.allclose(identity.norm(dim=1), torch.ones(4))  # inputs untouched


def test_noise_config_validates():
    with pytest.raises(ValueError, match="p_background"):
        RBINoiseConfig(p_background=1.5)
    with pytest.raises(ValueError, match="sigma_identity"):
        RBINoiseConfig(sigma_identity=-1)


def test_similarity_transform_recovers_a_known_one():
    template = arcface_templates(224, frontal_only=True)[0]
    angle, scale = np.deg2rad(17.0), 0.6
    known = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 12.0], [scale * np.sin(angle), scale * np.cos(angle), -30.0]])
    keypoints = transform_points(invert_affine(known), template)
    assert np.allclose(similarity_transform(keypoints, template), known, atol=1e-8)


def test_alignment_round_trip_puts_keypoints_back(tiny, astronaut, astronaut_face):
    """Mark the template points in the aligned crop, warp it back: the marks land on the keypoints."""
    keypoints = astronaut_face.keypoints
    aligned = tiny.align(astronaut, keypoints)
    assert aligned.crop.shape == (64, 64, 3) and aligned.error < 0.1 * 64
    template = tiny.templates[aligned.template_index]
    height, width = astronaut.shape[:2]
    for point, target in zip(template, keypoints):
        marker = np.zeros((64, 64), np.float32)
        cv2.circle(marker, (int(round(point[0] * 16)), int(round(point[1] * 16))), 16, 1.0, -1, shift=4)
        back = cv2.warpAffine(marker, aligned.inverse_matrix, (width, height), flags=cv2.INTER_LINEAR)
        ys, xs = np.nonzero(back > 0)
        weights = back[ys, xs]
        centroid = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
        mapped = transform_points(aligned.inverse_matrix, point[None])[0]
        assert np.linalg.norm(centroid - mapped) < 1.0
    # the warped keypoints are near the template (a real face is not exactly a similarity of it)
    assert np.abs(transform_points(aligned.matrix, keypoints) - template).max() < 0.15 * 64


def test_templates_scale_with_crop():
    assert np.allclose(arcface_templates(224)[2][0], (79.46, 102.276))
    assert arcface_templates(224).shape == (5, 5, 2)
    assert np.allclose(ffhq_templates(256)[0][0], (96.49, 119.975))


def test_paste_back_changes_pixels_only_near_the_face(tiny, astronaut, astronaut_face, rng):
    (result,) = tiny.reconstruct_batch([astronaut], [astronaut_face.keypoints], RBINoiseConfig(), rng)
    assert result.image.shape == astronaut.shape and result.image.dtype == np.uint8
    assert result.face.shape == (64, 64, 3)
    height, width = astronaut.shape[:2]
    footprint = cv2.warpAffine(np.ones((64, 64), np.float32), result.aligned.inverse_matrix, (width, height)) > 0
    assert footprint.sum() < 0.5 * footprint.size
    assert np.array_equal(result.image[~footprint], astronaut[~footprint])
    assert np.all(result.paste_mask[~footprint] == 0)
    assert result.paste_mask.max() > 0.9 and result.paste_mask.min() >= 0
    changed = np.any(result.image != astronaut, axis=2)
    assert changed.sum() > 100 and not changed[~footprint].any()
    assert result.noise.background_sigma > 0  # default config: background noise with p = 1


@pytest.mark.parametrize(
    "keypoints, reason",
    [(None, "no keypoints"), (np.full((5, 2), 100.0), "one point"), (np.full((5, 2), np.nan), "NaN"), (np.zeros((3, 2)), "five")],
)
def test_bad_keypoints_raise_reconstruction_error(tiny, astronaut, keypoints, reason):
    with pytest.raises(ReconstructionError, match=reason):
        tiny.align(astronaut, keypoints)


def test_batch_error_names_the_face(tiny, astronaut, astronaut_face):
    with pytest.raises(ReconstructionError, match="face 1: no keypoints") as info:
        tiny.reconstruct_batch([astronaut, astronaut], [astronaut_face.keypoints, None])
    assert info.value.index == 1


def test_non_finite_output_raises(tiny, astronaut, astronaut_face, monkeypatch):
    monkeypatch.setattr(tiny, "decode", lambda identity, background: torch.full((len(identity), 3, 64, 64), float("nan")))
    with pytest.raises(ReconstructionError, match="non-finite"):
        tiny.reconstruct_batch([astronaut], [astronaut_face.keypoints])


def test_registry_builds_by_name():
    model = build_reconstructor("builtin", cfg=TINY)
    assert isinstance(model, BuiltinReconstructor) and model.crop_size == 64
    with pytest.raises(KeyError, match="unknown reconstructor 'nope'"):
        build_reconstructor("nope")
