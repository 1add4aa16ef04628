"""Media in for inference: what decodes of a damaged video is used (and said); API arrays converted."""

from __future__ import annotations

import numpy as np
import pytest

from mfrn.data.media import MediaError
from mfrn.inference.media import as_rgb_image, decode_media


def test_a_partly_readable_video_gives_the_frames_that_decode_with_a_warning(sample_media, media_maker):
    """Issue 10 item 8: detect skipped the whole file; prepare kept the decodable frames."""
    path = media_maker.truncated_copy(sample_media.single_face_video_long, 0.15)
    media = decode_media(path, 8)
    assert media.kind == "video" and media.frames
    assert media.warning and media.warning.startswith("partly readable: scored")
    assert "truncated" in media.warning


def test_an_intact_video_has_no_warning(sample_media):
    media = decode_media(sample_media.single_face_video, 4)
    assert [f.index for f in media.frames] == [0, 24, 47, 71] and media.warning is None and media.n_wanted == 4


def test_a_file_where_nothing_decodes_is_a_media_error(media_maker):
    with pytest.raises(MediaError, match="not a video FFmpeg can open"):
        decode_media(media_maker.text_as("notes.mp4"), 4)


def test_an_image_is_one_frame(sample_media):
    media = decode_media(sample_media.single_face_images[0], 32)
    assert media.kind == "image" and len(media.frames) == 1 and media.n_wanted == 1


def test_conversions_give_rgb_uint8_with_the_right_values():
    gray = np.array([[0, 128], [255, 7]], np.uint8)
    out = as_rgb_image(gray)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out[..., 1], gray)
    np.testing.assert_array_equal(as_rgb_image(np.array([[0, 65535, 257]], np.uint16))[0, :, 0], [0, 255, 1])
    np.testing.assert_array_equal(as_rgb_image(np.array([[0.0, 1.0, 0.5]]))[0, :, 2], [0, 255, 128])
    rgba = np.zeros((1, 1, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)  # fully transparent: alpha is dropped, the colour kept
    np.testing.assert_array_equal(as_rgb_image(rgba)[0, 0], [10, 20, 30])
    rgb = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(as_rgb_image(rgb), rgb)


def test_refusals_name_the_array():
    with pytest.raises(ValueError, match=r"^frame 3: .*NaN"):
        as_rgb_image(np.full((4, 4), np.nan), "frame 3")
