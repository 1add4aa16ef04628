"""MTCNN backend: real detection with facenet-pytorch's weights on skimage's astronaut photo."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from mfrn.faces.backends.mtcnn import (
    WEIGHT_FILES,
    MTCNNConfig,
    MTCNNDetector,
    ONet,
    PNet,
    RNet,
    WeightFetchError,
    _extract_weights,
    fetch_mtcnn_weights,
    locate_mtcnn_weights,
)
from mfrn.faces.base import DETECTORS, build_detector
from mfrn.faces.types import FaceDetection

MIRROR_KEYPOINTS = [1, 0, 2, 4, 3]  # left/right swap of KEYPOINT_NAMES under a horizontal flip


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


@pytest.fixture(scope="session")
def mtcnn_weights():
    """Folder with pnet/rnet/onet.pt: found locally, else fetched once into the mfrn cache."""
    try:
        return locate_mtcnn_weights()
    except FileNotFoundError:
        pass
    try:
        return fetch_mtcnn_weights()
    except WeightFetchError as exc:
        pytest.skip(f"MTCNN weights unavailable: the PyPI registry could not be reached to fetch facenet-pytorch ({exc})")


@pytest.fixture(scope="module")
def detector(mtcnn_weights) -> MTCNNDetector:
    return MTCNNDetector(weights_dir=mtcnn_weights, device="cpu")


@pytest.fixture(scope="module")
def astronaut_detections(detector, astronaut) -> list[FaceDetection]:
    return detector.detect(astronaut)


def test_networks_match_checkpoint_keys(mtcnn_weights):
    for key, net in (("pnet", PNet()), ("rnet", RNet()), ("onet", ONet())):
        state = torch.load(mtcnn_weights / WEIGHT_FILES[key], map_location="cpu", weights_only=True)
        assert set(state) == set(net.state_dict())
        net.load_state_dict(state, strict=True)


def test_finds_the_astronaut(astronaut_detections, astronaut_face):
    assert len(astronaut_detections) == 1
    face = astronaut_detections[0]
    assert isinstance(face, FaceDetection)
    assert face.score > 0.95
    assert iou(face.box, astronaut_face.box) > 0.5


def test_keypoints_inside_box_in_keypoint_order(astronaut_detections, astronaut_face):
    face = astronaut_detections[0]
    x1, y1, x2, y2 = face.box
    assert face.keypoints.shape == (5, 2)
    assert np.all((face.keypoints[:, 0] > x1) & (face.keypoints[:, 0] < x2))
    assert np.all((face.keypoints[:, 1] > y1) & (face.keypoints[:, 1] < y2))
    left_eye, right_eye, nose = face.keypoint("left_eye"), face.keypoint("right_eye"), face.keypoint("nose")
    mouth_left, mouth_right = face.keypoint("mouth_left"), face.keypoint("mouth_right")
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    # the same points as dlib's 68-point model gives, within a few pixels
    assert np.abs(face.keypoints - astronaut_face.keypoints).max() < 0.1 * face.width


def test_batch_equals_single_calls(detector, astronaut, astronaut_detections):
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    cropped = np.ascontiguousarray(astronaut[20:420, 100:400])  # another size: its own batch group
    batch = detector.detect_batch([astronaut, flipped, cropped])
    singles = [astronaut_detections, detector.detect(flipped), detector.detect(cropped)]
    for from_batch, single in zip(batch, singles):
        assert len(from_batch) == len(single) == 1
        np.testing.assert_allclose(from_batch[0].box, single[0].box, atol=1.0)
        np.testing.assert_allclose(from_batch[0].keypoints, single[0].keypoints, atol=1.0)
        assert from_batch[0].score == pytest.approx(single[0].score, abs=1e-3)
    # the crop moves the face by (100, 20): the detection moves with it
    np.testing.assert_allclose(batch[2][0].box + [100, 20, 100, 20], astronaut_detections[0].box, atol=3.0)


def test_flip_mirrors_box_and_keypoints(detector, astronaut, astronaut_detections):
    width = astronaut.shape[1]
    flipped = detector.detect(np.ascontiguousarray(astronaut[:, ::-1]))
    assert len(flipped) == 1
    face, mirrored = astronaut_detections[0], flipped[0]
    mirrored_box = np.array([width - mirrored.box[2], mirrored.box[1], width - mirrored.box[0], mirrored.box[3]])
    assert iou(face.box, mirrored_box) > 0.85
    mirrored_points = mirrored.keypoints[MIRROR_KEYPOINTS].copy()
    mirrored_points[:, 0] = width - mirrored_points[:, 0]
    assert np.abs(mirrored_points - face.keypoints).max() < 0.08 * face.width


def test_no_face_in_flat_image(detector):
    assert detector.detect(np.full((96, 128, 3), 127, np.uint8)) == []
    assert detector.detect_batch([]) == []


def test_rejects_non_rgb_uint8(detector):
    with pytest.raises(ValueError, match="image 0.*uint8"):
        detector.detect(np.zeros((32, 32, 3), np.float32))


def test_registered_and_built_by_name(mtcnn_weights):
    assert "mtcnn" in DETECTORS.names()
    built = build_detector("mtcnn", weights_dir=str(mtcnn_weights), device="cpu", min_face_size=40)
    assert isinstance(built, MTCNNDetector) and built.config.min_face_size == 40
    config = MTCNNConfig(weights_dir=str(mtcnn_weights), device="cpu", thresholds=(0.5, 0.6, 0.7))
    assert MTCNNDetector.from_config(config).config == config


def test_missing_and_wrong_weight_files(mtcnn_weights, tmp_path):
    for name in ("pnet.pt", "rnet.pt"):
        (tmp_path / name).write_bytes((mtcnn_weights / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="onet.pt"):
        locate_mtcnn_weights(tmp_path)
    state = torch.load(mtcnn_weights / "onet.pt", weights_only=True)
    state["dense6_4.weight"] = state.pop("dense6_3.weight")
    torch.save(state, tmp_path / "onet.pt")
    with pytest.raises(ValueError, match=r"onet\.pt.*missing keys.*dense6_3\.weight.*unexpected keys.*dense6_4\.weight"):
        MTCNNDetector(weights_dir=tmp_path, device="cpu")


def test_extracts_weights_from_wheel(mtcnn_weights, tmp_path):
    wheel = tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("facenet_pytorch/__init__.py", "")
        for name in WEIGHT_FILES.values():
            archive.write(mtcnn_weights / name, f"facenet_pytorch/data/{name}")
    target = tmp_path / "cache"
    target.mkdir()
    _extract_weights(wheel, target)
    assert locate_mtcnn_weights(target) == target
    for name in WEIGHT_FILES.values():
        assert (target / name).read_bytes() == (mtcnn_weights / name).read_bytes()
    assert not list(target.glob("*.part"))


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    from mfrn.faces.backends.mtcnn import default_cache_dir

    monkeypatch.setenv("MFRN_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "facenet-pytorch"


def test_min_nms_suppresses_nested_boxes_per_image():
    from mfrn.faces.backends.mtcnn import _nms_min

    boxes = torch.tensor([[0.0, 0, 100, 100], [10, 10, 50, 50], [10, 10, 50, 50], [200, 200, 220, 220]])
    scores = torch.tensor([0.9, 0.95, 0.8, 0.7])
    # box 0 contains box 1 (IoU 0.16, but intersection over the smaller box is 1): only the better one stays;
    # box 2 is the same window in another image, so it survives
    keep = _nms_min(boxes, scores, torch.tensor([0, 0, 1, 0]), threshold=0.7)
    assert keep.tolist() == [1, 2, 3]
