"""``mfrn detect``: per face and per file a fake probability, JSON + CSV, and overlays.

Image input -> an overlay PNG; video input -> an overlay MP4 of the sampled frames (the frames the
protocol scores), each with the predicted region (red) and boundary (yellow) maps and the score.
Unreadable files are recorded with the reason and the run goes on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mfrn.io_utils import atomic_write_bytes, atomic_write_image, atomic_write_json


@dataclass
class DetectSummary:
    out_dir: Path
    results: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{r['path']}: {r['label'].upper()} (P(fake) = {r['score']:.3f}"
                 + (", no face found" if r["no_face"] else f", {r['n_frames_with_face']}/{r['n_frames']} frames with a face")
                 + ")" for r in self.results]
        lines += [f"{path}: skipped ({reason})" for path, reason in self.failures]
        lines.append(f"results: {self.out_dir / 'results.json'}, {self.out_dir / 'results.csv'}")
        return "\n".join(lines)


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


def draw_frame(image: np.ndarray, frame_result, media_score: float | None = None) -> np.ndarray:
    from mfrn.evaluate.localisation import overlay

    region, boundary = frame_maps(image.shape[:2], frame_result.faces)
    out = overlay(image, region, boundary, media_score if media_score is not None else frame_result.score)
    for face in frame_result.faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        colour = (255, 60, 60) if face.score >= 0.5 else (60, 220, 60)
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


def run_detect(inputs: Sequence[Path], checkpoint: Path, out_dir: Path, device: str | None = None,
               n_frames: int | None = None, overlays: bool = True, detector=None) -> DetectSummary:
    from tqdm import tqdm

    from mfrn.data.frames import FrameSamplingConfig, read_media_frames
    from mfrn.data.manifest import safe_name
    from mfrn.data.media import MediaError, iter_media
    from mfrn.inference import Detector

    detector = detector or Detector.from_checkpoint(checkpoint, device=device)
    if n_frames:
        detector.protocol.n_frames = n_frames
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = DetectSummary(out_dir)
    paths = []
    for given in inputs:  # a missing input is recorded, the others are still examined
        try:
            paths.extend(iter_media([given]))
        except MediaError as error:
            summary.failures.append((str(given), error.reason))
    for path in tqdm(paths, desc="detect", unit="file", dynamic_ncols=True):
        try:
            info, frame_iter = read_media_frames(path, detector.protocol.n_frames,
                                                 config=FrameSamplingConfig(n_frames=detector.protocol.n_frames))
            frames = list(frame_iter)
            results = detector.score_frames(((f.index, f.image) for f in frames), keep_maps=overlays)
            media = detector.aggregate(str(path), "image" if info.is_image else "video", results)
        except MediaError as error:
            summary.failures.append((str(path), error.reason))
            continue
        entry = media.to_json()
        if overlays and frames:
            drawn = [draw_frame(f.image, r, media.score if info.is_image else None) for f, r in zip(frames, results)]
            name = safe_name(str(path))
            if info.is_image:
                target = out_dir / "overlays" / f"{name}.png"
                atomic_write_image(target, drawn[0])
            else:
                target = out_dir / "overlays" / f"{name}.mp4"
                write_video(target, drawn, fps=max(1.0, min(8.0, len(drawn) / 4.0)))
            entry["overlay"] = str(target)
        summary.results.append(entry)
    atomic_write_json(out_dir / "results.json", {"checkpoint": str(checkpoint), "protocol": detector.protocol.describe(),
                                                 "results": summary.results,
                                                 "skipped": [{"path": p, "reason": r} for p, r in summary.failures]})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "kind", "frame", "face", "box", "score", "label"])
    for entry in summary.results:
        writer.writerow([entry["path"], entry["kind"], "", "", "", f"{entry['score']:.6f}", entry["label"]])
        for frame in entry["frames"]:
            for number, face in enumerate(frame["faces"]):
                writer.writerow([entry["path"], entry["kind"], frame["index"], number,
                                 " ".join(f"{v:.1f}" for v in face["box"]), f"{face['score']:.6f}", ""])
    for path, reason in summary.failures:
        writer.writerow([path, "", "", "", "", "", f"skipped: {reason}"])
    atomic_write_bytes(out_dir / "results.csv", text.getvalue().encode("utf-8"))
    return summary
