"""Media files in, RGB ``uint8`` arrays out: image loading, media-type checks, path expansion.

Every failure to read a file is a :class:`MediaError` that names the file and the reason, so a
pipeline can record why an item failed and go on with the next one.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm"}
)
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp"}
)
LIST_EXTENSIONS: frozenset[str] = frozenset({".txt"})

DEFAULT_MAX_PIXELS = 100_000_000

# EXIF orientation tag (0x0112) -> operations that undo it, applied in order (numpy version of
# Pillow's ImageOps.exif_transpose, for arrays that did not come through Pillow).
_ORIENTATION_OPS: dict[int, tuple[str, ...]] = {
    2: ("flip_lr",),
    3: ("rot180",),
    4: ("flip_ud",),
    5: ("transpose",),
    6: ("rot270",),
    7: ("transverse",),
    8: ("rot90",),
}


class MediaError(Exception):
    """A media file that cannot be read; ``str(error)`` names the file and the problem."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep path and reason through pickling (worker processes)
        return (type(self), (self.path, self.reason))


def is_image(path: Path | str) -> bool:
    """True when the file name has an image extension (case-insensitive); the content is not read."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: Path | str) -> bool:
    """True when the file name has a video extension (case-insensitive); the content is not read."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def check_readable_file(path: Path | str) -> Path:
    """The path if it is a non-empty regular file, else :class:`MediaError` saying what it is."""
    path = Path(path)
    if not path.exists():
        raise MediaError(path, link_problem(path) or "no such file")
    if path.is_dir():
        raise MediaError(path, "is a directory, not a media file")
    if not path.is_file():
        raise MediaError(path, "is not a regular file")
    try:
        size = path.stat().st_size
    except OSError as error:
        raise MediaError(path, f"cannot stat the file ({error.strerror or error})") from error
    if size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "permission denied (the file is not readable by this user)")
    return path


def link_problem(path: Path | str) -> str | None:
    """Why a symbolic link cannot be followed (a loop, a missing target), or None when ``path`` is no such link."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        if error.errno == errno.ENOENT:
            return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
        return f"symbolic link cannot be followed ({error.strerror or error})"
    return None


def load_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` (H, W, 3) array with its EXIF orientation applied.

    Grayscale, palette, CMYK and alpha images are converted to RGB (alpha is dropped);
    16-bit images are scaled to 8 bit (65535 -> 255). An image of more than ``max_pixels``
    pixels is refused from its header, before any pixel is decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = check_readable_file(path)
    try:
        with warnings.catch_warnings():
            # our own max_pixels check below replaces Pillow's decompression-bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise MediaError(
                        path,
                        f"image too large: {width}x{height} = {width * height:,} pixels "
                        f"> max_pixels={max_pixels:,}",
                    )
                if width == 0 or height == 0:
                    raise MediaError(path, f"image has no pixels ({width}x{height})")
                if _is_16bit_color_png(image):
                    orientation = image.getexif().get(0x0112, 1)
                    return _apply_orientation(_read_16bit_color_png(path), orientation)
                image = ImageOps.exif_transpose(image)
                return _to_rgb_uint8(image, path)
    except MediaError:
        raise
    except Image.DecompressionBombError as error:
        raise MediaError(path, f"image too large (Pillow decompression-bomb guard: {error})") from error
    except UnidentifiedImageError as error:
        raise MediaError(path, "not an image file Pillow can identify") from error
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt data
        raise MediaError(path, f"cannot decode the image ({error})") from error


def _is_16bit_color_png(image) -> bool:
    """Pillow reads 16-bit-per-channel colour PNGs as 8-bit RGB by dropping the low byte."""
    if image.format != "PNG" or image.mode not in {"RGB", "RGBA"} or not image.tile:
        return False
    args = image.tile[0][3]  # the PNG tile's args: the raw mode, e.g. "RGB;16B"
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return isinstance(rawmode, str) and ";16" in rawmode


def _read_16bit_color_png(path: Path) -> np.ndarray:
    import cv2

    # np.fromfile + imdecode works for any path (cv2.imread trips on some non-ASCII names)
    buffer = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if array is None or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise MediaError(path, "cannot decode the 16-bit PNG with OpenCV")
    rgb = cv2.cvtColor(array[..., :3], cv2.COLOR_BGR2RGB)
    return _scale_to_uint8(rgb, path)


def _scale_to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype in (np.uint16, np.int32, np.uint32, np.int64):
        # interpretation: integer images wider than 8 bit are 16-bit data: 0..65535 -> 0..255
        scaled = np.clip(array.astype(np.float64), 0, 65535) / 257.0
        return np.rint(scaled).astype(np.uint8)
    raise MediaError(path, f"unsupported pixel type {array.dtype} (no defined 8-bit scaling)")


def _to_rgb_uint8(image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        array = np.asarray(image)
    elif mode in {"I;16", "I;16L", "I;16B", "I;16N", "I"}:
        gray = _scale_to_uint8(np.asarray(image), path)
        array = np.repeat(gray[..., None], 3, axis=2)
    elif mode == "F":
        raise MediaError(path, "floating-point image (mode F): no defined 8-bit scaling")
    else:
        # interpretation: alpha (RGBA, LA, PA, transparent palette) is dropped, not composited:
        # the detector should see the stored colour values, not a made-up background
        array = np.asarray(image.convert("RGB"))
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise MediaError(path, f"unexpected decoded shape {array.shape} for mode {mode}")
    return array


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Undo an EXIF orientation on an (H, W, C) array, as ``ImageOps.exif_transpose`` does."""
    for op in _ORIENTATION_OPS.get(int(orientation), ()):
        if op == "flip_lr":
            array = array[:, ::-1]
        elif op == "flip_ud":
            array = array[::-1]
        elif op == "rot180":
            array = array[::-1, ::-1]
        elif op == "rot90":  # counter-clockwise, Pillow's ROTATE_90
            array = np.rot90(array, 1)
        elif op == "rot270":
            array = np.rot90(array, 3)
        elif op == "transpose":
            array = array.transpose(1, 0, 2)
        elif op == "transverse":
            array = np.rot90(array, 2).transpose(1, 0, 2)
    return np.ascontiguousarray(array)


def iter_media(paths: Sequence[Path | str], recursive: bool = True) -> Iterator[Path]:
    """Expand files, folders and list files into media file paths, in a deterministic order.

    - a folder gives its image and video files (by extension) sorted by relative path, also in
      sub-folders when ``recursive``; hidden files and folders (``.name``) are skipped;
    - a ``.txt`` file is a list: one path per line, blank lines and ``#`` comments ignored,
      relative paths taken from the list file's folder; entries are expanded the same way;
    - any other file is yielded as given (the reader reports it if it is not media), and so is a
      symbolic link that cannot be followed (a loop, a missing target): the reader records why.
    A path is yielded once, at its first occurrence. A missing path raises :class:`MediaError`.
    """
    seen: set[str] = set()
    for item in paths:
        for path in _expand(Path(item), recursive, lists_open=(), on_error=_raise):
            yield from _once(path, seen)


def _raise(error: MediaError) -> None:
    raise error


@dataclass
class MediaListing:
    """What :func:`list_media` found: the media files, and each input that gave none, with the reason."""

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)


def list_media(paths: Sequence[Path | str], recursive: bool = True) -> MediaListing:
    """:func:`iter_media` input by input: a missing input, a bad list file, a folder without media ("no
    media found in ...") or a sub-folder that cannot be listed is a problem, and the rest is still listed."""
    listing = MediaListing()
    seen: set[str] = set()
    for item in paths:
        item = Path(item)
        found = 0
        try:
            for path in _expand(item, recursive, lists_open=(),
                                on_error=lambda error: listing.problems.append((error.path, error.reason))):
                found += 1
                listing.files.extend(_once(path, seen))
        except MediaError as error:
            listing.problems.append((error.path, error.reason))
            continue
        if not found and not any(path == item for path, _ in listing.problems):
            listing.problems.append((item, _no_media_reason(item, recursive)))
    return listing


def _no_media_reason(path: Path, recursive: bool) -> str:
    if path.is_dir():
        named_like = " (a folder named like a video file)" if is_video(path) or is_image(path) else ""
        where = "in it or its sub-folders" if recursive else "in it"
        return (f"no media found in {path}{named_like}: no image or video file {where} "
                f"(hidden files are skipped; known extensions: {', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))})")
    return f"no media found in {path}: the list file names no path"


def _expand(path: Path, recursive: bool, lists_open: tuple[Path, ...], on_error) -> Iterator[Path]:
    if path.is_dir():
        yield from _folder_media(path, recursive, on_error)
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        resolved = path.resolve()
        if resolved in lists_open:
            raise MediaError(path, "list file includes itself (directly or through another list)")
        entries = _read_list(path)
        missing = []
        for number, entry in entries:
            if entry.exists() or entry.is_symlink():
                yield from _expand(entry, recursive, lists_open + (resolved,), on_error)
            else:
                missing.append((number, entry))
        if missing:
            number, first = missing[0]
            hint = " (is it a list of media paths, one per line?)" if len(missing) == len(entries) else ""
            on_error(MediaError(path, f"{len(missing)} of {len(entries)} listed paths do not exist{hint}; "
                                      f"first: line {number}: {first}"))
    elif path.exists() or path.is_symlink():
        yield path
    else:
        on_error(MediaError(path, "no such file or folder"))


def path_identity(path: Path | str) -> str:
    """The resolved absolute path, or the plain absolute one where a symbolic link loop stops resolving."""
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):  # a symbolic link loop (RuntimeError before Python 3.13)
        return os.path.abspath(path)


def _once(path: Path, seen: set[str]) -> Iterator[Path]:
    key = path_identity(path)
    if key not in seen:
        seen.add(key)
        yield path


def _folder_media(folder: Path, recursive: bool, on_error) -> list[Path]:
    """Media files under ``folder``; a (sub-)folder that cannot be listed goes to ``on_error`` as a MediaError."""
    found: list[Path] = []

    def unlistable(error: OSError) -> None:
        on_error(MediaError(error.filename or folder, f"cannot list the folder ({error.strerror or error})"))

    for root, dirs, files in os.walk(folder, onerror=unlistable):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        root_path = Path(root)
        found.extend(
            root_path / name
            for name in files
            if not name.startswith(".") and (is_image(name) or is_video(name))
        )
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _read_list(list_file: Path) -> list[tuple[int, Path]]:
    """``(line number, path)`` of each entry of a list file."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise MediaError(list_file, f"list file is not UTF-8 text ({error.reason})") from error
    except OSError as error:
        raise MediaError(list_file, f"cannot read the list file ({error.strerror or error})") from error
    entries: list[tuple[int, Path]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        entries.append((number, entry if entry.is_absolute() else list_file.parent / entry))
    return entries
