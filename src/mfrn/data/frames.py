"""Frame sampling: SBI's evenly spaced frame indices, and a PyAV reader that decodes only those.

The reader first demuxes the video stream (cheap: no decoding) to learn every frame's
presentation timestamp and where the keyframes are. For each wanted frame it then either keeps
decoding forward (no keyframe between the current position and the wanted frame) or seeks to the
last keyframe at or before it. Only wanted frames are converted to arrays. The pixels equal those
of a full sequential decode (tested against :func:`decode_all_frames`).

Failure policy: opening/probing problems (missing, empty, not a video, no video stream,
unsupported codec) raise :class:`~mfrn.data.media.MediaError` before any frame is yielded. A
truncated or corrupt video yields every wanted frame it can decode, then raises ``MediaError``
naming the frames it could not decode, so the caller keeps the good frames and records the failure.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from mfrn.data.media import (
    DEFAULT_MAX_PIXELS,
    MediaError,
    check_readable_file,
    is_image,
    load_image,
)


THREAD_TYPES: frozenset[str] = frozenset({"AUTO", "FRAME", "SLICE", "NONE"})


@dataclass
class FrameSamplingConfig:
    """How frames are taken from a video (SBI: 32 evenly spaced frames per video)."""

    n_frames: int = 32
    decode_threads: int = 0  # 0: FFmpeg picks the thread count
    thread_type: str = "AUTO"  # PyAV thread type: "AUTO", "FRAME", "SLICE" or "NONE"
    max_image_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise ValueError(f"FrameSamplingConfig.n_frames must be >= 1, got {self.n_frames}")
        if self.decode_threads < 0:
            raise ValueError(f"FrameSamplingConfig.decode_threads must be >= 0, got {self.decode_threads}")
        if self.thread_type.upper() not in THREAD_TYPES:
            raise ValueError(f"FrameSamplingConfig.thread_type must be one of {sorted(THREAD_TYPES)}, "
                             f"got {self.thread_type!r}")


@dataclass
class VideoInfo:
    """What a video (or an image, as one-frame media) holds.

    ``n_frames`` is counted from the demuxed packets (exact, whatever the header says);
    ``n_frames_declared`` is the container's own count (None when it does not say).
    """

    path: Path
    n_frames: int
    fps: float
    width: int
    height: int
    duration: float  # seconds
    codec: str
    n_frames_declared: int | None = None
    is_image: bool = False
    truncated: bool = False  # demuxing stopped early, or fewer packets than the container announces


@dataclass
class Frame:
    """One decoded frame: its index in presentation order, RGB uint8 pixels, timestamp."""

    index: int
    image: np.ndarray
    pts: int | None = None  # in the stream's time base
    time: float | None = None  # seconds


@dataclass
class DecodeStats:
    """Counts of the work a read did (frames decoded, seeks, frames converted to arrays)."""

    n_decoded: int = 0
    n_seeks: int = 0
    n_converted: int = 0


@dataclass
class _FrameIndex:
    """Presentation timestamps of all frames (sorted) and of the keyframes, from the packets."""

    frame_pts: list[int] = field(default_factory=list)
    keyframe_pts: list[int] = field(default_factory=list)
    n_packets: int = 0  # packets that become shown frames
    n_packets_all: int = 0  # including those an edit list discards (what a header counts)
    timestamped: bool = True  # False: timestamps missing or not unique, decode sequentially
    demux_error: str | None = None


def sample_indices(n_frames: int, n: int) -> list[int]:
    """``n`` evenly spaced frame indices of a video with ``n_frames`` frames (SBI's protocol).

    ``linspace(0, n_frames - 1, n)`` rounded and made unique, so the first and last frames are
    always included; ``n >= n_frames`` gives every frame.
    """
    if n_frames < 0 or n < 0:
        raise ValueError(f"n_frames and n must be >= 0, got n_frames={n_frames}, n={n}")
    if n_frames == 0 or n == 0:
        return []
    if n >= n_frames:
        return list(range(n_frames))
    return sorted({int(i) for i in np.rint(np.linspace(0, n_frames - 1, n))})


def evenly_spaced(items: Sequence, n: int) -> list:
    """``n`` evenly spaced items, first and last included (``sample_indices`` of their positions); n <= 0: all."""
    return list(items) if n <= 0 else [items[i] for i in sample_indices(len(items), n)]


def probe_video(path: Path | str) -> VideoInfo:
    """Facts about a video file, with the exact frame count from its packets."""
    with VideoReader(path) as reader:
        return reader.info


def read_frames(
    path: Path | str,
    indices: Sequence[int],
    *,
    stats: DecodeStats | None = None,
    config: FrameSamplingConfig | None = None,
) -> Iterator[Frame]:
    """Decode only the frames at ``indices`` (presentation order), yielded in increasing index.

    Duplicate indices are read once. An index outside the video raises ``ValueError``; see the
    module docstring for what happens with truncated files.
    """
    with VideoReader(path, config) as reader:
        yield from reader.read(indices, stats=stats)


def read_media_frames(
    path: Path | str,
    n: int,
    *,
    stats: DecodeStats | None = None,
    config: FrameSamplingConfig | None = None,
    pick: Callable[[int], Sequence[int]] | None = None,
) -> tuple[VideoInfo, Iterator[Frame]]:
    """Info and ``n`` evenly spaced frames of a video; an image is one-frame media (frame 0).

    ``pick`` chooses the frame indices from the video's frame count instead (clips of consecutive frames).

    The file is opened and probed here, so unreadable files raise at once; frames are decoded as
    the iterator is consumed (consume or close it to release the file).
    """
    config = config or FrameSamplingConfig()
    if is_image(path):
        image = load_image(path, max_pixels=config.max_image_pixels)
        height, width = image.shape[:2]
        info = VideoInfo(
            path=Path(path), n_frames=1, fps=0.0, width=width, height=height, duration=0.0,
            codec=Path(path).suffix.lower().lstrip("."), n_frames_declared=1, is_image=True,
        )
        frames = [Frame(index=0, image=image, pts=0, time=0.0)] if n > 0 else []
        return info, iter(frames)
    reader = VideoReader(path, config)
    indices = list(pick(reader.info.n_frames)) if pick is not None else sample_indices(reader.info.n_frames, n)
    return reader.info, _read_and_close(reader, indices, stats)


def _read_and_close(reader: "VideoReader", indices: list[int], stats: DecodeStats | None) -> Iterator[Frame]:
    with reader:
        yield from reader.read(indices, stats=stats)


# --- the naive baseline -------------------------------------------------------------------------


def decode_all_frames(path: Path | str) -> Iterator[Frame]:
    """BASELINE ONLY: decode every frame sequentially, as the public detectors do.

    Kept for the benchmark and as the reference the selective reader is tested against; do not
    use it in the pipeline.
    """
    import av

    path = check_readable_file(path)
    container = _open_container(path)
    count = 0
    try:
        stream = _video_stream(container, path)
        for frame in container.decode(stream):
            yield Frame(index=count, image=frame.to_ndarray(format="rgb24"), pts=frame.pts,
                        time=_seconds(frame.pts, stream.time_base))
            count += 1
    except av.FFmpegError as error:
        raise MediaError(path, f"decoding failed after {count} frames ({error})") from error
    finally:
        container.close()


def count_decoded_frames(path: Path | str) -> int:
    """BASELINE ONLY: the number of frames a full sequential decode yields (decodes them all)."""
    import av

    path = check_readable_file(path)
    container = _open_container(path)
    count = 0
    try:
        stream = _video_stream(container, path)
        for _ in container.decode(stream):
            count += 1
    except av.FFmpegError as error:
        raise MediaError(path, f"decoding failed after {count} frames ({error})") from error
    finally:
        container.close()
    return count


# --- the selective reader -----------------------------------------------------------------------


class VideoReader:
    """An open video with its frame index; ``read(indices)`` decodes only what it needs."""

    def __init__(self, path: Path | str, config: FrameSamplingConfig | None = None) -> None:
        self.path = check_readable_file(path)
        self.config = config or FrameSamplingConfig()
        self._open()
        try:
            self._index = self._build_index()
            self.info = self._make_info()
            # a fresh demuxer for decoding: seeking back to 0 fails in some demuxers (image2)
            self._container.close()
            self._open()
        except BaseException:
            self._container.close()
            raise

    def _open(self) -> None:
        self._container = _open_container(self.path)
        self._stream = _video_stream(self._container, self.path)
        self._configure_threads()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def read(self, indices: Sequence[int], stats: DecodeStats | None = None) -> Iterator[Frame]:
        """Frames at ``indices`` in increasing order; see the module docstring for failures."""
        stats = stats if stats is not None else DecodeStats()
        targets = sorted({int(i) for i in indices})
        n_frames = self.info.n_frames
        bad = [i for i in targets if not 0 <= i < n_frames]
        if bad:
            raise ValueError(f"{self.path}: frame indices {bad} outside 0..{n_frames - 1}")
        if not targets:
            return
        delivered: set[int] = set()
        failures: list[str] = []
        try:
            if self._index.timestamped:
                frames = self._read_by_timestamp(targets, stats, failures)
            else:
                frames = self._read_sequentially(targets, stats)
            for frame in frames:
                delivered.add(frame.index)
                yield frame
        except _DecodeFailure as error:
            failures.append(str(error))
        missing = [i for i in targets if i not in delivered]
        reasons = list(dict.fromkeys([*failures[:3], self._index.demux_error, self._truncation()]))
        reasons = [r for r in reasons if r]
        if missing:
            raise MediaError(
                self.path,
                f"truncated or corrupt video: could not decode frames {_short_list(missing)} "
                f"of {n_frames} ({'; '.join(reasons) or 'the stream ended early'})",
            )
        if self.info.truncated:
            # interpretation: a truncated file is a failure even when the wanted frames decoded
            raise MediaError(self.path, f"truncated video: {'; '.join(reasons)}")

    def _truncation(self) -> str | None:
        declared = self.info.n_frames_declared
        if declared is not None and self._index.n_packets_all < declared:
            return f"the container announces {declared} frames, its data holds {self._index.n_packets_all}"
        return None

    # -- index and info --

    def _configure_threads(self) -> None:
        context = self._stream.codec_context
        if context is None:
            raise MediaError(self.path, f"unsupported codec: FFmpeg has no decoder for stream {self._stream.index}")
        # interpretation: "AUTO" (frame + slice threads) pays off for full-HD H.264; set "NONE" to
        # decode on the calling thread only (e.g. inside many data-loader workers)
        if self.config.thread_type.upper() == "NONE":
            self._stream.thread_count = 1
        else:
            self._stream.thread_type = self.config.thread_type.upper()
            self._stream.thread_count = self.config.decode_threads

    def _build_index(self) -> _FrameIndex:
        import av

        index = _FrameIndex()
        pts_values: list[int | None] = []
        key_values: list[int | None] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:
                    continue  # the flush packet at the end
                index.n_packets_all += 1
                if getattr(packet, "is_discard", False):
                    continue  # frames an edit list drops are never shown
                stamp = packet.pts if packet.pts is not None else packet.dts
                pts_values.append(stamp)
                if packet.is_keyframe:
                    key_values.append(stamp)
        except av.FFmpegError as error:
            index.demux_error = f"demuxing stopped: {error}"
        if not pts_values and index.demux_error:
            raise MediaError(self.path, f"no video packet could be read ({index.demux_error})")
        index.n_packets = len(pts_values)
        if None in pts_values or len(set(pts_values)) != len(pts_values):
            index.timestamped = False  # interpretation: no usable timestamps -> count frames while decoding
        else:
            index.frame_pts = sorted(pts_values)  # type: ignore[arg-type]
            index.keyframe_pts = sorted(v for v in key_values if v is not None)
        return index

    def _make_info(self) -> VideoInfo:
        stream = self._stream
        context = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / 1_000_000
        else:
            duration = self._index.n_packets / fps if fps else 0.0
        declared = stream.frames or None
        truncated = self._index.demux_error is not None or (
            declared is not None and self._index.n_packets_all < declared)
        return VideoInfo(
            path=self.path, n_frames=self._index.n_packets, fps=fps,
            width=context.width, height=context.height, duration=duration,
            codec=context.name, n_frames_declared=declared, truncated=truncated,
        )

    # -- decoding --

    def _frames_from_here(self, stats: DecodeStats):
        """Decoded frames from the container's current position (a fresh demux/decode loop)."""
        import av

        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    stats.n_decoded += 1
                    yield frame
        except av.FFmpegError as error:
            raise _DecodeFailure(str(error)) from error

    def _seek(self, pts: int, stats: DecodeStats) -> None:
        import av

        stats.n_seeks += 1
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError as error:
            raise _DecodeFailure(f"seek to pts {pts} failed: {error}") from error

    def _to_frame(self, index: int, frame, stats: DecodeStats) -> Frame:
        stats.n_converted += 1
        return Frame(index=index, image=frame.to_ndarray(format="rgb24"), pts=frame.pts,
                     time=_seconds(frame.pts, self._stream.time_base))

    def _read_by_timestamp(self, targets: list[int], stats: DecodeStats, failures: list[str]) -> Iterator[Frame]:
        """Wanted frames by pts; a frame that fails is noted in ``failures`` and the next one tried."""
        frame_pts = self._index.frame_pts
        keyframes = self._index.keyframe_pts
        decoded = None  # generator of decoded frames; None when the next read must (re)position
        at_start = True  # nothing decoded yet: the fresh container stands at the first packet
        position: int | None = None  # pts of the last frame taken from ``decoded``
        for target in targets:
            target_pts = frame_pts[target]
            keyframe = _last_at_or_before(keyframes, target_pts)
            # keep decoding forward when no keyframe lies between here and the wanted frame
            forward_ok = decoded is not None and position is not None and position < target_pts and (
                keyframe is None or keyframe <= position)
            found = False
            try:
                if at_start and (keyframe is None or keyframe <= frame_pts[0]):
                    decoded = self._frames_from_here(stats)  # the wanted frame's GOP starts the file
                elif not forward_ok:
                    decoded = self._seek_for(target_pts, keyframe, keyframes, stats)
                at_start = False
                for frame in decoded:
                    if frame.pts is None:
                        raise _DecodeFailure("a decoded frame has no timestamp")
                    if frame.pts > target_pts:
                        decoded = _prepend(frame, decoded)  # it may be the next wanted frame
                        break
                    position = frame.pts
                    if frame.pts == target_pts:
                        found = True
                        yield self._to_frame(target, frame, stats)
                        break
                else:
                    decoded = None  # the stream ended
            except _DecodeFailure as error:
                failures.append(str(error))
                decoded, position = None, None  # the next wanted frame seeks past the damage
                continue
            if not found:
                failures.append(f"frame {target} (pts {target_pts}) was not produced by the decoder")

    def _seek_for(self, target_pts: int, keyframe: int | None, keyframes: list[int], stats: DecodeStats):
        """Seek to the keyframe before the target; fall back to earlier ones if the demuxer overshoots."""
        candidates = [k for k in reversed(keyframes) if keyframe is not None and k <= keyframe]
        for candidate in candidates or [self._index.frame_pts[0]]:
            self._seek(candidate, stats)
            decoded = self._frames_from_here(stats)
            first = next(decoded, None)
            if first is None:
                return iter(())
            if first.pts is not None and first.pts <= target_pts:
                return _prepend(first, decoded)
        self._seek(self._index.frame_pts[0], stats)  # last resort: decode from the very start
        return self._frames_from_here(stats)

    def _read_sequentially(self, targets: list[int], stats: DecodeStats) -> Iterator[Frame]:
        wanted = set(targets)
        last = targets[-1]
        for index, frame in enumerate(self._frames_from_here(stats)):
            if index in wanted:
                yield self._to_frame(index, frame, stats)
            if index >= last:
                return


class _DecodeFailure(Exception):
    """Raised inside the reader when decoding stops; ``read`` turns it into a MediaError."""


def _prepend(first, rest):
    yield first
    yield from rest


def _last_at_or_before(sorted_values: list[int], value: int) -> int | None:
    position = bisect.bisect_right(sorted_values, value)
    return sorted_values[position - 1] if position else None


def _seconds(pts: int | None, time_base: Fraction | None) -> float | None:
    return float(pts * time_base) if pts is not None and time_base is not None else None


def _short_list(values: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} in all)"


# FFmpeg demuxers that turn text into frames (ANSI art, BBS "bin"/"xbin" files): a text file is never a video
TEXT_DEMUXERS: frozenset[str] = frozenset({"tty", "bin", "xbin", "adf", "idf"})
# y4m is a real video format despite its "pipe" name
_VIDEO_PIPE_DEMUXERS: frozenset[str] = frozenset({"yuv4mpegpipe"})


def is_image_demuxer(name: str) -> bool:
    """FFmpeg's still-image readers: ``image2``, ``image2pipe`` and the ``<format>_pipe`` family."""
    return name in ("image2", "image2pipe") or (name.endswith("_pipe") and name not in _VIDEO_PIPE_DEMUXERS)


def _open_container(path: Path):
    """The one place media are opened with FFmpeg: a text or still-image reader is refused for a video path."""
    import av

    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as error:
        raise MediaError(path, f"not a video FFmpeg can open ({error})") from error
    names = set((container.format.name or "").split(","))
    long_name = container.format.long_name or container.format.name
    if names & TEXT_DEMUXERS:
        container.close()
        raise MediaError(path, f"not a video: a text file (FFmpeg's {long_name} reader would draw its characters as frames)")
    if any(is_image_demuxer(name) for name in names) and not is_image(path):
        codec = next((s.codec_context.name for s in container.streams.video if s.codec_context), "unknown")
        container.close()
        raise MediaError(path, f"not a video: a still image ({codec}, FFmpeg's {container.format.name} reader); "
                               "give it an image extension to read it as a photo")
    return container


def _video_stream(container, path: Path):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise MediaError(path, f"no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise MediaError(path, "unsupported codec: FFmpeg has no decoder for the video stream")
    return stream
