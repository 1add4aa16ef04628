"""Calibration at the end of training and `mfrn calibrate` for older checkpoints: one code path."""

from __future__ import annotations

import pytest

from mfrn.checkpoint import load_checkpoint, read_calibration, set_calibration
from mfrn.cli import main
from mfrn.config import load_config
from mfrn.data.manifest import Manifest
from mfrn.synth.dataset import split_faces
from mfrn.train.loop import train
from tests.train.test_loop import tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(prepared_faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated") / "run"
    config = load_config(None, tiny(prepared_faces, out, "train.epochs=2", "train.sam=false"))
    return train(config, progress=False)


def test_training_stores_a_calibration_in_every_checkpoint_it_wrote(trained_run, prepared_faces, capsys):
    result = trained_run
    paths = [result.selected_checkpoint, result.best_checkpoint, result.last_checkpoint]
    calibrations = [read_calibration(load_checkpoint(path)) for path in paths]
    assert all(c is not None for c in calibrations)
    cal = calibrations[0]
    assert cal.rule.startswith("val_fpr: at most 5% of") and cal.temperature is None
    assert 0.0 <= cal.threshold <= 1.0 and cal.pixel_threshold is not None and cal.pixel_rule.startswith("iou")
    report = result.calibration.reports[result.selected_checkpoint]
    assert report.val_fpr <= 0.05 and report.n_real == report.n_fake > 0
    # counted on the validation videos (as detect scores a video); single images keep a face-level threshold
    videos = {face.record.key for face in split_faces(Manifest(prepared_faces), "val", 0.2, 0, "largest")}
    assert report.unit == "video" and report.n_real_units == len(videos) <= report.n_real
    assert f"of {len(videos)} validation real videos" in cal.rule
    assert cal.image_threshold is not None and f"of {report.n_real} validation real faces" in cal.image_rule
    # the report printed at the end of training is what was stored
    assert report.calibration == cal


def test_mfrn_calibrate_redoes_it_on_an_older_checkpoint(trained_run, tmp_path, capsys):
    path = trained_run.selected_checkpoint
    stored = read_calibration(load_checkpoint(path))
    set_calibration(path, None)  # an older checkpoint: no calibration
    assert main(["calibrate", str(path), "--device", "cpu"]) == 0
    assert read_calibration(load_checkpoint(path)) == stored  # the same code and the same validation pairs
    printed = capsys.readouterr().out
    assert "calibration: verdict threshold" in printed and "validation:" in printed
    assert main(["calibrate", str(path), "--set", "calibration.rule=eer", "--set", "calibration.temperature=fit"]) == 0
    eer = read_calibration(load_checkpoint(path))
    assert eer.rule.startswith("eer") and eer.temperature is not None
    set_calibration(path, stored)


def test_mfrn_calibrate_says_what_is_missing(trained_run, tmp_path, capsys):
    assert main(["calibrate", str(trained_run.selected_checkpoint), "--set", f"data.prepared={tmp_path / 'gone'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_calibration_scores_each_face_as_the_protocol_does_flip_tta_included():
    """With the protocol's ``tta_flip`` the validation logits are the mean of each face's and its mirror's:
    the threshold is learned on the scores ``detect`` will compare with it."""
    import numpy as np
    import torch

    from mfrn.models.outputs import DetectorOutput
    from mfrn.train.calibrate import collect_validation

    class LeftHalf(torch.nn.Module):  # logits that tell a face from its mirror image
        def forward(self, x):
            left, right = x[..., : x.shape[-1] // 2].mean((1, 2, 3)), x[..., x.shape[-1] // 2 :].mean((1, 2, 3))
            return DetectorOutput(logits=torch.stack([right, 3 * left], dim=1))

    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    batch = {"image": images, "label": torch.tensor([0, 1, 0, 1]), "region_map": torch.zeros(4, 8, 8),
             "key": ["a#0", "b#0"]}
    model = LeftHalf()
    plain = collect_validation(model, [batch], torch.device("cpu"))
    flipped = collect_validation(model, [batch], torch.device("cpu"), flip=True)
    with torch.no_grad():
        mirrored = model(torch.flip(images, dims=[3])).logits.numpy()
    np.testing.assert_allclose(plain.logits, model(images).logits.numpy(), atol=1e-6)
    np.testing.assert_allclose(flipped.logits, (plain.logits + mirrored) / 2, atol=1e-6)
    assert not np.allclose(flipped.logits, plain.logits)
    # calibrate_model scores them as its protocol says, and the calibration records it
    from mfrn.calibration import CalibrationConfig, choose_calibration
    from mfrn.inference.protocol import ProtocolConfig
    from mfrn.train.calibrate import calibrate_model

    config = CalibrationConfig(unit="face")
    report = calibrate_model(model, [batch], torch.device("cpu"), config, protocol=ProtocolConfig(tta_flip=True))
    expected = choose_calibration(config, flipped.logits, flipped.labels).calibration
    assert report.calibration.tta_flip and report.calibration.threshold == expected.threshold
    assert "flip-TTA" in report.calibration.describe()
    assert not calibrate_model(model, [batch], torch.device("cpu"), config, protocol=ProtocolConfig()).calibration.tta_flip
