"""Inference: ``Detector.from_checkpoint(path)`` -> ``detector(image_or_path)``.

The checkpoint carries its config and preprocessing, so nothing else is needed: faces are found with
the face pipeline the training data was prepared with (dlib by default), cropped as SBI does at test
time (detector box + w/8, h/8 margins), scored in batches, and aggregated by the evaluation protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mfrn.evaluate.protocol import ProtocolConfig, VideoScore, aggregate_video


@dataclass
class FaceScore:
    box: list[float]
    score: float  # P(fake)
    region_map: np.ndarray | None = None  # (S, S) probabilities on the face crop, or None
    boundary_map: np.ndarray | None = None
    crop_window: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of the crop in the frame


@dataclass
class FrameResult:
    index: int
    faces: list[FaceScore] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        return max((f.score for f in self.faces), default=None)


@dataclass
class PendingFaces:
    """Frames whose faces are found and cropped but not yet scored."""

    results: list[FrameResult] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    owners: list[tuple] = field(default_factory=list)  # (FrameResult, Face, CropWindow) per crop


@dataclass
class MediaResult:
    """A verdict for one image or video: P(fake), per frame and per face."""

    path: str
    kind: str  # "image" | "video"
    score: float
    frames: list[FrameResult]
    no_face: bool
    n_frames: int
    n_frames_with_face: int
    protocol: str
    error: str | None = None

    @property
    def label(self) -> str:
        return "fake" if self.score >= 0.5 else "real"

    def to_json(self) -> dict:
        return {
            "path": self.path, "kind": self.kind, "score": self.score, "label": self.label,
            "no_face": self.no_face, "n_frames": self.n_frames, "n_frames_with_face": self.n_frames_with_face,
            "protocol": self.protocol, "error": self.error,
            "frames": [{"index": fr.index, "score": fr.score,
                        "faces": [{"box": f.box, "score": f.score} for f in fr.faces]} for fr in self.frames],
        }


class Detector:
    """A trained detector plus its face pipeline; call it on an image array or a media path."""

    def __init__(self, model: torch.nn.Module, config, preprocessing: dict, device: str | torch.device = "cpu",
                 protocol: ProtocolConfig | None = None, analyzer=None) -> None:
        self.model = model.eval().to(device)
        self.config = config
        self.preprocessing = preprocessing
        self.device = torch.device(device)
        self.protocol = protocol or config.eval
        self.image_size = int(preprocessing.get("input_size", config.sbi.crop.size))
        self._analyzer = analyzer

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None, protocol: ProtocolConfig | None = None,
                        analyzer=None) -> "Detector":
        from mfrn.config import config_from_dict
        from mfrn.config_schema import ConfigError
        from mfrn.models import build_model
        from mfrn.train.checkpoint import CheckpointError, load_checkpoint, load_model_state

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        state = load_checkpoint(Path(path))
        try:
            config = config_from_dict(state["config"])
        except ConfigError as exc:
            raise CheckpointError(f"{path}: its config does not fit this mfrn version ({exc})") from None
        config.model.pretrained = False  # the checkpoint has the weights; never fetch anything
        config.model.pretrained_file = None
        model = build_model(config.model)
        load_model_state(model, state["model"], path)
        return cls(model, config, state.get("preprocessing", {}), device, protocol, analyzer)

    @property
    def analyzer(self):
        if self._analyzer is None:
            from mfrn.faces.base import FaceAnalyzer

            prepare = self.preprocessing.get("prepare", {})
            self._analyzer = FaceAnalyzer.from_names(
                prepare.get("detector", "dlib"), prepare.get("landmarker", "dlib"),
                self.protocol.min_face_area_ratio, prepare.get("detector_kwargs") or {},
                prepare.get("landmarker_kwargs") or {},
            )
        return self._analyzer

    @torch.no_grad()
    def score_crops(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """P(fake) for face crops (S x S RGB uint8), with region/boundary maps at crop size if predicted."""
        from mfrn.models.outputs import fake_probability

        if not crops:
            return np.zeros(0, np.float32), None, None
        scores, regions, boundaries = [], [], []
        for start in range(0, len(crops), self.protocol.batch_size):
            chunk = np.stack(crops[start : start + self.protocol.batch_size]).astype(np.float32) / 255.0
            images = torch.from_numpy(chunk).permute(0, 3, 1, 2).to(self.device)
            output = self.model(images)
            probability = fake_probability(output)
            if self.protocol.tta_flip:
                probability = (probability + fake_probability(self.model(torch.flip(images, dims=[3])))) / 2
            scores.append(probability.cpu().numpy())
            for name, store in (("region_logits", regions), ("boundary_logits", boundaries)):
                logits = getattr(output, name)
                if logits is not None:
                    maps = torch.sigmoid(torch.nn.functional.interpolate(
                        logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False))
                    store.append(maps[:, 0].cpu().numpy())
        return (np.concatenate(scores), np.concatenate(regions) if regions else None,
                np.concatenate(boundaries) if boundaries else None)

    def collect_faces(self, frames: Iterable[tuple[int, np.ndarray]]) -> "PendingFaces":
        """Detect faces on each (index, RGB frame) and cut SBI's test crops; scoring comes later, so
        crops of several videos can share one batch."""
        from mfrn.faces.crop import test_crop

        pending = PendingFaces()
        for index, image in frames:
            result = FrameResult(index)
            for face in self.analyzer(image):
                crop, window = test_crop(image, face.box, face.landmarks, size=self.image_size, cfg=self.config.sbi.crop)
                pending.crops.append(crop)
                pending.owners.append((result, face, window))
            pending.results.append(result)
        return pending

    @staticmethod
    def assign_scores(pending: "PendingFaces", scores, regions=None, boundaries=None, keep_maps: bool = True) -> list[FrameResult]:
        """Put the scores (and maps) of ``pending.crops``, in order, on their frames."""
        for i, (result, face, window) in enumerate(pending.owners):
            result.faces.append(FaceScore(
                box=[float(v) for v in face.box], score=float(scores[i]),
                region_map=regions[i] if (keep_maps and regions is not None) else None,
                boundary_map=boundaries[i] if (keep_maps and boundaries is not None) else None,
                crop_window=(window.x0, window.y0, window.x1, window.y1),
            ))
        return pending.results

    def score_frames(self, frames: Iterable[tuple[int, np.ndarray]], keep_maps: bool = True) -> list[FrameResult]:
        """Detect faces on each (index, RGB frame), crop, score in batches across frames."""
        pending = self.collect_faces(frames)
        scores, regions, boundaries = self.score_crops(pending.crops)
        return self.assign_scores(pending, scores, regions, boundaries, keep_maps)

    def aggregate(self, path: str, kind: str, frames: list[FrameResult]) -> MediaResult:
        video: VideoScore = aggregate_video([[f.score for f in fr.faces] for fr in frames], self.protocol)
        return MediaResult(path=path, kind=kind, score=float(video.score), frames=frames, no_face=video.no_face,
                           n_frames=video.n_frames, n_frames_with_face=video.n_frames_with_face,
                           protocol=self.protocol.describe())

    def detect_image(self, image: np.ndarray, name: str = "<array>") -> MediaResult:
        return self.aggregate(name, "image", self.score_frames([(0, image)]))

    def detect_path(self, path: str | Path, keep_maps: bool = True) -> MediaResult:
        from mfrn.data.frames import read_media_frames

        info, frames = read_media_frames(Path(path), self.protocol.n_frames)
        kind = "image" if getattr(info, "is_image", False) else "video"
        results = self.score_frames(((f.index, f.image) for f in frames), keep_maps=keep_maps)
        return self.aggregate(str(path), kind, results)

    def __call__(self, image_or_path) -> MediaResult:
        if isinstance(image_or_path, np.ndarray):
            return self.detect_image(image_or_path)
        return self.detect_path(image_or_path)
