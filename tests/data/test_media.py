"""Image loading, media-type checks and path expansion (mfrn.data.media)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from mfrn.data.media import (
    MediaError,
    _apply_orientation,
    check_readable_file,
    is_image,
    is_video,
    iter_media,
    list_media,
    load_image,
)
from tests.data.media_fixtures import pattern_image

# --- load_image: ordinary and awkward pixel formats ------------------------------------------


def test_rgb_png_round_trips_exactly(media_maker):
    expected = pattern_image()
    path = media_maker.path("plain.png")
    Image.fromarray(expected).save(path)
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == expected.shape
    np.testing.assert_array_equal(image, expected)


def test_grayscale_becomes_three_equal_channels(media_maker):
    path, gray = media_maker.grayscale_png()
    image = load_image(path)
    assert image.shape == gray.shape + (3,)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_palette_image_gives_the_colours_it_shows(media_maker):
    path, shown = media_maker.palette_png()
    np.testing.assert_array_equal(load_image(path), shown)


def test_rgba_drops_alpha_and_keeps_colour(media_maker):
    path, rgba = media_maker.rgba_png()
    image = load_image(path)
    assert image.shape == rgba.shape[:2] + (3,)
    np.testing.assert_array_equal(image, rgba[..., :3])


def test_sixteen_bit_rgb_png_is_scaled_not_truncated(media_maker):
    path, rgb16 = media_maker.png16_rgb()
    image = load_image(path)
    expected = np.rint(rgb16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(image, expected)
    assert image[0, -1, 0] == 255 and image[0, 0, 0] == 0
    assert (image[..., 2] == 1).all()  # scaled, not Pillow's high-byte truncation (0)


def test_sixteen_bit_grayscale_png_is_scaled(media_maker):
    path, gray16 = media_maker.png16_gray()
    image = load_image(path)
    expected = np.rint(gray16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 0], expected)
    np.testing.assert_array_equal(image[..., 2], expected)


def test_cmyk_jpeg_converts_to_rgb(media_maker):
    image = load_image(media_maker.cmyk_jpeg())
    assert image.shape == (32, 64, 3) and image.dtype == np.uint8
    red = image[8:24, 4:28].reshape(-1, 3).mean(axis=0)
    black = image[8:24, 36:60].reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60, red
    assert black.max() < 40, black


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied(media_maker, orientation):
    path, raw = media_maker.exif_rotated(orientation, suffix=".jpg")
    image = load_image(path)
    with Image.open(path) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    np.testing.assert_array_equal(image, expected)
    if orientation in (5, 6, 7, 8):  # quarter turns swap height and width
        assert image.shape[:2] == raw.shape[1::-1]
    if orientation == 6:  # stored image must be turned 90 degrees clockwise to show upright
        np.testing.assert_array_equal(image, np.rot90(raw, -1))


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_numpy_orientation_matches_pillow(orientation):
    array = pattern_image(5, 7)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(_apply_orientation(array, orientation), expected)


def test_sample_photos_load(sample_media):
    for path in [sample_media.single_face_images[0], sample_media.grayscale_image, sample_media.alpha_image]:
        image = load_image(path)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    with Image.open(sample_media.alpha_image) as opened:
        assert opened.mode == "RGBA"
        assert load_image(sample_media.alpha_image).shape == (opened.height, opened.width, 3)


# --- load_image: refusals ----------------------------------------------------------------------


def test_huge_image_is_refused_from_its_header(media_maker):
    path = media_maker.huge_png(12000, 12000)
    start = time.perf_counter()
    with pytest.raises(MediaError) as caught:
        load_image(path)
    assert time.perf_counter() - start < 1.0
    assert caught.value.path == path
    assert "12000x12000" in caught.value.reason and "max_pixels" in caught.value.reason
    assert str(path) in str(caught.value)


def test_pillow_decompression_bomb_guard_becomes_media_error(media_maker):
    path = media_maker.huge_png(20000, 20000)  # 400 Mpx: beyond twice Pillow's own limit
    with pytest.raises(MediaError, match="too large") as caught:
        load_image(path, max_pixels=10**10)
    assert caught.value.path == path


def test_max_pixels_is_a_limit_not_a_constant(media_maker):
    path = media_maker.path("small.png")
    Image.fromarray(pattern_image(10, 10)).save(path)
    assert load_image(path, max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(MediaError, match="max_pixels=99"):
        load_image(path, max_pixels=99)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda m: m.zero_byte("empty.jpg"), "empty file"),
        (lambda m: m.root / "missing.jpg", "no such file"),
        (lambda m: m.awkward_folder(), "directory"),
        (lambda m: m.text_as("words.jpg"), "not an image"),
    ],
    ids=["zero-byte", "missing", "directory", "text"],
)
def test_unreadable_inputs_raise_media_error_naming_the_file(media_maker, make, reason):
    path = make(media_maker)
    with pytest.raises(MediaError) as caught:
        load_image(path)
    assert reason in caught.value.reason
    assert caught.value.path == Path(path)
    assert str(path) in str(caught.value)


def test_truncated_jpeg_raises_media_error(media_maker, sample_media):
    path = media_maker.truncated_copy(sample_media.multi_face_images[0], 0.3)
    with pytest.raises(MediaError, match="cannot decode") as caught:
        load_image(path)
    assert caught.value.path == path


def test_media_error_survives_pickling():
    error = pickle.loads(pickle.dumps(MediaError("/x/y.mp4", "bad data")))
    assert error.path == Path("/x/y.mp4") and error.reason == "bad data"
    assert str(error) == "/x/y.mp4: bad data"


# --- types by extension ----------------------------------------------------------------------


def test_media_type_by_extension_is_case_insensitive():
    assert is_image("a/b.JPG") and is_image(Path("c.png")) and is_image("x.webp")
    assert is_video("a/b.MP4") and is_video("clip.mov") and is_video("v.avi")
    assert not is_image("clip.mp4") and not is_video("photo.jpeg")
    assert not is_image("notes.txt") and not is_video("notes.txt") and not is_image("noext")


# --- iter_media ----------------------------------------------------------------------------------


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_iter_media_expands_folders_sorted_and_recursively(tmp_path):
    root = tmp_path / "media"
    b = _touch(root / "b.mp4")
    a = _touch(root / "a.JPG")
    nested = _touch(root / "sub" / "c.png")
    _touch(root / "notes.md")
    _touch(root / ".hidden.jpg")
    _touch(root / ".cache" / "d.jpg")
    assert list(iter_media([root])) == [a, b, nested]
    assert list(iter_media([root], recursive=False)) == [a, b]
    assert list(iter_media([str(root)])) == list(iter_media([root]))  # str and Path alike


def test_iter_media_reads_list_files_relative_to_themselves(tmp_path):
    one = _touch(tmp_path / "clips" / "one.mp4")
    two = _touch(tmp_path / "photos" / "two.jpg")
    listing = tmp_path / "lists" / "items.txt"
    listing.parent.mkdir()
    listing.write_text(f"# test items\n\n../clips/one.mp4\n{two}\n  \n../clips/one.mp4\n", encoding="utf-8")
    assert [p.resolve() for p in iter_media([listing])] == [one.resolve(), two.resolve()]


def test_iter_media_handles_spaces_and_non_ascii(media_maker):
    folder = media_maker.awkward_folder()
    video = _touch(folder / "vidéo n°1 – 顔.mp4")
    image = _touch(folder / "visage été.jpg")
    listing = folder / "liste à lire.txt"
    listing.write_text("\ufeffvidéo n°1 – 顔.mp4\n", encoding="utf-8")  # with a byte-order mark
    assert list(iter_media([folder])) == [video, image]
    assert [p.resolve() for p in iter_media([listing])] == [video.resolve()]


def test_iter_media_yields_each_file_once_and_single_files_as_given(tmp_path):
    clip = _touch(tmp_path / "clip.mp4")
    odd = _touch(tmp_path / "video_without_extension")
    assert list(iter_media([clip, tmp_path, odd, clip])) == [clip, odd]


def test_iter_media_missing_path_and_self_including_list(tmp_path):
    with pytest.raises(MediaError, match="no such file") as caught:
        list(iter_media([tmp_path / "gone"]))
    assert caught.value.path == tmp_path / "gone"
    loop = tmp_path / "loop.txt"
    loop.write_text("loop.txt\n", encoding="utf-8")
    with pytest.raises(MediaError, match="includes itself"):
        list(iter_media([loop]))


def test_symlink_loop_and_broken_link_are_yielded_for_the_reader_to_refuse(tmp_path):
    """A symbolic link loop inside an input folder once raised a traceback before any file was processed."""
    root = tmp_path / "media"
    clip = _touch(root / "a.mp4")
    loop = root / "b_loop.mp4"
    loop.symlink_to(loop.name)  # points at itself
    broken = root / "c_broken.jpg"
    broken.symlink_to(tmp_path / "gone.jpg")
    assert list(iter_media([root])) == [clip, loop, broken]
    with pytest.raises(MediaError, match="symbolic link loop"):
        check_readable_file(loop)
    with pytest.raises(MediaError, match="broken symbolic link .*gone.jpg"):
        check_readable_file(broken)
    # given directly, the loop is a media path too (it was "no such file or folder")
    assert list(iter_media([loop])) == [loop]
    with pytest.raises(MediaError, match="symbolic link loop"):
        load_image(loop)


def test_list_media_says_no_media_found_and_lists_the_other_inputs(tmp_path):
    clip = _touch(tmp_path / "clips" / "one.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    named_like_a_video = tmp_path / "x.mp4"  # a folder
    named_like_a_video.mkdir()
    _touch(named_like_a_video / "readme.md")
    blank_list = tmp_path / "none.txt"
    blank_list.write_text("# nothing\n", encoding="utf-8")
    two = _touch(tmp_path / "two.jpg")
    half_list = tmp_path / "half.txt"
    half_list.write_text("two.jpg\nmissing.mp4\n", encoding="utf-8")
    listing = list_media([empty, tmp_path / "clips", named_like_a_video, tmp_path / "gone", blank_list, clip, half_list])
    assert listing.files == [clip, two]  # the repeat of one.mp4 is not a problem
    reasons = dict(listing.problems)
    assert list(reasons) == [empty, named_like_a_video, tmp_path / "gone", blank_list, half_list]
    assert reasons[half_list] == f"1 of 2 listed paths do not exist; first: line 2: {tmp_path / 'missing.mp4'}"
    assert reasons[empty].startswith(f"no media found in {empty}: no image or video file")
    assert "a folder named like a video file" in reasons[named_like_a_video]
    assert reasons[tmp_path / "gone"] == "no such file or folder"
    assert "list file names no path" in reasons[blank_list]
