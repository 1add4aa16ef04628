"""SBI's landmark and final crops, and the CropWindow shared by images, maps and points."""

from __future__ import annotations

import numpy as np
import pytest

import mfrn.faces.crop as crop
from mfrn.faces.landmarks import flip_landmarks


def test_landmark_crop_margins(astronaut, astronaut_face):
    pts = astronaut_face.landmarks[:68]
    window = crop.landmark_crop_window(astronaut.shape, astronaut_face.landmarks)
    (x_min, y_min), (x_max, y_max) = pts.min(axis=0), pts.max(axis=0)
    w, h = x_max - x_min, y_max - y_min
    assert window.x0 == max(int(np.floor(x_min - w / 2)), 0)
    assert window.x1 == min(int(np.ceil(x_max + w / 2)), astronaut.shape[1])
    assert window.y0 == max(int(np.floor(y_min - h)), 0)
    assert window.y1 == min(int(np.ceil(y_max + 0.4 * h)), astronaut.shape[0])
    assert window.image(astronaut).shape == (window.height, window.width, 3)


def test_test_crop_uses_half_margins(astronaut, astronaut_face):
    box = astronaut_face.box
    image, window = crop.test_crop(astronaut, box, size=96)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    w, h = box[2] - box[0], box[3] - box[1]
    assert abs(window.x0 - (box[0] - w / 8)) <= 1 and abs(window.x1 - (box[2] + w / 8)) <= 1
    assert abs(window.y0 - (box[1] - h / 8)) <= 1 and abs(window.y1 - (box[3] + h / 8)) <= 1
    # the box maps inside the output, with the margins on every side
    mapped = window.box(box)
    assert np.all(mapped[:2] > 0) and np.all(mapped[2:] < 96)


def test_test_crop_falls_back_to_landmark_box(astronaut, astronaut_face):
    image, window = crop.test_crop(astronaut, None, landmarks=astronaut_face.landmarks, size=64)
    assert image.shape == (64, 64, 3)
    inside = window.points(astronaut_face.landmarks[:68])
    assert np.all(inside >= 0) and np.all(inside <= 63)
    with pytest.raises(ValueError, match="box or landmarks"):
        crop.test_crop(astronaut, None)


def test_train_margins_are_random_within_range(astronaut_face):
    box = astronaut_face.box
    w, h = box[2] - box[0], box[3] - box[1]
    cfg = crop.CropConfig(size=64)
    windows = [crop.final_crop_window((512, 512, 3), box, cfg, np.random.default_rng(seed)) for seed in range(20)]
    lefts = np.array([box[0] - win.x0 for win in windows])
    tops = np.array([box[1] - win.y0 for win in windows])
    assert np.all(lefts >= 0.2 * w / 4 - 1) and np.all(lefts <= 0.8 * w / 4 + 1)
    assert np.all(tops >= 0.2 * h / 4 - 1) and np.all(tops <= 0.8 * h / 4 + 1)
    assert len({(win.x0, win.y0, win.x1, win.y1) for win in windows}) > 5


def test_window_is_clipped_to_the_image():
    window = crop.final_crop_window((100, 120, 3), np.array([-10, 80, 40, 130]), crop.CropConfig(size=32))
    assert window.x0 == 0 and window.y1 == 100 and window.x1 <= 120
    assert window.image(np.zeros((100, 120, 3), np.uint8)).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="outside"):
        crop.final_crop_window((100, 120, 3), np.array([300, 300, 340, 340]))


def test_window_maps_points_like_the_image():
    # a horizontal ramp whose value is the x coordinate: after crop + bilinear resize, each output
    # column holds the source x it samples, and window.points must map that x back to the column
    ramp = np.tile(np.arange(200, dtype=np.float32), (150, 1))
    window = crop.CropWindow(30, 20, 130, 120).resized(250)
    out = window.image(ramp)
    cols = np.arange(10, 240)
    xs = out[60, cols]
    mapped = window.points(np.stack([xs, np.full_like(xs, 50.0)], axis=1))
    np.testing.assert_allclose(mapped[:, 0], cols, atol=1e-2)
    # a pure crop keeps pixels where the points say
    plain = crop.CropWindow(30, 20, 130, 120)
    pt = plain.points(np.array([[70.0, 40.0]]))[0]
    img = np.arange(150 * 200, dtype=np.int32).reshape(150, 200)
    assert plain.image(img)[int(pt[1]), int(pt[0])] == img[40, 70]


def test_flip_twice_is_identity(astronaut, astronaut_face):
    image, landmarks, box = astronaut, astronaut_face.landmarks, astronaut_face.box
    f_img, f_lm, f_box = crop.flip_face(image, landmarks, box)
    b_img, b_lm, b_box = crop.flip_face(f_img, f_lm, f_box)
    np.testing.assert_array_equal(b_img, image)
    np.testing.assert_allclose(b_lm, landmarks, atol=1e-4)
    np.testing.assert_allclose(b_box, box, atol=1e-4)
    heat = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    np.testing.assert_array_equal(crop.hflip(crop.hflip(heat)), heat)
    # the flipped image holds the same pixel under the mirrored point, and the eye on the image's left stays first
    x, y = np.round(landmarks[30]).astype(int)
    assert np.array_equal(f_img[y, image.shape[1] - 1 - x], image[y, x])
    assert f_lm[36, 0] < f_lm[45, 0]
    np.testing.assert_allclose(flip_landmarks(f_lm, image.shape[1]), landmarks, atol=1e-4)
