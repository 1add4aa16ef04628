"""Overlays: maps pasted back into the frame, the verdict, and the region outlined at the pixel threshold."""

from __future__ import annotations

import numpy as np
import pytest

from mfrn.inference.overlays import draw_frame, frame_maps, overlay, write_overlay
from mfrn.inference.results import FaceScore, FrameResult, MediaResult

OUTLINE = np.array([0, 255, 255])  # cyan, on a dark halo


def _face(region_value: float = 1.0, score: float = 0.8) -> FaceScore:
    region = np.zeros((16, 16), np.float32)
    region[4:12, 4:12] = region_value
    return FaceScore([16, 16, 48, 48], score, region_map=region, boundary_map=np.zeros((16, 16), np.float32),
                     crop_window=(16, 16, 48, 48))


def test_overlay_colours_the_regions_and_writes_the_score():
    image = np.full((64, 64, 3), 100, dtype=np.uint8)
    region = np.zeros((16, 16), dtype=np.float32)
    region[8:, 8:] = 1.0
    boundary = np.zeros((16, 16), dtype=np.float32)
    plain = overlay(image, region, boundary)
    assert plain.shape == image.shape and plain.dtype == np.uint8
    assert plain[56, 56, 0] > 150 and plain[56, 56, 1] < 100  # red where the region is
    np.testing.assert_array_equal(plain[20, 40], image[20, 40])  # untouched elsewhere
    assert image[56, 56, 0] == 100  # the input is not modified
    with_score = overlay(image, region, None, score=0.93)
    assert not np.array_equal(with_score[:20, :40], plain[:20, :40])  # the text box
    with pytest.raises(ValueError, match="uint8"):
        overlay(image.astype(np.float32), region, boundary)


def test_maps_are_pasted_back_into_the_crop_window():
    region, boundary = frame_maps((64, 64), [_face()])
    assert region.shape == (64, 64) and region[32, 32] == pytest.approx(1.0) and region[5, 5] == 0
    assert frame_maps((64, 64), [FaceScore([0, 0, 1, 1], 0.1)]) == (None, None)


def test_the_pixel_threshold_outlines_the_region():
    image = np.full((64, 64, 3), 100, np.uint8)
    faint = FrameResult(0, [_face(region_value=0.3)], score=0.8)
    without = draw_frame(image, faint, threshold=0.5)
    outlined = draw_frame(image, faint, threshold=0.5, pixel_threshold=0.25)
    assert not np.all(without == OUTLINE, axis=-1)[20:44, 20:44].any()
    edge = np.all(outlined == OUTLINE, axis=-1)
    assert edge[20:44, 20:44].any(), "the region is outlined where the map reaches the pixel threshold"
    assert not np.all(draw_frame(image, faint, 0.5, pixel_threshold=0.9) == OUTLINE, axis=-1)[20:44, 20:44].any()
    # a faint map is drawn relative to the pixel threshold: at the threshold it is as red as a map at 1 without one
    assert outlined[32, 32, 0] > without[32, 32, 0] + 40
    # a face called real gets no outline (it has no manipulated region to show), the map is still drawn
    real = FrameResult(0, [_face(region_value=0.3, score=0.2)], score=0.2)
    drawn = draw_frame(image, real, threshold=0.5, pixel_threshold=0.25)
    assert not np.all(drawn == OUTLINE, axis=-1)[20:44, 20:44].any() and drawn[32, 32, 0] > 150


def test_write_overlay_png_for_an_image_mp4_for_a_video(tmp_path):
    import av

    image = np.full((64, 64, 3), 100, np.uint8)
    frames = [FrameResult(0, [_face()], score=0.8)]
    still = MediaResult("a.png", "image", 0.8, frames, 1, 1, 0.5, "p")
    assert write_overlay(tmp_path / "a", still, [image]).name == "a.png"
    no_face = MediaResult("b.png", "image", None, [FrameResult(0)], 1, 0, 0.5, "p")
    assert write_overlay(tmp_path / "b", no_face, [image]).is_file()
    video = MediaResult("v.mp4", "video", 0.8, frames * 3, 3, 3, 0.5, "p")
    target = write_overlay(tmp_path / "v", video, [image] * 3, pixel_threshold=0.5)
    with av.open(str(target)) as container:
        assert len(list(container.decode(video=0))) == 3
