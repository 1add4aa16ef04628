"""The checkpoint format (``mfrn.checkpoint``): the calibration entry, its (de)serialisation and checks."""

from __future__ import annotations

import pytest
import torch

from mfrn.checkpoint import (
    CALIBRATION_KEY,
    Calibration,
    CheckpointError,
    load_checkpoint,
    read_calibration,
    save_checkpoint,
    set_calibration,
)

FULL = Calibration(threshold=0.31, rule="EER point on the validation split (40 real, 40 fake faces)",
                   temperature=2.5, pixel_threshold=0.2, pixel_rule="best IoU on validation fakes (IoU 0.41)")


def test_calibration_travels_through_a_checkpoint_loaded_with_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(1)}, "config": {}, CALIBRATION_KEY: FULL})
    raw = torch.load(path, weights_only=True)  # plain floats and strings: no pickled class
    assert raw[CALIBRATION_KEY] == FULL.to_dict()
    assert read_calibration(load_checkpoint(path), path) == FULL


def test_a_checkpoint_without_calibration_reads_as_none(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {}, "config": {}})
    assert read_calibration(load_checkpoint(path)) is None


def test_set_calibration_adds_and_removes_the_entry(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "config": {"a": 1}})
    set_calibration(path, Calibration(0.7, "fixed by hand"))
    state = load_checkpoint(path)
    assert read_calibration(state) == Calibration(0.7, "fixed by hand")
    assert state["config"] == {"a": 1} and torch.equal(state["model"]["w"], torch.ones(2))
    set_calibration(path, None)
    assert read_calibration(load_checkpoint(path)) is None


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": 1.5, "rule": "x"}, "threshold must be in"),
    ({"threshold": float("nan"), "rule": "x"}, "finite"),
    ({"threshold": 0.5, "rule": " "}, "rule"),
    ({"threshold": 0.5, "rule": "x", "temperature": 0.0}, "temperature must be > 0"),
    ({"threshold": 0.5, "rule": "x", "pixel_threshold": 0.3}, "pixel_rule"),
    ({"threshold": 0.5, "rule": "x", "pixel_threshold": -0.1, "pixel_rule": "y"}, "pixel_threshold must be in"),
    ({"threshold": True, "rule": "x"}, "finite number"),
    ({"threshold": 0.5, "rule": "x", "image_threshold": 0.7}, "image_rule"),
    ({"threshold": 0.5, "rule": "x", "image_threshold": 1.7, "image_rule": "y"}, "image_threshold must be in"),
])
def test_bad_calibrations_are_refused_with_the_field_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Calibration(**kwargs)


def test_a_bad_stored_entry_names_the_file(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {}, "config": {}, CALIBRATION_KEY: {"threshold": 0.4, "rule": "r", "bias": 1}})
    with pytest.raises(CheckpointError, match=r"c\.pt.*unknown calibration field.*bias"):
        read_calibration(load_checkpoint(path), path)
    save_checkpoint(path, {"model": {}, "config": {}, CALIBRATION_KEY: {"threshold": 4.0, "rule": "r"}})
    with pytest.raises(CheckpointError, match=r"c\.pt.*bad calibration entry.*threshold"):
        read_calibration(load_checkpoint(path), path)


def test_describe_names_the_threshold_the_rule_and_the_temperature():
    text = FULL.describe()
    assert "0.31" in text and "EER point on the validation split" in text
    assert "temperature 2.5" in text and "region outline at 0.2" in text
    assert "temperature" not in Calibration(0.5, "r").describe()
