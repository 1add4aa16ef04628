import numpy as np
import pytest

from mfrn.faces.backends.dlib_backend import DlibHogDetector, find_model_file
from mfrn.faces.base import build_detector, keep_large_faces
from mfrn.faces.types import FaceDetection


def test_model_file_is_found_without_importing_the_package():
    path = find_model_file("shape_predictor_68_face_landmarks.dat")
    assert path.is_file() and path.stat().st_size > 1_000_000
    with pytest.raises(FileNotFoundError, match="nope.dat"):
        find_model_file("nope.dat")


def test_auto_upsample_finds_small_faces_and_scans_large_ones_once(astronaut):
    """The astronaut's face (~90 px) is below dlib's 80 px window x sqrt(2): auto re-scans at upsample 1."""
    auto = DlibHogDetector(upsample="auto")
    coarse = DlibHogDetector(upsample=0)
    fine = DlibHogDetector(upsample=1)
    found = auto.detect(astronaut)
    assert found and np.allclose(found[0].box, fine.detect(astronaut)[0].box)
    big = np.ascontiguousarray(np.kron(astronaut[:300, 80:380], np.ones((2, 2, 1), np.uint8)))  # face ~180 px
    assert coarse.detect(big), "a 180 px face is found at upsample 0"
    assert np.allclose(auto.detect(big)[0].box, coarse.detect(big)[0].box)
    with pytest.raises(ValueError, match="upsample"):
        DlibHogDetector(upsample=-1)


def test_keypoints_and_boxes_are_typed(astronaut):
    detections = build_detector("dlib").detect(astronaut)
    assert all(isinstance(d, FaceDetection) for d in detections)
    d = detections[0]
    assert d.keypoints.shape == (5, 2) and d.width > 0 and d.area == pytest.approx(d.width * d.height)
    assert d.keypoint("left_eye")[0] < d.keypoint("right_eye")[0]


def test_keep_rule_keeps_faces_of_at_least_half_the_largest_area():
    dets = [FaceDetection([0, 0, 100, 100], 1.0), FaceDetection([0, 0, 71, 71], 0.9), FaceDetection([0, 0, 70, 70], 0.9)]
    kept = keep_large_faces(dets, 0.5)
    assert [d.width for d in kept] == [100, 71]
    assert keep_large_faces([], 0.5) == []


def test_analyzer_on_a_face_api_group_photo(sample_media, face_analyzer):
    from mfrn.data.media import load_image

    image = load_image(sample_media.multi_face_images[1])
    faces = face_analyzer(image)
    assert len(faces) >= 2
    for face in faces:
        x1, y1, x2, y2 = face.box
        centre = face.landmarks[:68].mean(axis=0)
        assert x1 <= centre[0] <= x2 and y1 <= centre[1] <= y2


def test_detector_keypoints_can_come_from_a_given_predictor_file(astronaut, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.dat"):
        DlibHogDetector(model_path=tmp_path / "missing.dat")
    default = DlibHogDetector().detect(astronaut)[0]
    given = DlibHogDetector(model_path=find_model_file("shape_predictor_68_face_landmarks.dat")).detect(astronaut)[0]
    assert np.allclose(given.keypoints, default.keypoints)


def test_the_100_mb_predictor_is_loaded_once_per_process(astronaut):
    from mfrn.faces.backends.dlib_backend import DlibLandmarker

    detector = DlibHogDetector()
    detector.detect(astronaut)  # loads the keypoint predictor
    assert DlibLandmarker()._predictor is DlibLandmarker()._predictor is detector._keypoint_predictor


def _face_on_canvas(sample_media, face_width: int, canvas_hw: tuple[int, int]) -> np.ndarray:
    """A real photo's face scaled so dlib's box is ``face_width`` px wide, pasted on a grey canvas."""
    import cv2

    from mfrn.data.media import load_image

    photo = load_image(sample_media.single_face_images[0])
    box = DlibHogDetector().detect(photo)[0].box
    scale = face_width / float(box[2] - box[0])
    face = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    height, width = canvas_hw
    canvas = np.full((height, width, 3), 127, np.uint8)
    y, x = (height - face.shape[0]) // 2, (width - face.shape[1]) // 3
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    return canvas


def test_a_small_face_in_a_large_photo_is_found_at_a_larger_scale(sample_media):
    """A 200 px face in a 6000x4000 photo is 21 px at the 640 px working size: the search goes on at larger scales."""
    photo = _face_on_canvas(sample_media, 200, (4000, 6000))
    found = DlibHogDetector().detect(photo)
    assert len(found) == 1
    x1, y1, x2, y2 = found[0].box
    assert 150 < x2 - x1 < 260 and 1800 < x1 < 2200 and 1800 < y1 < 2100, found[0].box  # full-image pixels
    # the working size alone (the search capped at it) misses the face: that was the old behaviour
    assert DlibHogDetector(search_side=640).detect(photo) == []
    # the same face on a canvas within the working size needs no search
    assert len(DlibHogDetector().detect(_face_on_canvas(sample_media, 200, (640, 640)))) == 1


def test_search_scales_keep_small_frames_to_one_pass():
    detector = DlibHogDetector()
    assert detector.search_scales(360, 640) == [1.0]  # video frames within the working size: one pass
    scales = detector.search_scales(4000, 6000)
    assert scales[0] == pytest.approx(640 / 6000) and scales[-1] == 1.0
    assert all(b / a >= np.sqrt(2.0) for a, b in zip(scales, scales[1:]))
    assert DlibHogDetector(search_side=2560).search_scales(4000, 6000)[-1] == pytest.approx(2560 / 6000)
    assert DlibHogDetector(max_side=0).search_scales(4000, 6000) == [1.0]
    with pytest.raises(ValueError, match="search_side"):
        DlibHogDetector(search_side=-5)
