"""Crash-safe file writes: write to a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np


class OutputPathError(ValueError):
    """An output path that cannot be used (a file where a folder is needed, no permission)."""


def check_output_dir(path: Path | str, what: str = "output folder") -> Path:
    """What :func:`ensure_output_dir` refuses, checked without creating anything (to fail before long work)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: the {what} exists and is not a folder; give a folder path")
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is not None and existing != path and not existing.is_dir():
        raise OutputPathError(f"{path}: cannot create the {what}: a part of the path is a file")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not writable" if existing == path else f"cannot be created in {existing}"
        raise OutputPathError(f"{path}: the {what} {problem} (permission denied)")
    return path


def ensure_output_dir(path: Path | str, what: str = "output folder") -> Path:
    """Create ``path`` as a folder (with parents) or refuse it in one line: an existing file, a parent that
    is a file, or a folder this process cannot write into."""
    path = check_output_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputPathError(f"{path}: cannot create the {what}: a part of the path is a file") from None
    except PermissionError:
        raise OutputPathError(f"{path}: cannot create the {what}: permission denied") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: the {what} is not writable (permission denied)")
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False))


def atomic_write_image(path: Path, image_rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB uint8 image (PNG is lossless; JPEG uses ``jpeg_quality``)."""
    path = Path(path)
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in (".jpg", ".jpeg") else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"{path}: could not encode image")
    atomic_write_bytes(path, buffer.tobytes())


def cut_torn_tail(path: Path) -> int:
    """Cut the last line of an append-only text file when a crash left it without its newline.

    Only the tail is read. Returns the size kept: 0 when the file is missing, empty, or holds no
    complete line."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return size
        cut, position = 0, size
        while position > 0:  # walk back to the last complete line
            step = min(65536, position)
            position -= step
            f.seek(position)
            newline = f.read(step).rfind(b"\n")
            if newline >= 0:
                cut = position + newline + 1
                break
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    return cut


def append_durably(handle, text: str) -> None:
    """Write ``text`` to a file opened for appending and make it durable (flush + fsync)."""
    handle.write(text)
    handle.flush()
    os.fsync(handle.fileno())


def read_image_rgb(path: Path) -> np.ndarray:
    """Read a crop written by ``atomic_write_image`` (RGB uint8)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise OSError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
