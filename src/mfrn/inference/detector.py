"""The detector: ``Detector.from_checkpoint(path)`` -> ``detector(image_or_path)`` -> ``MediaResult``.

The checkpoint carries its config, preprocessing and (when trained with one) its calibration, so
nothing else is needed: faces are found with the face pipeline the training data was prepared with
(dlib by default), cropped as SBI does at test time (detector box + w/8, h/8 margins), scored in
batches (logits divided by the calibration's temperature when it has one), aggregated by the
protocol, and labelled ``real | fake | no_face`` at the checkpoint's threshold (0.5 when it stores
none: the detector warns once, and ``describe_calibration()`` says so).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from mfrn.checkpoint import DEFAULT_THRESHOLD, Calibration
from mfrn.faces.crop import CropConfig
from mfrn.inference.protocol import ProtocolConfig, aggregate_video
from mfrn.inference.results import FaceScore, FrameResult, MediaResult


class UncalibratedCheckpointWarning(UserWarning):
    """The checkpoint stores no calibration: verdicts use the threshold 0.5."""


class CalibrationProtocolWarning(UserWarning):
    """The stored thresholds were learned on scores made otherwise (flip TTA on or off) than this detector's."""


@dataclass
class PendingFaces:
    """Frames whose faces are found and cropped but not yet scored."""

    results: list[FrameResult] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    owners: list[tuple] = field(default_factory=list)  # (FrameResult, Face, CropWindow) per crop


class Detector:
    """A trained detector plus its face pipeline; call it on an image array or a media path."""

    def __init__(self, model: torch.nn.Module, crop: CropConfig, protocol: ProtocolConfig,
                 preprocessing: dict | None = None, calibration: Calibration | None = None,
                 device: str | torch.device = "cpu", analyzer=None, source: str = "", clip_length: int = 0,
                 clip_min_iou: float = 0.3) -> None:
        from mfrn.models.temporal import TemporalDetector

        self.device = torch.device(device)
        # channels_last: the same fp32 scores (eval-mode batch norm: stored statistics), faster convolutions (Lite0's depthwise ones above all):
        # 32 faces at 224 px in 0.80 s instead of 1.35 s on 2 CPU cores; conv weights only (4-d tensors)
        model = model.eval().to(self.device, memory_format=torch.channels_last)
        # a temporal model: its frame detector scores the frames (the timeline), the whole model the clips
        self.temporal_model = model if isinstance(model, TemporalDetector) else None
        self.model = model.frame if self.temporal_model is not None else model
        if self.temporal_model is not None and clip_length < 1:
            raise ValueError("a temporal model needs clip_length (the clip.length it was trained on)")
        self.clip_length = clip_length
        self.clip_min_iou = clip_min_iou
        self.crop = crop
        self.protocol = protocol
        self.preprocessing = dict(preprocessing or {})
        self.calibration = calibration
        self.source = source
        self.image_size = int(self.preprocessing.get("input_size", crop.size))
        self._analyzer = analyzer
        self.spec = None  # the DetectorSpec, when loaded from a checkpoint

    def model_info(self) -> dict:
        """What a caller (a report, the server's model endpoint) shows about this detector."""
        model = self.spec.model if self.spec is not None else None
        return {
            "checkpoint": self.source or None,
            "model": getattr(model, "name", None) or type(self.model).__name__,
            "backbone": getattr(model, "backbone", None),
            "input_size": self.image_size,
            "protocol": self.protocol.describe(),
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "mfrn_version": self.spec.mfrn_version if self.spec is not None else None,
            "temporal": self.describe_temporal(),
        }

    def describe_temporal(self) -> str | None:
        """The temporal protocol's line for a temporal checkpoint, None for a frame detector."""
        if self.temporal_model is None:
            return None
        from mfrn.inference.temporal import describe

        return describe(self.clip_length, self.protocol.clips_per_video)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None, protocol: ProtocolConfig | None = None,
                        analyzer=None, warn_uncalibrated: bool = True) -> "Detector":
        """Load a checkpoint. ``device``: ``cpu``, ``cuda[:N]`` or None/"auto" (the GPU where there is
        one); a device that cannot be used here is refused in one line (``ValueError``). Without a ``protocol``
        it is the checkpoint's, with flip TTA as its calibration was learned (``mfrn calibrate --set
        eval.tta_flip=...`` switches it); a given protocol that differs from the calibration there is warned of
        (``CalibrationProtocolWarning``)."""
        from mfrn.inference.checkpoint import load_detector_checkpoint
        from mfrn.weights import check_device

        torch_device = check_device(device)
        model, spec = load_detector_checkpoint(path)
        calibration = spec.calibration
        if protocol is None and calibration is not None and calibration.tta_flip != spec.protocol.tta_flip:
            protocol = replace(spec.protocol, tta_flip=calibration.tta_flip)  # recalibrated with the other setting
        detector = cls(model, spec.crop, protocol or spec.protocol, spec.preprocessing, spec.calibration,
                       torch_device, analyzer, source=str(path), clip_length=spec.clip_length,
                       clip_min_iou=spec.clip_min_iou)
        detector.spec = spec
        if warn_uncalibrated and spec.calibration is None:
            warnings.warn(detector.describe_calibration(), UncalibratedCheckpointWarning, stacklevel=2)
        mismatch = detector.calibration_mismatch()
        if mismatch is not None:
            warnings.warn(mismatch, CalibrationProtocolWarning, stacklevel=2)
        return detector

    # -- calibration ---------------------------------------------------------------------------
    def calibration_mismatch(self) -> str | None:
        """Why the stored thresholds do not fit this detector's scores (flip TTA set otherwise), or None."""
        calibration = self.calibration
        if calibration is None or calibration.tta_flip == self.protocol.tta_flip:
            return None
        said = {True: "on", False: "off"}
        return (f"{self.source or 'this checkpoint'}: its thresholds were learned on scores with flip TTA "
                f"{said[calibration.tta_flip]}, and the protocol scores with it {said[self.protocol.tta_flip]}: the "
                f"verdicts' threshold does not fit these scores (recalibrate: mfrn calibrate CKPT --set "
                f"eval.tta_flip={str(self.protocol.tta_flip).lower()})")

    @property
    def threshold(self) -> float:
        return self.calibration.threshold if self.calibration is not None else DEFAULT_THRESHOLD

    @property
    def threshold_rule(self) -> str:
        if self.calibration is not None:
            return self.calibration.rule
        return "uncalibrated default: the checkpoint stores no calibration"

    def threshold_for(self, kind: str | None) -> float:
        """The verdict threshold of a file of ``kind``: a single image's where the calibration chose
        one (``Calibration.image_threshold``), else ``threshold``."""
        return self.calibration.threshold_for(kind) if self.calibration is not None else DEFAULT_THRESHOLD

    def threshold_rule_for(self, kind: str | None) -> str:
        return self.calibration.rule_for(kind) if self.calibration is not None else self.threshold_rule

    @property
    def temperature(self) -> float | None:
        return self.calibration.temperature if self.calibration is not None else None

    @property
    def pixel_threshold(self) -> float | None:
        return self.calibration.pixel_threshold if self.calibration is not None else None

    def describe_calibration(self) -> str:
        """One line: the verdict threshold and its rule, or that there is none stored."""
        if self.calibration is not None:
            return self.calibration.describe()
        where = self.source or "the checkpoint"
        return (f"{where} stores no calibration: verdicts use the uncalibrated threshold {DEFAULT_THRESHOLD:g} "
                "(scores are not temperature-scaled, region maps are not outlined)")

    # -- faces -----------------------------------------------------------------------------------
    @property
    def analyzer(self):
        if self._analyzer is None:
            from mfrn.faces.base import FaceAnalyzer

            prepare = self.preprocessing.get("prepare", {}) or {}
            self._analyzer = FaceAnalyzer.from_names(
                prepare.get("detector", "dlib"), prepare.get("landmarker", "dlib"),
                self.protocol.min_face_area_ratio, prepare.get("detector_kwargs") or {},
                prepare.get("landmarker_kwargs") or {},
            )
        return self._analyzer

    def collect_faces(self, frames: Iterable[tuple]) -> PendingFaces:
        """Detect faces on each (index, RGB frame[, time]) and cut SBI's test crops; scoring comes
        later, so crops of several files can share one batch."""
        from mfrn.faces.crop import test_crop

        pending = PendingFaces()
        for index, image, *rest in frames:
            result = FrameResult(index, time=rest[0] if rest else None)
            for face in self.analyzer(image):
                crop, window = test_crop(image, face.box, face.landmarks, size=self.image_size, cfg=self.crop)
                pending.crops.append(crop)
                pending.owners.append((result, face, window))
            pending.results.append(result)
        return pending

    # -- scoring ---------------------------------------------------------------------------------
    def _probability(self, output) -> torch.Tensor:
        from mfrn.models.outputs import fake_probability

        if self.temperature is not None:
            output = replace(output, logits=output.logits.float() / self.temperature)
        return fake_probability(output)

    @torch.no_grad()
    def score_crops(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """P(fake) for face crops (S x S RGB uint8), with region/boundary maps at crop size if predicted."""
        from mfrn.models.outputs import map_probability

        if not crops:
            return np.zeros(0, np.float32), None, None
        scores, regions, boundaries = [], [], []
        for start in range(0, len(crops), self.protocol.batch_size):
            chunk = np.stack(crops[start : start + self.protocol.batch_size]).astype(np.float32) / 255.0
            images = torch.from_numpy(chunk).permute(0, 3, 1, 2).to(self.device)  # NHWC memory: channels_last
            output = self.model(images)
            if self.protocol.tta_flip:  # the mean logits of the face and its mirror image, as calibration scores it
                mirrored = self.model(torch.flip(images, dims=[3])).logits.float()
                output = replace(output, logits=(output.logits.float() + mirrored) / 2)
            scores.append(self._probability(output).cpu().numpy())
            for name, store in (("region_logits", regions), ("boundary_logits", boundaries)):
                logits = getattr(output, name)
                if logits is not None:
                    store.append(map_probability(logits, tuple(images.shape[-2:])).cpu().numpy())
        return (np.concatenate(scores), np.concatenate(regions) if regions else None,
                np.concatenate(boundaries) if boundaries else None)

    @staticmethod
    def assign_scores(pending: PendingFaces, scores, regions=None, boundaries=None, keep_maps: bool = True) -> list[FrameResult]:
        """Put the scores (and maps) of ``pending.crops``, in order, on their frames."""
        for i, (result, face, window) in enumerate(pending.owners):
            result.faces.append(FaceScore(
                box=[float(v) for v in face.box], score=float(scores[i]),
                region_map=regions[i] if (keep_maps and regions is not None) else None,
                boundary_map=boundaries[i] if (keep_maps and boundaries is not None) else None,
                crop_window=(window.x0, window.y0, window.x1, window.y1),
            ))
        return pending.results

    def score_frames(self, frames: Iterable[tuple], keep_maps: bool = True) -> list[FrameResult]:
        """Detect faces on each (index, RGB frame[, time]), crop, score in batches across frames."""
        pending = self.collect_faces(frames)
        scores, regions, boundaries = self.score_crops(pending.crops)
        return self.assign_scores(pending, scores, regions, boundaries, keep_maps)

    # -- results ---------------------------------------------------------------------------------
    def aggregate(self, path: str, kind: str, frames: list[FrameResult], warning: str | None = None) -> MediaResult:
        """The file's result by the protocol; frame scores are set on ``frames``."""
        video = aggregate_video([[f.score for f in fr.faces] for fr in frames], self.protocol)
        for frame, score in zip(frames, video.frame_scores):
            frame.score = score
        return MediaResult(
            path=path, kind=kind, score=None if video.no_face else float(video.score), frames=frames,
            n_frames=video.n_frames, n_frames_with_face=video.n_frames_with_face, threshold=self.threshold_for(kind),
            protocol=self.protocol.describe(), threshold_rule=self.threshold_rule_for(kind), warning=warning,
            protocol_score=float(video.score),
        )

    def failure(self, path: str, reason: str, kind: str | None = None) -> MediaResult:
        return MediaResult.failed(path, reason, self.threshold_for(kind), self.protocol.describe(),
                                  self.threshold_rule_for(kind), kind)

    def detect_image(self, image: np.ndarray, name: str = "<array>") -> MediaResult:
        """One RGB image array (grayscale, RGBA, uint16 and float in [0, 1] are converted; see
        ``mfrn.inference.media.as_rgb_image``)."""
        from mfrn.inference.media import as_rgb_image

        image = as_rgb_image(image, name)
        return self.aggregate(name, "image", self.score_frames([(0, image)]))

    def detect_path(self, path: str | Path, keep_maps: bool = True) -> MediaResult:
        """One image or video file; a file that cannot be read raises ``MediaError``."""
        from mfrn.inference.media import decode_media

        media = decode_media(Path(path), self.protocol.n_frames)
        results = self.score_frames(((f.index, f.image, f.time) for f in media.frames), keep_maps=keep_maps)
        result = self.aggregate(str(path), media.kind, results, media.warning)
        result.temporal = self.score_clips(self.collect_clips(path)) if self.temporal_model is not None else None
        return result

    # -- clips (temporal checkpoints) --------------------------------------------------------------
    def collect_clips(self, path: str | Path, transform=None):
        """A video's clips, faces tracked through them and cropped (``mfrn.inference.temporal``)."""
        from mfrn.inference.temporal import collect_clips

        return collect_clips(self, path, transform)

    def score_clips(self, pending):
        """The temporal head on collected clips -> ``TemporalResult``."""
        from mfrn.inference.temporal import score_clips

        return score_clips(self, pending)

    def __call__(self, image_or_path) -> MediaResult:
        if isinstance(image_or_path, np.ndarray):
            return self.detect_image(image_or_path)
        if isinstance(image_or_path, (str, Path)):
            return self.detect_path(image_or_path)
        raise TypeError(f"Detector takes an image array or a media path, got {type(image_or_path).__name__}")
