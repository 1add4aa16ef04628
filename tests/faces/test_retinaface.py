"""RetinaFace backend: checkpoint compatibility (keys/shapes), strict loading, priors and decoding.

The real checkpoint cannot be fetched here, so the network runs with random weights, and with head
weights set by hand where the expected detections must be known exactly.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mfrn.faces.backends.retinaface import (
    RetinaFaceConfig,
    RetinaFaceDetector,
    RetinaFaceNet,
    decode_boxes,
    decode_landmarks,
    prior_boxes,
)
from mfrn.faces.base import DETECTORS, build_detector
from mfrn.faces.types import FaceDetection

# Key names and shapes of biubug6/Pytorch_Retinaface's Resnet50_Final.pth (after stripping "module."):
# torchvision ResNet-50 as body (return layers 2-4 -> 512/1024/2048 channels), FPN and SSH at 256
# channels, 2 anchors per location -> 4 / 8 / 20 head outputs.
CHECKPOINT_SHAPES = {
    "body.conv1.weight": (64, 3, 7, 7),
    "body.bn1.running_mean": (64,),
    "body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "body.layer2.0.conv2.weight": (128, 128, 3, 3),
    "body.layer3.5.bn3.running_var": (1024,),
    "body.layer4.2.conv3.weight": (2048, 512, 1, 1),
    "fpn.output1.0.weight": (256, 512, 1, 1),
    "fpn.output2.0.weight": (256, 1024, 1, 1),
    "fpn.output3.0.weight": (256, 2048, 1, 1),
    "fpn.output3.1.bias": (256,),
    "fpn.merge1.0.weight": (256, 256, 3, 3),
    "fpn.merge2.1.running_mean": (256,),
    "ssh1.conv3X3.0.weight": (128, 256, 3, 3),
    "ssh1.conv5X5_1.0.weight": (64, 256, 3, 3),
    "ssh2.conv5X5_2.0.weight": (64, 64, 3, 3),
    "ssh3.conv7X7_2.0.weight": (64, 64, 3, 3),
    "ssh3.conv7x7_3.0.weight": (64, 64, 3, 3),
    "ssh3.conv7x7_3.1.weight": (64,),
    "ClassHead.0.conv1x1.weight": (4, 256, 1, 1),
    "ClassHead.2.conv1x1.bias": (4,),
    "BboxHead.1.conv1x1.weight": (8, 256, 1, 1),
    "LandmarkHead.2.conv1x1.weight": (20, 256, 1, 1),
    "LandmarkHead.2.conv1x1.bias": (20,),
}
# 318 body + 5 FPN conv_bn x 6 + 3 SSH x 5 conv_bn x 6 + 9 heads x 2 (with BatchNorm step counters)
CHECKPOINT_KEY_COUNT = 456


@pytest.fixture(scope="module")
def random_net() -> RetinaFaceNet:
    torch.manual_seed(0)
    return RetinaFaceNet().eval()


@pytest.fixture(scope="module")
def checkpoint(random_net, tmp_path_factory):
    """The random net saved as the public checkpoint is: a DataParallel state dict ("module." keys)."""
    path = tmp_path_factory.mktemp("retinaface") / "Resnet50_Final.pth"
    torch.save({f"module.{key}": value for key, value in random_net.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def loaded(checkpoint) -> RetinaFaceDetector:
    return RetinaFaceDetector(weights_path=checkpoint, device="cpu", score_threshold=0.0, long_side=0)


def images(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)]


def test_state_dict_matches_public_checkpoint_table(random_net):
    state = random_net.state_dict()
    assert len(state) == CHECKPOINT_KEY_COUNT
    for key, shape in CHECKPOINT_SHAPES.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert not any(key.startswith(("body.fc", "body.avgpool")) for key in state)
    assert {key.split(".")[0] for key in state} == {"body", "fpn", "ssh1", "ssh2", "ssh3", "ClassHead", "BboxHead", "LandmarkHead"}


def test_checkpoint_loads_back_strictly(loaded, random_net):
    reloaded = loaded.net.state_dict()
    for key, value in random_net.state_dict().items():
        assert torch.equal(reloaded[key], value), key


def test_loaded_detector_outputs_typed_detections(loaded, rng):
    batch = images(rng)
    results = loaded.detect_batch(batch)
    assert len(results) == 2
    for detections, image in zip(results, batch):
        assert detections, "score_threshold=0 keeps every prior that survives NMS"
        scores = [d.score for d in detections]
        assert scores == sorted(scores, reverse=True)
        for det in detections:
            assert isinstance(det, FaceDetection)
            assert det.box.dtype == np.float32 and det.keypoints.shape == (5, 2)
            assert 0.0 <= det.score <= 1.0
            assert 0 <= det.box[0] < det.box[2] <= image.shape[1] and 0 <= det.box[1] < det.box[3] <= image.shape[0]
            assert np.isfinite(det.keypoints).all()
    # batching changes nothing for same-size images
    single = loaded.detect(batch[1])
    assert len(single) == len(results[1])
    np.testing.assert_allclose(np.stack([d.box for d in single]), np.stack([d.box for d in results[1]]), atol=1e-2)


def constant_head_detector(random_net: RetinaFaceNet, **settings) -> RetinaFaceDetector:
    """Heads that predict "face, offsets 0" everywhere: every detection must be an anchor box."""
    net = copy.deepcopy(random_net)
    with torch.no_grad():
        for head in [*net.ClassHead, *net.BboxHead, *net.LandmarkHead]:
            head.conv1x1.weight.zero_()
            head.conv1x1.bias.zero_()
        for head in net.ClassHead:
            head.conv1x1.bias.copy_(torch.tensor([0.0, 1.0, 0.0, 1.0]))  # (background, face) per anchor
    return RetinaFaceDetector.from_network(net, device="cpu", **settings)


def test_zero_offsets_decode_to_anchor_boxes(random_net, rng):
    image = images(rng)[0]
    height, width = image.shape[:2]
    detections = constant_head_detector(random_net, score_threshold=0.7, long_side=0).detect(image)
    assert detections
    priors = prior_boxes(height, width).numpy()
    anchor_boxes = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], axis=1)
    anchor_boxes = np.clip(anchor_boxes, 0, [width, height, width, height])
    face_probability = float(torch.softmax(torch.tensor([0.0, 1.0]), 0)[1])
    for det in detections:
        assert det.score == pytest.approx(face_probability, abs=1e-5)
        assert np.abs(anchor_boxes - det.box).max(axis=1).min() < 1e-3
        centre = det.keypoints[0]
        assert np.allclose(det.keypoints, centre)  # all five points sit on the anchor centre
        assert np.abs(priors[:, :2] - centre).max(axis=1).min() < 1e-3


def test_max_side_maps_detections_back_to_the_image(random_net, rng):
    image = images(rng)[0]
    detector = constant_head_detector(random_net, score_threshold=0.7, max_side=32)
    scale = 32 / 80  # the 64x80 image runs at 26x32 (rounded); x scale 32/80
    detections = detector.detect(image)
    assert detections
    for det in detections:
        assert 0 <= det.box[0] < det.box[2] <= 80 and 0 <= det.box[1] < det.box[3] <= 64
    unclipped = [d for d in detections if d.box[0] > 0 and d.box[2] < 80]
    assert unclipped
    widths = {round(d.width * scale) for d in unclipped}
    assert widths <= {16, 32, 64, 128, 256, 512}


def test_sbi_settings_are_the_defaults():
    config = RetinaFaceConfig()
    assert (config.score_threshold, config.nms_threshold, config.long_side, config.max_side) == (0.7, 0.4, 2048, 0)


class _InputSpy(torch.nn.Module):
    """The network, recording the size of every batch it is given."""

    def __init__(self, net: RetinaFaceNet) -> None:
        super().__init__()
        self.net, self.shapes = net, []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.net(x)


def test_long_side_upscales_small_frames_and_maps_boxes_back(random_net, rng):
    """SBI runs the detector at a 2048 px long side: a 64x80 frame at long_side=160 runs at 128x160,
    and every box/keypoint comes back in the 64x80 frame (anchors of 16 px are 8 px there)."""
    image = images(rng)[0]
    detector = constant_head_detector(random_net, score_threshold=0.7, long_side=160)
    detector.net = spy = _InputSpy(detector.net)
    detections = detector.detect(image)
    assert spy.shapes == [(1, 3, 128, 160)]
    assert detections
    priors = prior_boxes(128, 160).numpy() / 2  # network pixels -> frame pixels
    anchor_boxes = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], axis=1)
    anchor_boxes = np.clip(anchor_boxes, 0, [80, 64, 80, 64])
    for det in detections:
        assert 0 <= det.box[0] < det.box[2] <= 80 and 0 <= det.box[1] < det.box[3] <= 64
        assert np.abs(anchor_boxes - det.box).max(axis=1).min() < 1e-3
        assert np.abs(priors[:, :2] - det.keypoints[0]).max(axis=1).min() < 1e-3
    unclipped = [d for d in detections if d.box[0] > 0 and d.box[1] > 0 and d.box[2] < 80 and d.box[3] < 64]
    assert unclipped and {round(2 * d.width) for d in unclipped} <= {16, 32, 64, 128}  # anchors at half scale
    # a large frame goes down to long_side, and max_side caps whatever long_side asks
    assert detector.working_side(1080, 1920) == 160
    assert RetinaFaceDetector.from_network(random_net, device="cpu", long_side=2048, max_side=1024).working_side(64, 80) == 1024
    with pytest.raises(ValueError, match="long_side"):
        RetinaFaceDetector(weights_path="x.pth", long_side=-1)


def test_prior_order_and_count_match_network_outputs(random_net):
    height, width = 45, 70  # odd sizes: every level rounds up
    priors = prior_boxes(height, width)
    expected = sum(2 * -(-height // step) * -(-width // step) for step in (8, 16, 32))
    with torch.no_grad():
        offsets, scores, landmarks = random_net(torch.zeros(1, 3, height, width))
    assert priors.shape == (expected, 4) and offsets.shape == (1, expected, 4)
    assert scores.shape == (1, expected) and landmarks.shape == (1, expected, 10)
    # level 0: row-major cells of stride 8, sizes 16 then 32 at each cell
    np.testing.assert_allclose(priors[:3].numpy(), [[4, 4, 16, 16], [4, 4, 32, 32], [12, 4, 16, 16]])


def test_decoding_formulas():
    priors = torch.tensor([[50.0, 40.0, 20.0, 10.0]])
    offsets = torch.tensor([[1.0, -2.0, 0.0, np.log(2.0) / 0.2]])
    # centre moves by offset * 0.1 * size; height doubles: exp(offset * 0.2) = 2
    np.testing.assert_allclose(decode_boxes(offsets, priors).numpy(), [[52 - 10, 38 - 10, 52 + 10, 38 + 10]], rtol=1e-5)
    points = decode_landmarks(torch.arange(10.0)[None], priors)
    assert points.shape == (1, 5, 2)
    np.testing.assert_allclose(points[0, 1].numpy(), [50 + 2 * 0.1 * 20, 40 + 3 * 0.1 * 10], rtol=1e-5)


def test_wrong_key_fails_naming_it(random_net, tmp_path):
    state = random_net.state_dict()
    state["ssh1.conv7X7_3.0.weight"] = state.pop("ssh1.conv7x7_3.0.weight")  # a plausible typo
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"renamed\.pth.*missing keys.*ssh1\.conv7x7_3\.0\.weight.*unexpected keys.*ssh1\.conv7X7_3\.0\.weight"):
        RetinaFaceDetector(weights_path=path, device="cpu")


def test_wrong_shape_fails_naming_it(random_net, tmp_path):
    state = dict(random_net.state_dict())
    state["ClassHead.0.conv1x1.weight"] = torch.zeros(6, 256, 1, 1)  # three anchors instead of two
    path = tmp_path / "three_anchors.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"shape mismatches.*ClassHead\.0\.conv1x1\.weight: checkpoint \(6, 256, 1, 1\)"):
        RetinaFaceDetector(weights_path=path, device="cpu")


def test_needs_a_weights_path(tmp_path):
    with pytest.raises(ValueError, match="Resnet50_Final.pth.*biubug6/Pytorch_Retinaface"):
        RetinaFaceDetector()
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        RetinaFaceDetector(weights_path=tmp_path / "missing.pth")


def test_refuses_pickled_modules(tmp_path):
    path = tmp_path / "whole_module.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(ValueError, match=r"whole_module\.pth.*weights_only=True.*state_dict"):
        RetinaFaceDetector(weights_path=path, device="cpu")


def test_registered_and_configurable(checkpoint):
    assert "retinaface" in DETECTORS.names()
    detector = build_detector("retinaface", weights_path=str(checkpoint), device="cpu", score_threshold=0.5)
    assert isinstance(detector, RetinaFaceDetector) and detector.config.score_threshold == 0.5
    config = RetinaFaceConfig(weights_path=str(checkpoint), device="cpu", nms_threshold=0.3)
    assert RetinaFaceDetector.from_config(config).config == config
