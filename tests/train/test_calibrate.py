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
