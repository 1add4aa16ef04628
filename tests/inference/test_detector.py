"""The ``Detector`` API on real faces: verdicts, no_face, the stored calibration, input checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from mfrn.checkpoint import Calibration, CheckpointError, load_checkpoint, save_checkpoint, set_calibration
from mfrn.inference import NO_FACE, Detector, UncalibratedCheckpointWarning

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return Detector.from_checkpoint(tiny_checkpoint, device="cpu", warn_uncalibrated=False)


def _calibrated(tiny_checkpoint, tmp_path, calibration: Calibration):
    path = tmp_path / "calibrated.pt"
    path.write_bytes(tiny_checkpoint.read_bytes())
    set_calibration(path, calibration)
    return path


def test_detector_on_an_array_scores_each_face(detector, astronaut):
    result = detector(astronaut)
    assert result.kind == "image" and result.ok and not result.no_face and len(result.frames[0].faces) == 1
    face = result.frames[0].faces[0]
    assert face.region_map is not None and face.region_map.shape == (64, 64)
    assert 0.0 <= face.score <= 1.0 and result.score == pytest.approx(face.score)
    assert result.frames[0].score == pytest.approx(face.score)
    assert result.label in ("real", "fake") and result.threshold == 0.5


def test_model_info_says_what_runs(detector, tiny_checkpoint):
    info = detector.model_info()
    assert info["checkpoint"] == str(tiny_checkpoint) and info["model"] == "mfrn"
    assert info["backbone"] == "test_efficientnet" and info["input_size"] == 64
    assert info["threshold"] == 0.5 and "uncalibrated" in info["threshold_rule"] and info["calibration"] is None
    assert info["protocol"].startswith("protocol: 2 evenly spaced frames") and info["mfrn_version"]


def test_channels_last_scoring_matches_the_plain_layout(detector, tiny_checkpoint):
    """The detector runs its convolutions in channels_last (faster on CPU); the scores and maps are the
    model's own, as the checkpoint's model gives them in the default layout."""
    import torch

    from mfrn.inference.checkpoint import load_detector_checkpoint
    from mfrn.models.outputs import fake_probability

    convs = [p for p in detector.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    scores, regions, _ = detector.score_crops(crops)
    plain, _ = load_detector_checkpoint(tiny_checkpoint)
    images = torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        output = plain(images)
    assert not plain.training and all(p.is_contiguous() for p in plain.parameters())
    np.testing.assert_allclose(scores, fake_probability(output).numpy(), atol=1e-5)
    assert regions is not None and regions.shape == (3, 64, 64)


def test_no_face_is_its_own_verdict_never_fake(detector, sample_media):
    """Issue 10 item 1: a file without a face was scored 0.5 and labelled fake."""
    blank = detector(np.full((200, 200, 3), 127, np.uint8))
    assert blank.no_face and blank.label == NO_FACE and blank.score is None
    assert blank.protocol_score == 0.5  # what the evaluation protocol counts for AUC, unchanged
    record = blank.to_json()
    assert record["label"] == "no_face" and record["score"] is None and record["no_face"] is True
    video = detector(sample_media.no_face_video)
    assert video.kind == "video" and video.label == NO_FACE and video.n_frames == 2 and video.n_frames_with_face == 0


def test_wrong_checkpoints_get_clear_errors(tmp_path, tiny_checkpoint):
    import torch

    state = load_checkpoint(tiny_checkpoint)
    state["config"]["model"]["use_noise_stream"] = False  # another model than the weights
    other = tmp_path / "other.pt"
    save_checkpoint(other, state)
    with pytest.raises(CheckpointError, match="does not match"):
        Detector.from_checkpoint(other, device="cpu")
    state["config"]["model"]["no_such_option"] = 1
    save_checkpoint(other, state)
    with pytest.raises(CheckpointError, match="does not fit this mfrn version.*no_such_option"):
        Detector.from_checkpoint(other, device="cpu")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        Detector.from_checkpoint(truncated, device="cpu")
    torch.save({"format": "mfrn-checkpoint-v1"}, tmp_path / "hollow.pt")
    with pytest.raises(CheckpointError, match="no 'model'"):
        Detector.from_checkpoint(tmp_path / "hollow.pt", device="cpu")


def test_a_device_that_is_not_here_is_one_clear_error(tiny_checkpoint):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        Detector.from_checkpoint(tiny_checkpoint, device="cuda")


def test_without_calibration_the_threshold_is_05_and_it_says_so_once(tiny_checkpoint):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = Detector.from_checkpoint(tiny_checkpoint, device="cpu")
    mine = [w for w in caught if issubclass(w.category, UncalibratedCheckpointWarning)]
    assert len(mine) == 1 and "stores no calibration" in str(mine[0].message) and "0.5" in str(mine[0].message)
    assert detector.threshold == 0.5 and detector.temperature is None and detector.pixel_threshold is None
    assert "uncalibrated" in detector.describe_calibration()


def test_the_stored_threshold_decides_the_label(detector, tiny_checkpoint, tmp_path, astronaut):
    score = detector(astronaut).score
    below = _calibrated(tiny_checkpoint, tmp_path, Calibration(max(0.0, score - 0.01), "EER point on validation"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncalibratedCheckpointWarning)  # a calibrated checkpoint does not warn
        calibrated = Detector.from_checkpoint(below, device="cpu")
    result = calibrated(astronaut)
    assert result.score == pytest.approx(score) and result.label == "fake"
    assert result.threshold == pytest.approx(score - 0.01) and result.threshold_rule == "EER point on validation"
    assert "EER point on validation" in calibrated.describe_calibration()
    above = _calibrated(tiny_checkpoint, tmp_path, Calibration(min(1.0, score + 0.01), "fixed FPR 5 %"))
    assert Detector.from_checkpoint(above, device="cpu")(astronaut).label == "real"


def test_the_temperature_scales_the_logits(detector, tiny_checkpoint, tmp_path, astronaut):
    raw = detector(astronaut).score
    path = _calibrated(tiny_checkpoint, tmp_path, Calibration(0.5, "r", temperature=3.0))
    scaled = Detector.from_checkpoint(path, device="cpu")(astronaut).score
    logit = math.log(raw / (1 - raw))  # two-class softmax: P(fake) = sigmoid(l_fake - l_real)
    assert scaled == pytest.approx(1 / (1 + math.exp(-logit / 3.0)), abs=1e-5)


# -- issue 10 item 14: arrays that are not RGB uint8 --------------------------------------------------

def _box(result):
    return np.asarray(result.frames[0].faces[0].box)


@pytest.mark.parametrize("convert", [
    pytest.param(lambda a: a.mean(axis=2).astype(np.uint8), id="grayscale-2d"),
    pytest.param(lambda a: a.mean(axis=2, keepdims=True).astype(np.uint8), id="grayscale-hw1"),
    pytest.param(lambda a: np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]), id="rgba"),
    pytest.param(lambda a: a.astype(np.uint16) * 257, id="uint16"),
    pytest.param(lambda a: a.astype(np.float32) / 255.0, id="float01"),
    pytest.param(lambda a: a[:, ::-1][:, ::-1], id="non-contiguous"),
])
def test_arrays_with_one_obvious_meaning_are_converted(detector, astronaut, convert):
    reference = detector(astronaut)
    result = detector(convert(astronaut))
    assert result.ok and not result.no_face, "the face is found after conversion"
    np.testing.assert_allclose(_box(result), _box(reference), atol=12)


@pytest.mark.parametrize("array, match", [
    pytest.param(np.zeros((0, 0, 3), np.uint8), "no pixels", id="0x0"),
    pytest.param(np.zeros((64, 0), np.uint8), "no pixels", id="64x0"),
    pytest.param(np.zeros((64, 64, 3), bool), "boolean", id="bool"),
    pytest.param(np.zeros((3, 64, 64), np.uint8), "channels-first", id="channels-first"),
    pytest.param(np.full((64, 64, 3), 200.0, np.float32), r"\[0, 1\]", id="float-0-255"),
    pytest.param(np.zeros((64, 64, 3), np.int32), "int32", id="int32"),
    pytest.param(np.zeros((64, 64, 2), np.uint8), "not an image", id="two-channels"),
    pytest.param(np.zeros((2, 64, 64, 3), np.uint8), "not an image", id="a-batch"),
])
def test_other_arrays_are_refused_with_what_is_accepted(detector, array, match):
    with pytest.raises(ValueError, match=match) as caught:
        detector(array)
    assert "accepted: an RGB image as an H x W x 3 array" in str(caught.value)


def test_a_non_array_non_path_is_refused(detector):
    with pytest.raises(TypeError, match="image array or a media path"):
        detector([[1, 2], [3, 4]])


def test_flip_tta_scores_the_mean_logits_of_a_face_and_its_mirror(tiny_checkpoint):
    """``eval.tta_flip``: the face's logits and its mirror image's are averaged before the temperature and the
    softmax, the same rule calibration scores the validation faces by (so the stored threshold fits)."""
    import dataclasses

    import torch

    from mfrn.inference.checkpoint import load_detector_checkpoint
    from mfrn.models.outputs import fake_probability

    plain, spec = load_detector_checkpoint(tiny_checkpoint)
    flipping = Detector.from_checkpoint(tiny_checkpoint, device="cpu", warn_uncalibrated=False,
                                        protocol=dataclasses.replace(spec.protocol, tta_flip=True))
    assert "flip TTA on" in flipping.model_info()["protocol"]
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    scores, _, _ = flipping.score_crops(crops)
    images = torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        own, mirrored = plain(images), plain(torch.flip(images, dims=[3]))
    expected = fake_probability(dataclasses.replace(own, logits=(own.logits + mirrored.logits) / 2)).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert not np.allclose(scores, fake_probability(own).numpy(), atol=1e-4)  # the mirror changed the scores
    # a model whose mirror image changes the logits a lot: the mean of logits, not of probabilities
    from mfrn.models.outputs import DetectorOutput

    class LeftHalf(torch.nn.Module):
        def forward(self, x):
            left, right = x[..., : x.shape[-1] // 2].mean((1, 2, 3)), x[..., x.shape[-1] // 2 :].mean((1, 2, 3))
            return DetectorOutput(logits=torch.stack([0 * right, 8 * left], dim=1))

    stub = Detector(LeftHalf(), spec.crop, flipping.protocol)
    half = np.zeros((64, 64, 3), np.uint8)
    half[:, :32] = 255  # bright left half: fake-looking, its mirror real-looking
    scores, _, _ = stub.score_crops([half])
    image = torch.from_numpy(half.astype(np.float32)[None] / 255.0).permute(0, 3, 1, 2)
    own, mirrored = LeftHalf()(image), LeftHalf()(torch.flip(image, dims=[3]))
    by_logits = fake_probability(dataclasses.replace(own, logits=(own.logits + mirrored.logits) / 2)).numpy()
    by_probabilities = ((fake_probability(own) + fake_probability(mirrored)) / 2).numpy()
    np.testing.assert_allclose(scores, by_logits, atol=1e-6)
    assert abs(float(scores[0]) - float(by_probabilities[0])) > 0.01


def test_the_protocol_follows_a_calibration_learned_with_flip_tta_and_a_mismatch_is_warned(tiny_checkpoint, tmp_path):
    import dataclasses

    from mfrn.inference import CalibrationProtocolWarning

    flipped = _calibrated(tiny_checkpoint, tmp_path, Calibration(0.4, "r", tta_flip=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationProtocolWarning)
        detector = Detector.from_checkpoint(flipped, device="cpu")  # mfrn calibrate --set eval.tta_flip=true
    assert detector.protocol.tta_flip and detector.calibration_mismatch() is None
    no_flip = dataclasses.replace(detector.protocol, tta_flip=False)
    with pytest.warns(CalibrationProtocolWarning, match="learned on scores with flip TTA on.*scores with it off"):
        Detector.from_checkpoint(flipped, device="cpu", protocol=no_flip)
    with pytest.raises(CheckpointError, match="tta_flip must be true or false"):
        Calibration.from_dict({"threshold": 0.5, "rule": "r", "tta_flip": "yes"})
    older = {"threshold": 0.5, "rule": "r"}  # a calibration stored before the field existed
    assert Calibration.from_dict(older).tta_flip is False
