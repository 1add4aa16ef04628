"""The built-in generator: a short training run lowers the loss; checkpoints round-trip safely."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfrn.synth.reconstructors import build_reconstructor
from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig, BuiltinReconstructor, LightIdentityEncoder
from mfrn.synth.reconstructors.checkpoints import CheckpointError
from mfrn.synth.reconstructors.train_builtin import (
    BuiltinTrainConfig,
    augment_face_views,
    ssim_torch,
    train_builtin_generator,
)

TINY = BuiltinGeneratorConfig(crop_size=32, base_channels=8, max_channels=16, n_downsample=2, n_blocks=1, identity_dim=32, identity_channels=4, identity_input_size=32)


@pytest.fixture(scope="module")
def trained(astronaut, astronaut_face, tmp_path_factory):
    views = augment_face_views(astronaut, astronaut_face.keypoints, 10, np.random.default_rng(0))
    out = tmp_path_factory.mktemp("gen") / "builtin.pt"
    train = BuiltinTrainConfig(steps=60, batch_size=4, lr=3e-3, seed=0)
    torch.manual_seed(0)
    report = train_builtin_generator(views, TINY, out, val_fraction=0.2, train_cfg=train)
    return report, out, views


def test_short_training_lowers_the_loss(trained):
    report, out, _ = trained
    history = report.loss_history
    assert report.steps == 60 and len(history) == 60
    assert np.mean(history[-10:]) < 0.8 * np.mean(history[:5])
    assert report.n_train == 8 and report.n_val == 2 and not report.val_is_train
    assert np.isfinite(report.val_psnr) and report.val_psnr > 10.0
    assert 0.0 < report.val_ssim <= 1.0
    assert report.seconds > 0 and out.is_file()
    assert "PSNR" in report.format() and str(out) in report.format()


def test_checkpoint_round_trip(trained, astronaut, astronaut_face):
    report, out, _ = trained
    payload = torch.load(out, map_location="cpu", weights_only=True)  # safe to load
    assert payload["config"]["crop_size"] == 32 and payload["extra"]["steps"] == report.steps
    model = BuiltinReconstructor.from_checkpoint(out)
    assert model.cfg == TINY and not model.training
    again = build_reconstructor("builtin", checkpoint=str(out), device=None)
    crop = model.align(astronaut, astronaut_face.keypoints).crop
    first, _ = model.reconstruct_aligned([crop], None, np.random.default_rng(0))
    second, _ = again.reconstruct_aligned([crop], None, np.random.default_rng(0))
    assert np.array_equal(first[0], second[0])


def test_checkpoint_errors(tmp_path):
    other = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="plain.pt"):
        BuiltinReconstructor.from_checkpoint(other)
    external = BuiltinReconstructor(TINY, identity_encoder=LightIdentityEncoder(dim=32))
    path = external.save(tmp_path / "external.pt")
    with pytest.raises(CheckpointError, match="identity_encoder"):
        BuiltinReconstructor.from_checkpoint(path)
    loaded = BuiltinReconstructor.from_checkpoint(path, identity_encoder=external.identity_encoder)
    assert torch.equal(loaded.generator.last_layer[1].weight, external.generator.last_layer[1].weight)


def test_config_checks():
    with pytest.raises(ValueError, match="divisible"):
        BuiltinGeneratorConfig(crop_size=100, n_downsample=3)
    with pytest.raises(ValueError, match="unknown BuiltinGeneratorConfig fields: colour"):
        BuiltinGeneratorConfig.from_dict({"colour": 1})
    assert BuiltinGeneratorConfig(base_channels=32, max_channels=128, n_downsample=3).channels() == [32, 64, 128, 128]


def test_training_rejects_bad_faces(tmp_path):
    with pytest.raises(ValueError, match="training face 0"):
        train_builtin_generator([np.zeros((10, 12, 3), np.uint8)], TINY, tmp_path / "x.pt", steps=1)


def test_ssim_torch_matches_skimage(rng):
    from skimage.metrics import structural_similarity

    a = rng.random((24, 24, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    ours = float(ssim_torch(torch.from_numpy(a).permute(2, 0, 1)[None], torch.from_numpy(b).permute(2, 0, 1)[None]))
    reference = structural_similarity(a, b, channel_axis=2, data_range=1.0, use_sample_covariance=False)
    assert abs(ours - reference) < 0.03
    assert float(ssim_torch(torch.from_numpy(a).permute(2, 0, 1)[None], torch.from_numpy(a).permute(2, 0, 1)[None])) == pytest.approx(1.0, abs=1e-5)
