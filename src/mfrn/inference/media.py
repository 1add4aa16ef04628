"""Media in: the sampled frames of a file (what decodes, with a warning when not all of it did), and
arrays handed to the Python API checked and converted to RGB ``uint8`` with one obvious meaning."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfrn.data.frames import Frame, FrameSamplingConfig, read_media_frames, sample_indices
from mfrn.data.media import MediaError

ACCEPTED_ARRAYS = (
    "accepted: an RGB image as an H x W x 3 array of uint8 (0..255), uint16 (0..65535) or float in [0, 1]; "
    "also H x W (grayscale) or H x W x 4 (RGBA, alpha dropped)"
)


@dataclass
class DecodedMedia:
    """The sampled frames of one file, ready for the face analyzer."""

    path: Path
    kind: str  # "image" | "video"
    frames: list[Frame]
    n_wanted: int  # frames the protocol asked for
    warning: str | None = None  # why fewer frames than wanted (or a damaged file) were used


def decode_media(path: Path | str, n_frames: int, max_image_pixels: int | None = None) -> DecodedMedia:
    """Read ``n_frames`` evenly spaced frames of a video (an image is one frame).

    A video that is only partly readable (truncated, damaged in the middle) gives the frames that
    decode, with a ``warning`` that says how many and why; one where no frame decodes raises
    :class:`MediaError`, as does a file that cannot be opened at all.
    """
    path = Path(path)
    config = FrameSamplingConfig(n_frames=n_frames)
    if max_image_pixels is not None:
        config.max_image_pixels = max_image_pixels
    info, frame_iter = read_media_frames(path, n_frames, config=config)
    kind = "image" if info.is_image else "video"
    n_wanted = 1 if info.is_image else len(sample_indices(info.n_frames, n_frames))
    frames: list[Frame] = []
    warning = None
    try:
        for frame in frame_iter:
            frames.append(frame)
    except MediaError as error:
        if not frames:
            raise
        # interpretation: a partly readable video is scored on the frames that decode, and says so
        warning = f"partly readable: scored {len(frames)} of {n_wanted} sampled frames ({error.reason})"
    if not frames:
        raise MediaError(path, "no frame could be decoded")
    return DecodedMedia(path, kind, frames, n_wanted, warning)


def as_rgb_image(image: np.ndarray, name: str = "<array>") -> np.ndarray:
    """An array handed to the API, as a C-contiguous RGB ``uint8`` (H, W, 3) image.

    Converted where the meaning is obvious: grayscale (H, W) or (H, W, 1) -> RGB; RGBA -> RGB (alpha
    dropped, as ``load_image`` does); uint16 -> uint8 (65535 -> 255); float in [0, 1] -> uint8.
    Refused with a ``ValueError`` that says what is accepted: booleans, other integer or float
    ranges, channels-first arrays, other shapes, and images without pixels.
    """
    array = np.asarray(image)
    where = f"{name}: "
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        raise ValueError(f"{where}shape {array.shape} looks channels-first (C, H, W); pass "
                         f"array.transpose(1, 2, 0). {ACCEPTED_ARRAYS}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"{where}an array of shape {array.shape} is not an image. {ACCEPTED_ARRAYS}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{where}the image has no pixels ({array.shape[1]}x{array.shape[0]}). {ACCEPTED_ARRAYS}")
    array = _to_uint8(array, where)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 4:
        # interpretation: alpha is dropped, not composited (as for RGBA files)
        array = array[..., :3]
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.rint(array.astype(np.float64) / 257.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{where}the float image holds NaN or infinite values. {ACCEPTED_ARRAYS}")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"{where}float values must lie in [0, 1], these span [{low:.4g}, {high:.4g}] "
                             f"(divide 0..255 data by 255, or pass uint8). {ACCEPTED_ARRAYS}")
        return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    if array.dtype == np.bool_:
        raise ValueError(f"{where}a boolean array is a mask, not an image. {ACCEPTED_ARRAYS}")
    raise ValueError(f"{where}pixel type {array.dtype} has no defined 8-bit scaling. {ACCEPTED_ARRAYS}")
