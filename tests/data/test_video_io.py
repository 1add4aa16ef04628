"""Deterministic H.264 writing (mfrn.data.video_io)."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np
import pytest

from mfrn.data.frames import probe_video, read_frames
from mfrn.data.video_io import encode_h264


@pytest.mark.network
def test_identical_frames_encode_to_identical_bytes(tmp_path):
    """With libx264's mb-tree on, these 528x432 frames came out as 3-5 different files in 10 runs."""
    import cv2

    from mfrn.data.samples import SampleMediaUnavailable, fetch_extra_media
    from tests.data.media_fixtures import sample_cache_root

    try:
        video = fetch_extra_media(sample_cache_root() / "samples").carphone_video
    except SampleMediaUnavailable as error:
        pytest.skip(str(error))
    digests = set()
    for run in range(8):
        frames = [cv2.resize(f.image, (528, 432), interpolation=cv2.INTER_CUBIC) for f in read_frames(video, range(6))]
        path = tmp_path / f"run{run}.mp4"
        encode_h264(path, frames, Fraction(30000, 1001))
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
    info = probe_video(path)
    assert (info.codec, info.n_frames, info.width, info.height) == ("h264", 6, 528, 432)
    assert abs(info.fps - 30000 / 1001) < 1e-6


def test_lossless_masks_stay_binary(tmp_path):
    mask = np.zeros((48, 64, 3), np.uint8)
    mask[10:30, 20:50] = 255
    encode_h264(tmp_path / "mask.mp4", [mask] * 3, 25, crf=0)
    decoded = [f.image for f in read_frames(tmp_path / "mask.mp4", [0, 2])]
    assert all(np.array_equal(d, mask) for d in decoded)


def test_a_height_that_is_not_a_multiple_of_4_encodes(tmp_path):
    """yuv420p chroma of a 50-row frame has 25 rows: OpenCV's I420 packs them across a row boundary
    (this raised "cannot reshape" before)."""
    mask = np.zeros((50, 64, 3), np.uint8)
    mask[10:30, 20:50] = 255
    encode_h264(tmp_path / "h50.mp4", [mask] * 2, 25, crf=0)
    assert np.array_equal(next(iter(read_frames(tmp_path / "h50.mp4", [1]))).image, mask)


def test_bad_frames_are_refused_with_the_file_name(tmp_path):
    with pytest.raises(ValueError, match="odd.mp4: H.264 .* even frame sizes, got 63x48"):
        encode_h264(tmp_path / "odd.mp4", [np.zeros((48, 63, 3), np.uint8)], 25)
    with pytest.raises(ValueError, match="mixed.mp4: frame 1 is 32x32, the video is 64x48"):
        encode_h264(tmp_path / "mixed.mp4", [np.zeros((48, 64, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)], 25)
    with pytest.raises(ValueError, match="none.mp4: no frames"):
        encode_h264(tmp_path / "none.mp4", [], 25)
    assert not any(tmp_path.iterdir()), "nothing is written for refused input"


def test_h264_roundtrip_is_lossy_deterministic_and_keeps_odd_sizes(astronaut):
    from mfrn.data.video_io import h264_roundtrip

    image = np.ascontiguousarray(astronaut[51:252, 100:299])  # 201 x 199: odd sizes
    light, heavy = h264_roundtrip(image, 18), h264_roundtrip(image, 45)
    assert light.shape == heavy.shape == image.shape and light.dtype == np.uint8
    error = [np.abs(out.astype(int) - image.astype(int)).mean() for out in (light, heavy)]
    assert error[0] < 3.0 < error[1] < 20.0  # CRF 45 loses far more than CRF 18
    np.testing.assert_array_equal(h264_roundtrip(image, 45), heavy)
    with pytest.raises(ValueError, match="HxWx3"):
        h264_roundtrip(image[..., 0], 30)
