"""Frame sampling and the selective PyAV reader (mfrn.data.frames), on real videos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mfrn.data.frames import (
    DecodeStats,
    FrameSamplingConfig,
    VideoInfo,
    count_decoded_frames,
    decode_all_frames,
    probe_video,
    read_frames,
    read_media_frames,
    sample_indices,
)
from mfrn.data.media import MediaError
from tests.data.media_fixtures import pattern_image

# --- sample_indices ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_frames", [1, 2, 7, 31, 32, 33, 100, 300, 1001])
@pytest.mark.parametrize("n", [1, 2, 8, 32])
def test_sample_indices_properties(n_frames, n):
    indices = sample_indices(n_frames, n)
    assert indices == sorted(set(indices)), "sorted and unique"
    assert all(0 <= i < n_frames for i in indices)
    assert len(indices) == min(n, n_frames)
    if n >= n_frames:
        assert indices == list(range(n_frames))
    if n >= 2:
        assert indices[0] == 0 and indices[-1] == n_frames - 1, "first and last frames included"
    if n >= 2 and n_frames > n:
        steps = np.diff(indices)
        ideal = (n_frames - 1) / (n - 1)
        assert steps.min() >= np.floor(ideal) - 1 and steps.max() <= np.ceil(ideal) + 1, "evenly spaced"
        assert indices != list(range(n)), "not simply the first n frames"


def test_sample_indices_matches_sbi_linspace():
    assert sample_indices(300, 32) == [int(round(x)) for x in np.linspace(0, 299, 32)]
    assert sample_indices(10, 3) == [0, 4, 9]  # linspace gives 0, 4.5, 9; numpy rounds half to even
    assert sample_indices(5, 1) == [0]
    assert sample_indices(0, 8) == [] and sample_indices(8, 0) == []
    with pytest.raises(ValueError):
        sample_indices(-1, 4)


# --- probe_video ---------------------------------------------------------------------------------


def test_probe_counts_frames_like_a_full_decode(sample_media):
    info = probe_video(sample_media.single_face_video)
    assert isinstance(info, VideoInfo) and not info.is_image and not info.truncated
    assert (info.width, info.height, info.codec) == (640, 360, "h264")
    assert info.n_frames == count_decoded_frames(sample_media.single_face_video) == 72
    assert info.fps == pytest.approx(30.0) and info.duration == pytest.approx(72 / 30.0, abs=0.05)


def test_probe_skips_frames_an_edit_list_drops(sample_media):
    # no_face.mp4 stores 98 frames, its edit list shows 95: the count must be the shown ones
    info = probe_video(sample_media.no_face_video)
    assert info.n_frames_declared == 98 and not info.truncated
    assert info.n_frames == count_decoded_frames(sample_media.no_face_video) == 95


# --- read_frames: same pixels as a full decode, less work --------------------------------------


def _naive(path, wanted):
    """The frames a full sequential decode gives at the wanted indices, and the frame count."""
    wanted = set(wanted)
    frames = {}
    count = 0
    for frame in decode_all_frames(path):
        count += 1
        if frame.index in wanted:
            frames[frame.index] = frame.image
    return frames, count


def _check_same(path, indices, reference):
    stats = DecodeStats()
    frames = list(read_frames(path, indices, stats=stats))
    assert [f.index for f in frames] == sorted(set(indices))
    for frame in frames:
        assert frame.image.dtype == np.uint8 and frame.image.shape[2] == 3
        np.testing.assert_array_equal(frame.image, reference[frame.index], err_msg=f"frame {frame.index}")
    assert stats.n_converted == len(set(indices))
    return stats


def test_read_frames_equals_full_decode_single_keyframe_video(sample_media):
    path = sample_media.single_face_video  # 72 frames, one keyframe: decoding only goes forward
    index_sets = [sample_indices(72, 32), sample_indices(72, 8), [0], [71], [3, 3, 40, 5], [10, 11, 12]]
    reference, n_total = _naive(path, set().union(*index_sets))
    for indices in index_sets:
        stats = _check_same(path, indices, reference)
        assert stats.n_seeks == 0
        assert stats.n_decoded <= max(indices) + 1 + 4  # stops soon after the last wanted frame
    assert _check_same(path, [0, 5], reference).n_decoded < n_total


@pytest.mark.slow
def test_read_frames_seeks_and_equals_full_decode_with_b_frames(sample_media):
    path = sample_media.single_face_video_long  # 472 frames, B-frames, 7 keyframes
    index_sets = [sample_indices(472, 8), sample_indices(472, 32), [0, 1, 2, 100, 101, 471], [200], [470, 471],
                  [71, 72, 73, 143, 144]]  # around keyframes (72, 144 start GOPs)
    reference, n_total = _naive(path, set().union(*index_sets))
    assert n_total == probe_video(path).n_frames == 472
    for indices in index_sets:
        _check_same(path, indices, reference)
    sparse = _check_same(path, sample_indices(472, 8), reference)
    assert sparse.n_seeks > 0, "sparse indices far apart must seek"
    assert sparse.n_decoded < n_total, "the seek path decodes fewer frames than a full decode"
    single = _check_same(path, [200], reference)
    assert single.n_seeks == 1 and single.n_decoded <= 72 + 4  # one GOP at most (GOP = 72 frames)


@pytest.mark.slow
def test_read_frames_equals_full_decode_hevc(sample_media):
    path = sample_media.face_then_no_face_video  # HEVC, 169 frames
    indices = sample_indices(169, 8)
    reference, n_total = _naive(path, indices)
    stats = _check_same(path, indices, reference)
    assert stats.n_decoded < n_total


def test_stream_without_timestamps_is_read_sequentially(sample_media, media_maker):
    path = media_maker.raw_h264(sample_media.single_face_video)
    info = probe_video(path)
    assert info.n_frames == 72 and info.codec == "h264"
    reference, _ = _naive(sample_media.single_face_video, [0, 10, 71])
    stats = _check_same(path, [71, 10, 0], reference)  # any order in, increasing order out
    assert stats.n_seeks == 0


def test_read_frames_gives_pts_and_time(sample_media):
    frames = list(read_frames(sample_media.single_face_video, [0, 30]))
    assert frames[0].time == pytest.approx(0.0, abs=1e-6)
    assert frames[1].time == pytest.approx(1.0, abs=1e-3)  # 30 fps
    assert frames[1].pts > frames[0].pts


def test_read_frames_rejects_indices_outside_the_video(sample_media):
    with pytest.raises(ValueError, match="outside 0..71"):
        list(read_frames(sample_media.single_face_video, [0, 72]))


def test_threading_is_configurable_and_gives_the_same_pixels(sample_media):
    path = sample_media.single_face_video
    a = list(read_frames(path, [5, 60], config=FrameSamplingConfig(thread_type="NONE")))
    b = list(read_frames(path, [5, 60], config=FrameSamplingConfig(thread_type="AUTO", decode_threads=2)))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="thread_type"):
        FrameSamplingConfig(thread_type="MANY")
    with pytest.raises(ValueError, match="n_frames"):
        FrameSamplingConfig(n_frames=0)
    assert FrameSamplingConfig().n_frames == 32  # SBI: 32 frames per video


def test_video_in_a_folder_with_spaces_and_non_ascii(sample_media, media_maker):
    path = media_maker.copy(sample_media.single_face_video, f"{media_maker.awkward_folder().name}/clip é 1.mp4")
    info, frames = read_media_frames(path, 4)
    assert info.n_frames == 72 and [f.index for f in frames] == [0, 24, 47, 71]


# --- read_media_frames ---------------------------------------------------------------------------


def test_read_media_frames_video(sample_media):
    stats = DecodeStats()
    info, frames = read_media_frames(sample_media.single_face_video, 8, stats=stats)
    frames = list(frames)
    assert info.n_frames == 72 and not info.is_image
    assert [f.index for f in frames] == sample_indices(72, 8)
    assert all(f.image.shape == (360, 640, 3) for f in frames)
    assert stats.n_converted == 8


def test_read_media_frames_image_is_one_frame(media_maker):
    path, raw = media_maker.exif_rotated(6, suffix=".jpg")
    info, frames = read_media_frames(path, 32)
    frames = list(frames)
    assert info.is_image and info.n_frames == 1
    assert len(frames) == 1 and frames[0].index == 0
    assert frames[0].image.shape == raw.shape[1::-1] + (3,)  # EXIF orientation applied
    assert (info.height, info.width) == frames[0].image.shape[:2]


def test_read_media_frames_image_too_large(media_maker):
    path = media_maker.huge_png(12000, 12000)
    with pytest.raises(MediaError, match="too large"):
        read_media_frames(path, 1)


def test_read_frames_of_an_image_file_through_ffmpeg(media_maker):
    path = media_maker.path("still.png")
    image = pattern_image()
    Image.fromarray(image).save(path)
    frames = list(read_frames(path, [0]))
    np.testing.assert_array_equal(frames[0].image, image)


# --- failures ---------------------------------------------------------------------------------------


def _assert_media_error(path, reason_part, call=probe_video):
    with pytest.raises(MediaError) as caught:
        call(path)
    assert caught.value.path == path
    assert reason_part in caught.value.reason, caught.value.reason
    assert str(path) in str(caught.value)


def test_zero_byte_video(media_maker):
    _assert_media_error(media_maker.zero_byte("empty.mp4"), "empty file")
    _assert_media_error(media_maker.zero_byte("empty2.mp4"), "empty file", lambda p: read_media_frames(p, 8))


def test_missing_video(media_maker):
    _assert_media_error(media_maker.root / "nope.mp4", "no such file")


def test_text_file_named_mp4(media_maker):
    _assert_media_error(media_maker.text_as("not_a_video.mp4"), "not a video")


_RELEASE_NOTES = "Release notes\n=============\n\n" + "A line of text such as a README or an .nfo file holds.\n" * 40


@pytest.mark.parametrize("name", ["notes.nfo", "README.txt", "credits.diz", "notes_named_as.mp4"])
def test_text_files_are_not_videos(media_maker, name):
    """FFmpeg's tty reader draws a text file's characters as frames: the file is refused, not read as a video."""
    path = media_maker.path(name)
    path.write_text(_RELEASE_NOTES, encoding="utf-8")
    for call in (probe_video, lambda p: read_media_frames(p, 4), lambda p: list(decode_all_frames(p))):
        _assert_media_error(path, "not a video", call)


def test_text_file_reason_names_the_text_reader(media_maker):
    path = media_maker.path("notes.nfo")
    path.write_text(_RELEASE_NOTES, encoding="utf-8")
    _assert_media_error(path, "a text file", lambda p: read_media_frames(p, 4))


def test_a_still_image_with_a_video_name_is_refused_but_read_under_its_own_name(sample_media, media_maker):
    photo = media_maker.copy(sample_media.single_face_images[0], "photo_named_as.mp4")
    _assert_media_error(photo, "still image (mjpeg", lambda p: read_media_frames(p, 4))
    info, frames = read_media_frames(media_maker.copy(photo, "photo.jpg"), 4)
    assert info.is_image and len(list(frames)) == 1


def test_file_without_video_stream(media_maker):
    _assert_media_error(media_maker.audio_only(), "no video stream (streams: audio)")


def test_unsupported_codec(sample_media, media_maker):
    _assert_media_error(media_maker.unknown_codec_video(sample_media.single_face_video), "unsupported codec")


def test_truncated_video_without_index_cannot_be_opened(sample_media, media_maker):
    # single_face.mp4 keeps its index (moov) at the end: cut in half, nothing can be located
    path = media_maker.truncated_copy(sample_media.single_face_video, 0.5)
    _assert_media_error(path, "not a video FFmpeg can open")


def test_truncated_video_yields_what_it_can_then_raises(sample_media, media_maker):
    # WolfgangLanger_Pexels.mp4 has its index first: cut at 15 %, only the first frames remain
    path = media_maker.truncated_copy(sample_media.single_face_video_long, 0.15)
    info = probe_video(path)
    assert info.truncated and info.n_frames_declared == 472 and 0 < info.n_frames < 472
    reference, _ = _naive_tolerant(path)
    wanted = sample_indices(info.n_frames, 8)
    got = []
    with pytest.raises(MediaError) as caught:
        for frame in read_frames(path, wanted):
            got.append(frame)
    assert "truncated" in caught.value.reason and "472" in caught.value.reason
    assert got, "the frames before the cut are delivered"
    for frame in got:  # the delivered frames are the true ones
        np.testing.assert_array_equal(frame.image, reference[frame.index])


@pytest.mark.slow
def test_damage_mid_file_skips_the_damaged_frames_and_goes_on(sample_media, media_maker):
    path = media_maker.corrupted_copy(sample_media.single_face_video_long, at=0.5)
    info = probe_video(path)
    assert info.n_frames == 472 and not info.truncated  # the index is intact, the data is not
    reference, n_naive = _naive_tolerant(path)
    assert n_naive < 472, "a plain sequential decode stops at the damage"
    wanted = sample_indices(472, 32)
    got = []
    with pytest.raises(MediaError, match="could not decode frames") as caught:
        for frame in read_frames(path, wanted):
            got.append(frame)
    indices = [f.index for f in got]
    assert indices[0] == 0 and indices[-1] == 471, "frames after the damage are still delivered"
    missing = sorted(set(wanted) - set(indices))
    assert missing and str(missing[0]) in caught.value.reason
    for frame in got:
        if frame.index in reference:
            np.testing.assert_array_equal(frame.image, reference[frame.index])


def _naive_tolerant(path):
    frames = {}
    try:
        for frame in decode_all_frames(path):
            frames[frame.index] = frame.image
    except MediaError:
        pass
    return frames, len(frames)
