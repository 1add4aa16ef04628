"""The maps, drawn: crop-level region/boundary maps pasted back into the frame, coloured overlays with
the verdict, the manipulated region outlined at the calibrated pixel threshold, and overlay files
(a PNG for an image, an MP4 of the sampled frames for a video)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mfrn.inference.results import FAKE, NO_FACE, FrameResult, MediaResult, verdict
from mfrn.io_utils import atomic_write_bytes, atomic_write_image

_RED, _GREEN, _YELLOW, _GREY = (255, 60, 60), (60, 220, 60), (255, 255, 0), (200, 200, 200)
_OUTLINE = (0, 255, 255)  # cyan: stands out from the red region and the yellow boundary


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 2-D map resized (bilinear) to ``shape`` = (height, width), as float32."""
    return cv2.resize(np.asarray(values, dtype=np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def frame_maps(frame_shape: tuple[int, int], faces) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Paste each face's crop-level maps back into full-frame maps (max where faces overlap)."""
    height, width = frame_shape
    region = boundary = None
    for face in faces:
        if face.crop_window is None or face.region_map is None:
            continue
        x0, y0, x1, y1 = face.crop_window
        region = np.zeros((height, width), np.float32) if region is None else region
        boundary = np.zeros((height, width), np.float32) if boundary is None else boundary
        size = (x1 - x0, y1 - y0)
        r = cv2.resize(face.region_map, size, interpolation=cv2.INTER_LINEAR)
        region[y0:y1, x0:x1] = np.maximum(region[y0:y1, x0:x1], r)
        if face.boundary_map is not None:
            b = cv2.resize(face.boundary_map, size, interpolation=cv2.INTER_LINEAR)
            boundary[y0:y1, x0:x1] = np.maximum(boundary[y0:y1, x0:x1], b)
    return region, boundary


def outline_region(canvas: np.ndarray, region: np.ndarray, colour=_OUTLINE) -> None:
    """Draw the outline of a boolean ``region`` on ``canvas`` in place: a dark halo under a bright
    line, a few pixels wide at any image size, so it reads on light and dark faces alike."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return
    width = max(2, int(round(min(canvas.shape[:2]) / 160)))
    cv2.drawContours(canvas, contours, -1, (0, 0, 0), width + 2 * max(1, width // 2), cv2.LINE_AA)
    cv2.drawContours(canvas, contours, -1, colour, width, cv2.LINE_AA)


def _label_box(canvas: np.ndarray, text: str, colour, corner: str = "top") -> None:
    h, w = canvas.shape[:2]
    scale = max(0.4, min(h, w) / 500.0)
    thickness = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = 0 if corner == "top" else max(0, h - th - base - 8)
    cv2.rectangle(canvas, (0, top), (tw + 8, top + th + base + 8), (0, 0, 0), -1)
    cv2.putText(canvas, text, (4, top + th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def overlay(
    image: np.ndarray,
    region_map: np.ndarray | None,
    boundary_map: np.ndarray | None,
    score: float | None = None,
    alpha: float = 0.5,
    threshold: float = 0.5,
    outline_threshold: float | None = None,
    label: str | None = None,
    outline_map: np.ndarray | None = None,
) -> np.ndarray:
    """Draw the region map (red) and boundary map (yellow) over an RGB image, with the verdict.

    Maps are in [0, 1] at any resolution (resized to the image). With ``outline_threshold`` (the
    calibration's pixel threshold) the red shows the region map relative to it (full strength at the
    threshold: a detector's maps are often faint, and a map at 0.2 must not look like nothing when
    0.2 is where its region starts), and the region where ``outline_map`` (default: the region map)
    reaches it is outlined, with a legend. The verdict text is ``label`` if given, else the label of
    ``score`` at ``threshold``; nothing when both are None. Returns a new RGB uint8 image.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"overlay needs an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    canvas = image.astype(np.float32)
    scale = 1.0 / outline_threshold if outline_threshold else 1.0
    for values, colour, gain in ((region_map, (255, 0, 0), scale), (boundary_map, (255, 255, 0), 1.0)):
        if values is None:
            continue
        values = np.clip(resize_map(values, (h, w)) * gain, 0.0, 1.0)
        weight = alpha * values[..., None]
        canvas = canvas * (1.0 - weight) + np.asarray(colour, np.float32)[None, None, :] * weight
    out = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    if outline_threshold is not None:
        source = region_map if outline_map is None else outline_map
        if source is not None:
            outline_region(out, resize_map(source, (h, w)) >= outline_threshold)
        _label_box(out, f"outline: region map >= {outline_threshold:.2f} (calibrated)", _OUTLINE, corner="bottom")
    if label is None and score is not None:
        label = verdict(score, threshold)
    if label is not None:
        text = label.replace("_", " ").upper() + ("" if score is None else f" {score:.3f}")
        _label_box(out, text, _RED if label == FAKE else (_GREY if label == NO_FACE else _GREEN))
    return out


def draw_frame(image: np.ndarray, frame: FrameResult, threshold: float = 0.5, pixel_threshold: float | None = None,
               score: float | None = None, label: str | None = None) -> np.ndarray:
    """One frame with its maps, the face boxes and scores, and the verdict (``score``/``label`` of the
    file for an image; the frame's own otherwise). The region is outlined on the faces called fake
    only: a face called real has no manipulated region to show."""
    region, boundary = frame_maps(image.shape[:2], frame.faces)
    if score is None and label is None:
        score, label = frame.score, verdict(frame.score, threshold)
    outline_map = None
    if pixel_threshold is not None and region is not None:
        outline_map, _ = frame_maps(image.shape[:2], [f for f in frame.faces if f.score >= threshold])
        outline_map = np.zeros(image.shape[:2], np.float32) if outline_map is None else outline_map
    out = overlay(image, region, boundary, score, threshold=threshold, outline_threshold=pixel_threshold, label=label,
                  outline_map=outline_map)
    for face in frame.faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        colour = _RED if face.score >= threshold else _GREEN
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(out, f"{face.score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return out


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 4.0) -> None:
    """Encode RGB frames to an H.264 MP4 (mpeg4 when libx264 is missing), atomically."""
    import av

    buffer = io.BytesIO()
    height, width = frames[0].shape[:2]
    width, height = width - width % 2, height - height % 2
    with av.open(buffer, mode="w", format="mp4") as container:
        try:
            stream = container.add_stream("libx264", rate=int(round(fps)))
        except Exception:  # codec not in this FFmpeg build
            stream = container.add_stream("mpeg4", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    atomic_write_bytes(path, buffer.getvalue())


def write_overlay(stem: Path, result: MediaResult, images: Sequence[np.ndarray],
                  pixel_threshold: float | None = None) -> Path:
    """``<stem>.png`` for an image, ``<stem>.mp4`` of the sampled frames for a video; returns the path.

    ``images`` are the decoded frames ``result.frames`` were scored on, in the same order."""
    if result.kind == "image":
        drawn = draw_frame(images[0], result.frames[0], result.threshold, pixel_threshold,
                           score=result.score, label=result.label)
        target = Path(f"{stem}.png")
        atomic_write_image(target, drawn)
        return target
    drawn_frames = [draw_frame(image, frame, result.threshold, pixel_threshold) for image, frame in zip(images, result.frames)]
    target = Path(f"{stem}.mp4")
    write_video(target, drawn_frames, fps=max(1.0, min(8.0, len(drawn_frames) / 4.0)))
    return target


def timeline_image(result: MediaResult, width: int = 720, height: int = 220) -> np.ndarray:
    """A video's scores over its frames: each sampled frame's P(fake) (dots, joined), the threshold (grey), and
    for a temporal checkpoint each clip's temporal P(fake) as a bar over the frames it spans (blue)."""
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 40, width - 10, 28, height - 24
    clips = result.temporal.clips if result.temporal is not None else []
    last = max([f.index for f in result.frames] + [c.frames[-1] for c in clips] + [1])
    x_of = lambda index: int(round(left + (right - left) * index / last))  # noqa: E731
    y_of = lambda score: int(round(bottom - (bottom - top) * float(score)))  # noqa: E731
    cv2.rectangle(image, (left, top), (right, bottom), (0, 0, 0), 1)
    for value in (0.0, 0.5, 1.0):
        cv2.putText(image, f"{value:.1f}", (4, y_of(value) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(image, (left, y_of(result.threshold)), (right, y_of(result.threshold)), _GREY, 1)
    for clip in clips:
        if clip.score is not None:
            cv2.rectangle(image, (x_of(clip.frames[0]), y_of(clip.score) - 2), (max(x_of(clip.frames[-1]),
                          x_of(clip.frames[0]) + 3), y_of(clip.score) + 2), (40, 90, 230), -1)
    points = [(x_of(f.index), y_of(f.score)) for f in result.frames if f.score is not None]
    for a, b in zip(points, points[1:]):
        cv2.line(image, a, b, (120, 120, 120), 1, cv2.LINE_AA)
    for point in points:
        colour = _RED if (point[1] <= y_of(result.threshold)) else _GREEN
        cv2.circle(image, point, 3, colour, -1, cv2.LINE_AA)
    frame_text = "frame mean n/a" if result.score is None else f"frame mean {result.score:.3f}"
    temporal = result.temporal
    text = f"P(fake): {frame_text} (dots: frames)"
    if temporal is not None:
        text += ("; temporal n/a" if temporal.score is None else
                 f"; temporal {temporal.score:.3f} (bars: {temporal.n_scored}/{len(temporal.clips)} clips of "
                 f"{temporal.clip_length} frames)")
    cv2.putText(image, text, (left, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"frame 0 .. {last}", (left, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    return image
