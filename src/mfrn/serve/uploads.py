"""Uploads in: a multipart body streamed to a temporary file under a size limit, then the bytes sniffed.

``receive_upload`` parses ``multipart/form-data`` as it arrives (python-multipart's streaming parser)
and writes the part named ``file`` to ``tmp/``; the body is refused with 413 as soon as it passes the
limit, so an oversized upload is never held whole, in memory or on disk. ``sniff_media`` then decides
what the bytes are, never the name: Pillow (only the image formats the project reads) for an image,
fully decoded through ``mfrn.data.media.load_image``; otherwise the project's FFmpeg reader
(``mfrn.data.frames.probe_video``: a container with a decodable video stream, frames counted from its
packets). Anything else is 415 with the reader's reason; pixels, duration and frames over the limits
are 413.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import unicodedata
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from mfrn.serve.config import ServeLimits

FILE_FIELD = "file"
# the image formats mfrn reads (mfrn.data.media.IMAGE_EXTENSIONS), by Pillow's format name -> stored suffix
# (MPO, a camera's multi-picture JPEG, is opened by Pillow's JPEG reader)
IMAGE_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif", "GIF": ".gif",
                 "PPM": ".ppm"}
VIDEO_SUFFIX = ".video"  # stored videos: the container is whatever FFmpeg found in the bytes
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and small fields beside the file


class UploadRefused(Exception):
    """An upload the service does not take: ``status`` (400, 413, 415, 422) and a reason for the client."""

    def __init__(self, status: int, reason: str, **facts) -> None:
        self.status, self.reason, self.facts = status, reason, facts
        super().__init__(reason)

    def __str__(self) -> str:
        return self.reason


@dataclass
class ReceivedFile:
    path: Path  # the temporary file (the caller moves or deletes it)
    filename: str  # the client's name, cleaned for display only
    size: int
    sha256: str


@dataclass
class MediaFacts:
    kind: str  # "image" | "video"
    suffix: str  # the stored file's suffix, from the sniffed format
    media_format: str
    width: int
    height: int
    n_frames: int  # 1 for an image
    duration: float | None  # seconds (videos)


def display_name(raw: str | None) -> str:
    """The client's file name as text to show: no folders, no control characters, at most 200 characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:200] or "upload"


class _MultipartSink:
    """python-multipart callbacks that write the ``file`` part to ``target`` and count its bytes."""

    def __init__(self, target: Path, max_bytes: int) -> None:
        self.target, self.max_bytes = target, max_bytes
        self.handle = None
        self.size = 0
        self.digest = hashlib.sha256()
        self.filename: str | None = None
        self.found = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._writing = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin, "on_header_field": self._field, "on_header_value": self._value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
            "on_part_data": self._data, "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._writing = False

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").strip().lower()] = bytes(self._header_value)
        self._header_field, self._header_value = bytearray(), bytearray()

    def _headers_done(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        if options.get(b"name", b"").decode("utf-8", "replace") != FILE_FIELD:
            return  # other fields are read past and dropped
        if self.found:
            raise UploadRefused(422, f"one file per request: the form has more than one '{FILE_FIELD}' field")
        self.found = self._writing = True
        raw = options.get(b"filename")
        self.filename = raw.decode("utf-8", "replace") if raw is not None else None
        self.handle = open(self.target, "xb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._writing:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise UploadRefused(413, f"the upload is larger than the limit of {self.max_bytes:,} bytes",
                                limit="max_upload_bytes", max=self.max_bytes)
        chunk = data[start:end]
        self.digest.update(chunk)
        self.handle.write(chunk)

    def _part_end(self) -> None:
        self._writing = False

    def close(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()


async def receive_upload(chunks: AsyncIterator[bytes], content_type: str | None, content_length: str | None,
                         tmp_dir: Path, max_bytes: int) -> ReceivedFile:
    """Stream a ``multipart/form-data`` body into ``tmp_dir``; see the module docstring."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRefused(415, f"send multipart/form-data with the media in a field named '{FILE_FIELD}'")
    limit = max_bytes + _FORM_OVERHEAD
    if content_length is not None:
        try:
            announced = int(content_length)
        except ValueError:
            raise UploadRefused(400, "the Content-Length header is not a number") from None
        if announced > limit:  # refused before a byte is read
            raise UploadRefused(413, f"the upload is larger than the limit of {max_bytes:,} bytes "
                                     f"(Content-Length {announced:,})", limit="max_upload_bytes", max=max_bytes)
    target = Path(tmp_dir) / f"{secrets.token_hex(16)}.part"
    sink = _MultipartSink(target, max_bytes)
    try:
        parser = MultipartParser(boundary, sink.callbacks())
        total = 0
        async for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise UploadRefused(413, f"the upload is larger than the limit of {max_bytes:,} bytes",
                                    limit="max_upload_bytes", max=max_bytes)
            parser.write(chunk)
        parser.finalize()
        sink.close()
        if not sink.found:
            raise UploadRefused(422, f"no file: the form needs a field named '{FILE_FIELD}'")
        return ReceivedFile(target, display_name(sink.filename), sink.size, sink.digest.hexdigest())
    except FormParserError as error:
        sink.close()
        target.unlink(missing_ok=True)
        raise UploadRefused(400, f"malformed multipart body ({error})") from None
    except BaseException:
        sink.close()
        target.unlink(missing_ok=True)
        raise


def sniff_media(path: Path, limits: ServeLimits) -> MediaFacts:
    """What the file's bytes are (image or video), held against the limits; see the module docstring."""
    from mfrn.data.media import MediaError, check_readable_file

    try:
        check_readable_file(path)
        facts = _sniff_image(path, limits)
        return facts if facts is not None else _sniff_video(path, limits)
    except MediaError as error:
        raise UploadRefused(415, f"not an image or video: {error.reason}") from None
    except UploadRefused as refusal:  # a reader's message may quote the temporary file: the client never sees it
        refusal.reason = refusal.reason.replace(str(path), "the upload").replace(path.name, "the upload")
        raise


def _too_many_pixels(width: int, height: int, limits: ServeLimits, what: str) -> None:
    if width * height > limits.max_pixels:
        raise UploadRefused(413, f"{what} of {width}x{height} = {width * height:,} pixels is over the limit of "
                                 f"{limits.max_pixels:,} pixels", limit="max_pixels", max=limits.max_pixels,
                            value=width * height)


def _sniff_image(path: Path, limits: ServeLimits) -> MediaFacts | None:
    from PIL import Image, UnidentifiedImageError

    from mfrn.data.media import MediaError, load_image

    Image.init()  # every plugin registered, so that ``formats`` below can name them
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixel limit below decides
            with Image.open(path, formats=[name for name in IMAGE_FORMATS if name in Image.OPEN]) as image:
                image_format, (width, height) = image.format, image.size
    except UnidentifiedImageError:
        return None  # not an image format: perhaps a video
    except Image.DecompressionBombError as error:
        raise UploadRefused(413, f"image over Pillow's decompression-bomb guard ({error})", limit="max_pixels",
                            max=limits.max_pixels) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UploadRefused(415, f"a damaged image: {error}") from None
    _too_many_pixels(width, height, limits, "an image")
    try:
        load_image(path, max_pixels=limits.max_pixels)  # the detector's own reader decodes all of it
    except MediaError as error:
        raise UploadRefused(415, f"an image that cannot be read: {error.reason}") from None
    return MediaFacts("image", IMAGE_FORMATS[image_format], image_format, width, height, 1, None)


def _sniff_video(path: Path, limits: ServeLimits) -> MediaFacts:
    from mfrn.data.frames import probe_video
    from mfrn.data.media import MediaError

    try:
        info = probe_video(path)
    except MediaError as error:
        raise UploadRefused(415, f"not an image or video FFmpeg or Pillow can read: {error.reason}") from None
    if info.n_frames < 1:
        raise UploadRefused(415, "a video without frames")
    _too_many_pixels(info.width, info.height, limits, "a video frame")
    duration = info.duration or (info.n_frames / info.fps if info.fps else None)
    if duration is not None and duration > limits.max_duration_s:
        raise UploadRefused(413, f"a video of {duration:.1f} s is over the limit of {limits.max_duration_s:g} s",
                            limit="max_duration_s", max=limits.max_duration_s, value=duration)
    if info.n_frames > limits.max_frames:
        raise UploadRefused(413, f"a video of {info.n_frames:,} frames is over the limit of {limits.max_frames:,} frames",
                            limit="max_frames", max=limits.max_frames, value=info.n_frames)
    return MediaFacts("video", VIDEO_SUFFIX, f"video ({info.codec})", info.width, info.height, info.n_frames, duration)
