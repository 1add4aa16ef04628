"""Deterministic H.264 writing for built datasets: the same frames give the same bytes.

libx264 runs single-threaded with fixed settings, without its macroblock tree (``no-mbtree``: with
it, this build's libx264 encoded identical frames of some sizes, e.g. 528x432, to different bytes
from run to run, so its output evidently depended on memory it had not written), and with FFmpeg's
bit-exact flags (no library version strings in the container). RGB becomes YUV 4:2:0 in OpenCV
(BT.601, limited range, what decoders assume) into frames whose every byte is set. So a tree built
twice from the same media is byte-identical on the same installation. Files are written atomically
(``mfrn.io_utils``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from mfrn.io_utils import atomic_write_bytes


def encode_h264(
    path: Path, frames: Iterable[np.ndarray], fps: Fraction | float, crf: int = 23, preset: str = "medium",
) -> int:
    """Encode RGB uint8 frames (all of one even-sized shape) to an H.264 MP4 at ``path``; returns the
    number of frames. ``crf=0`` is lossless (used for mask videos)."""
    import av
    import cv2

    rate = Fraction(fps).limit_denominator(100_000)
    buffer = io.BytesIO()
    count = 0
    with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        # interpretation: FF++'s c23 is x264 at CRF 23 with its defaults; mb-tree is off here (see above)
        stream.options = {"crf": str(int(crf)), "preset": preset, "threads": "1", "x264-params": "no-mbtree=1"}
        for image in frames:
            image = np.ascontiguousarray(image, dtype=np.uint8)
            if count == 0:
                height, width = image.shape[:2]
                if width % 2 or height % 2:
                    raise ValueError(f"{path}: H.264 (yuv420p) needs even frame sizes, got {width}x{height}")
                stream.width, stream.height = width, height
            elif image.shape[:2] != (stream.height, stream.width):
                raise ValueError(f"{path}: frame {count} is {image.shape[1]}x{image.shape[0]}, "
                                 f"the video is {stream.width}x{stream.height}")
            frame = _yuv420_frame(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), width, height)
            frame.pts = count
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        if count == 0:
            raise ValueError(f"{path}: no frames to encode")
        for packet in stream.encode():
            container.mux(packet)
    atomic_write_bytes(path, buffer.getvalue())
    return count


def _yuv420_frame(i420: np.ndarray, width: int, height: int):
    """A yuv420p ``av.VideoFrame`` from OpenCV's I420 layout with every byte of its planes set (the row
    padding FFmpeg allocates is zeroed), so nothing the encoder might read is left to chance."""
    import av

    frame = av.VideoFrame(width, height, "yuv420p")
    y = i420[:height]
    chroma = i420[height:].reshape(-1)  # U then V, packed: a height that is not a multiple of 4 splits a row
    quarter = (height // 2) * (width // 2)
    u = chroma[:quarter].reshape(height // 2, width // 2)
    v = chroma[quarter:].reshape(height // 2, width // 2)
    for plane, data in zip(frame.planes, (y, u, v)):
        rows = np.zeros((plane.height, plane.line_size), dtype=np.uint8)
        rows[:, :plane.width] = data
        plane.update(rows.tobytes())
    return frame


def h264_roundtrip(image: np.ndarray, crf: int, preset: str = "medium") -> np.ndarray:
    """One RGB uint8 image through libx264 at ``crf`` and back (one intra-coded frame, in memory).

    Deterministic, with the settings of ``encode_h264`` (single thread, no mb-tree, BT.601 through
    OpenCV). Odd sizes are padded by edge replication for 4:2:0 and cropped after decoding. The
    training-time codec augmentation (``mfrn.synth.transforms.CodecTransform``) calls it."""
    return h264_roundtrip_frames([image], crf, preset)[0]


def h264_roundtrip_frames(frames: list[np.ndarray], crf: int, preset: str = "medium") -> list[np.ndarray]:
    """RGB uint8 frames of one shape through libx264 at ``crf`` as one stream and back: the first is
    intra-coded, the others predicted from it (P/B frames, x264's defaults), as in a video. The
    settings and the padding of ``h264_roundtrip``."""
    import av
    import cv2

    height, width = frames[0].shape[:2] if frames else (0, 0)
    with av.open(io.BytesIO(h264_stream(frames, crf, preset)), mode="r", format="h264") as container:
        decoded = [cv2.cvtColor(f.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420) for f in container.decode(video=0)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip decoded {len(decoded)} of {len(frames)} frames")
    return [np.ascontiguousarray(out[:height, :width]) for out in decoded]


def h264_stream(frames: list[np.ndarray], crf: int, preset: str = "medium") -> bytes:
    """The raw H.264 stream (Annex B) of RGB uint8 frames of one shape, coded as ``h264_roundtrip`` codes
    them (odd sizes padded by edge replication)."""
    import av
    import cv2

    if not frames:
        raise ValueError("h264_roundtrip_frames needs at least one frame")
    frames = [np.ascontiguousarray(image, dtype=np.uint8) for image in frames]
    image = frames[0]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"h264_roundtrip needs an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    if any(f.shape != image.shape for f in frames):
        raise ValueError(f"h264_roundtrip_frames needs frames of one shape, got {sorted({f.shape for f in frames})}")
    height, width = image.shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    even_h, even_w = height + height % 2, width + width % 2
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        stream.options = {"crf": str(int(crf)), "preset": preset, "threads": "1", "x264-params": "no-mbtree=1"}
        for index, image in enumerate(frames):
            padded = np.pad(image, pad, mode="edge")
            frame = _yuv420_frame(cv2.cvtColor(padded, cv2.COLOR_RGB2YUV_I420), even_w, even_h)
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
