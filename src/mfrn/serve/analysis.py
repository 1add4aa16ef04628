"""What a worker runs on one upload: the inference core, exactly as ``mfrn detect`` runs it.

``Analyzer`` is the small interface the service needs; ``CoreAnalyzer`` fills it with
``mfrn.inference``: ``score_media`` (decode, faces, batched scores, the protocol), the result made by
``MediaResult.to_json`` (``result_record``, the schema ``mfrn detect`` writes), the run header of
``mfrn.inference.writers.run_header`` and the overlay of ``mfrn.inference.overlays.write_overlay``. Nothing
here scores, aggregates, labels or draws maps itself; it adds progress reports and face thumbnails.

The model is loaded once; ``fork()`` gives each worker thread its own detector object (its own face
analyzer, whose backends need not be thread-safe) around the same model weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ProgressCallback = Callable[[str, float], None]  # (stage, fraction done in [0, 1])

THUMBNAIL_SIDE = 160


@dataclass
class AnalysisRequest:
    name: str  # what the result's "path" says (the upload's display name; never a server path)
    overlay_stem: Path  # the overlay file without its suffix (the core adds .png or .mp4)
    overlay_ref: str  # what the result's "overlay" says (the API address of the overlay)
    faces_dir: Path  # where face thumbnails go
    run_name: str = "run"  # the thumbnails' names start with it (a discarded run removes only its own files)
    frames_to_score: int = 1  # for progress: the frames the protocol samples from this file
    max_thumbnails: int = 32


@dataclass
class Analysis:
    record: dict[str, Any]  # the result record (schema mfrn-media-result), as mfrn detect writes it
    header: dict[str, Any]  # how it was made (checkpoint digest, protocol, calibration), as in results.json
    overlay: Path | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)  # thumbnails: file, frame, time, face, score, label

    @property
    def ok(self) -> bool:
        return self.record.get("status") == "ok"


class Analyzer(Protocol):
    def frames_to_score(self, kind: str, n_frames: int) -> int: ...

    def model_info(self) -> dict[str, Any]: ...

    def fork(self) -> "Analyzer": ...

    def analyze(self, media: Path, request: AnalysisRequest, progress: ProgressCallback) -> Analysis: ...


def _tracking_detector_class():
    """A ``Detector`` that reports each frame its face search finishes (defined lazily: torch is heavy)."""
    from mfrn.inference import Detector

    class TrackingDetector(Detector):
        on_frame: Callable[[int], None] | None = None
        on_scoring: Callable[[], None] | None = None

        def collect_faces(self, frames: Iterable[tuple]):
            return super().collect_faces(self._counted(frames))

        def _counted(self, frames: Iterable[tuple]):
            for number, frame in enumerate(frames):
                if self.on_frame is not None:
                    self.on_frame(number)  # frames before this one have had their faces searched
                yield frame

        def score_crops(self, crops):
            if self.on_scoring is not None:
                self.on_scoring()
            return super().score_crops(crops)

    return TrackingDetector


class CoreAnalyzer:
    """``Analyzer`` over ``mfrn.inference.Detector``."""

    def __init__(self, detector, checkpoint: Path | None = None, header: dict[str, Any] | None = None) -> None:
        from mfrn.inference.writers import run_header

        self.detector = detector
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        if header is None:  # the digest is computed once; the server's paths stay on the server
            header = run_header(detector, self.checkpoint)
            header["checkpoint"] = None if self.checkpoint is None else self.checkpoint.name
        self.header = header

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str | None = None) -> "CoreAnalyzer":
        from mfrn.inference import Detector

        detector = Detector.from_checkpoint(path, device=device, warn_uncalibrated=False)  # the server says it
        return cls(detector, Path(path))

    def fork(self) -> "CoreAnalyzer":
        base = self.detector
        shell = _tracking_detector_class()(base.model, base.crop, base.protocol, base.preprocessing, base.calibration,
                                           base.device, source=base.source)
        shell.spec = base.spec
        return CoreAnalyzer(shell, self.checkpoint, self.header)

    def frames_to_score(self, kind: str, n_frames: int) -> int:
        from mfrn.data.frames import sample_indices

        return 1 if kind == "image" else max(1, len(sample_indices(n_frames, self.detector.protocol.n_frames)))

    def model_info(self) -> dict[str, Any]:
        info = dict(self.detector.model_info())
        info["checkpoint"] = None if self.checkpoint is None else self.checkpoint.name  # no server path
        info["checkpoint_sha256"] = self.header.get("checkpoint_sha256")
        line = self.detector.describe_calibration()
        info["calibration_line"] = line.replace(str(self.checkpoint), self.checkpoint.name) if self.checkpoint else line
        info["frames_per_video"] = self.detector.protocol.n_frames
        return info

    def analyze(self, media: Path, request: AnalysisRequest, progress: ProgressCallback) -> Analysis:
        from mfrn.inference.batching import score_media
        from mfrn.inference.overlays import write_overlay

        detector = self.detector
        total = max(1, request.frames_to_score)
        progress("decoding", 0.02)
        if hasattr(detector, "on_frame"):
            detector.on_frame = lambda done: progress("faces", 0.05 + 0.8 * min(done, total) / total)
            detector.on_scoring = lambda: progress("scoring", 0.86)
        try:
            scoring = score_media(detector, [Path(media)], keep_frames=True)
            try:
                scored = next(scoring)
            finally:
                scoring.close()
        finally:
            if hasattr(detector, "on_frame"):
                detector.on_frame = detector.on_scoring = None
        result = scored.result
        result.path = request.name
        for name in ("error", "warning"):  # a reader's message may quote the stored file: say the upload's name
            text = getattr(result, name)
            if text:
                setattr(result, name, text.replace(str(media), request.name).replace(Path(media).name, request.name))
        analysis = Analysis(record={}, header=self.header)
        if result.ok and scored.frames:
            progress("overlay", 0.9)
            images = [frame.image for frame in scored.frames]
            analysis.overlay = write_overlay(request.overlay_stem, result, images, detector.pixel_threshold)
            result.overlay = request.overlay_ref
            progress("faces thumbnails", 0.97)
            analysis.faces = write_thumbnails(request.faces_dir, result, images, request.max_thumbnails,
                                              request.run_name)
        analysis.record = result.to_json()
        return analysis


def write_thumbnails(folder: Path, result, images: list, limit: int, prefix: str = "run") -> list[dict[str, Any]]:
    """JPEG thumbnails of the face crops the model scored (at most ``limit``, spread over the frames)."""
    import cv2
    import numpy as np

    from mfrn.inference.results import verdict
    from mfrn.io_utils import atomic_write_image

    faces = [(frame, number, face, image) for frame, image in zip(result.frames, images)
             for number, face in enumerate(frame.faces)]
    if len(faces) > limit:
        faces = [faces[int(i)] for i in np.linspace(0, len(faces) - 1, limit).round()]
    written = []
    for k, (frame, number, face, image) in enumerate(faces):
        x0, y0, x1, y1 = (int(round(v)) for v in (face.crop_window or face.box))
        height, width = image.shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = image[y0:y1, x0:x1]
        scale = THUMBNAIL_SIDE / max(crop.shape[:2])
        if scale < 1:
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                              interpolation=cv2.INTER_AREA)
        name = f"{prefix}-{k}.jpg"
        atomic_write_image(Path(folder) / name, np.ascontiguousarray(crop), jpeg_quality=90)
        written.append({"file": name, "frame": int(frame.index), "time": frame.time, "face": number,
                        "score": float(face.score), "label": verdict(face.score, result.threshold)})
    return written
